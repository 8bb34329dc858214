"""The cache step of a request, in one place: look up, answer a hit, store a miss's answer.

    hit = await lookup(cache, config, ex, features, headers)   # a miss sets ex.slot
    if hit is not None:
        await serve_hit(ex, hit)
    ...
    ex.slot.offer(upstream, status, completion)                # after the relay

The one rule for what may be stored is `CacheSlot.wants`: an answer with status
200 from the decided target (a fallback's answer does not belong in the decided
target's scope). Whether the answer itself is complete enough to replay is the
cache's own check (`SemanticCache.store`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from router.cache import (
    CacheConfig,
    SemanticCache,
    cache_mode,
    cache_prompt,
    replay_sse,
    scope_for,
    streamable,
)
from router.cache import Scope as CacheScope
from router.exchange import Exchange, response_headers
from router.features import Features
from router.runtime import in_background
from router.upstreams.usage import answer_of

__all__ = ["CacheSlot", "lookup", "serve_hit"]


class CacheSlot:
    """Where a miss's answer goes once it is complete: the scope of the decided target."""

    __slots__ = ("cache", "embedding", "prompt", "scope")

    def __init__(
        self, cache: SemanticCache, scope: CacheScope, prompt: str, embedding: Any
    ) -> None:
        self.cache, self.scope, self.prompt, self.embedding = cache, scope, prompt, embedding

    def wants(self, upstream: str, status: int) -> bool:
        return status == 200 and upstream == self.scope.upstream

    def offer(self, upstream: str, status: int, completion: dict[str, Any]) -> None:
        """Store `completion` off the request's path, if this slot wants it."""
        if self.wants(upstream, status):
            in_background(self.cache.store(self.scope, self.prompt, self.embedding, completion))


async def lookup(
    cache: SemanticCache | None,
    config: CacheConfig | None,
    ex: Exchange,
    features: Features | None,
    headers: Mapping[str, str],
    model: str | None,
) -> dict[str, Any] | None:
    """A cached completion in the decided target's scope; on a miss, `ex.slot` is set.

    `model` is the decided target's model (None: the target is not running).
    """
    request, decision, record = ex.request, ex.decision, ex.record
    if cache is None or config is None or not decision.cache:
        return None
    prompt = cache_prompt(request.body, config.tool_calls)
    scope = None
    if model is not None and prompt is not None and cache_mode(headers) == "use":
        scope = scope_for(
            tenant=record.tenant,
            upstream=decision.target,
            model=model,
            body=request.body,
            only_deterministic=config.only_deterministic,
            unset_temperature_is_deterministic=config.unset_temperature_is_deterministic,
            tool_turns=config.tool_calls,
        )
    if scope is None or prompt is None:
        record.cache = "bypass"
        return None
    # Exact prompts (tool results) are never matched by similarity.
    embedding = features.embedding if features is not None and not prompt.exact else None
    found = await cache.lookup(scope, prompt.text, embedding, similarity=decision.cache_similarity)
    record.cache_similarity = None if found.similarity is None else round(found.similarity, 4)
    completion = found.completion
    # An answer with a field a stream cannot carry is no hit for a stream.
    usable = completion is not None and (not request.stream or streamable(completion))
    if found.status == "hit" and completion is not None and usable:
        record.cache = "hit"
        return completion
    record.cache = "miss" if found.status in ("miss", "hit") else "error"
    ex.slot = CacheSlot(cache, scope, prompt.text, embedding)
    return None


async def serve_hit(ex: Exchange, completion: dict[str, Any]) -> None:
    """Answer from the cache, as a stream or plain, whichever the request asked for."""
    request, record, send = ex.request, ex.record, ex.send
    # A fresh id: clients may deduplicate on it, and this is a new response.
    completion = {
        **completion,
        "id": f"chatcmpl-cache-{record.request_id}",
        "created": int(time.time()),
    }
    record.route, record.status = "cache", 200
    record.tokens_in, record.tokens_out, record.cost_usd = 0, 0, 0.0
    record.overhead_ms = round((time.perf_counter() - ex.t0) * 1000, 3)
    if ex.policy.record.prompts:
        record.answer = answer_of(completion)
    out = ex.out
    if request.stream:
        body = b"".join(replay_sse(completion, include_usage=request.include_usage))
        if not out.passthrough:  # the same events as a live answer, in the client's dialect
            body = out.start() + out.events(body)
        headers = response_headers(record, ex.decision, b"text/event-stream")
        headers.append((b"cache-control", b"no-cache"))
    else:
        body = out.plain(completion)
        headers = response_headers(record, ex.decision, b"application/json")
    await out.final()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
