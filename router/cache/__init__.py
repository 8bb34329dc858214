"""The semantic cache: answers to repeated and near-repeated prompts, from memory or Redis.

The pipeline uses it as:

    scope = scope_for(tenant=..., upstream=..., model=..., body=body)
    if scope is not None and cache_mode(headers) == "use":
        found = await cache.lookup(scope, last_user_text(body), features.embedding,
                                   similarity=route_threshold)
        ...
        await cache.store(scope, prompt, features.embedding, completion)
"""

from __future__ import annotations

from router.cache.cache import Lookup, SecondStage, SemanticCache, build_cache, exact_key
from router.cache.config import CacheConfig
from router.cache.guards import compatible
from router.cache.headers import cache_mode
from router.cache.scope import Prompt, Scope, cache_prompt, last_user_text, scope_for
from router.cache.sse import assemble_stream, has_tool_calls, is_complete, replay_sse, streamable

__all__ = [
    "CacheConfig",
    "Lookup",
    "Prompt",
    "Scope",
    "SecondStage",
    "SemanticCache",
    "assemble_stream",
    "build_cache",
    "cache_mode",
    "cache_prompt",
    "compatible",
    "exact_key",
    "has_tool_calls",
    "is_complete",
    "last_user_text",
    "replay_sse",
    "scope_for",
    "streamable",
]
