"""The hard scope of a cached answer: who asked, which model, with which parameters."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Scope", "last_user_text", "scope_for", "tenant_key"]

# Request fields that never change the answer. Every other field, known or not,
# is part of the scope: a parameter added to the API later must split the cache,
# not silently share it.
_NOT_ANSWER_CHANGING = frozenset(
    {
        "messages",  # split into the prompt and the conversation, below
        "model",  # the scope names the routed target instead
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)


def tenant_key(tenant: str) -> str:
    """The tenant as it appears in key names: hashed, so no glob or brace leaks in."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Scope:
    """Entries are shared only between requests with an equal scope.

    `digest` covers the tenant, the target and every answer-changing parameter; it
    is part of every key and index name, and each entry stores it so that a lookup
    can check it again.
    """

    tenant: str
    upstream: str
    model: str
    digest: str

    @property
    def tenant_key(self) -> str:
        return tenant_key(self.tenant)


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            # Images, audio and files are not in the prompt text, so a request that
            # carries them cannot be keyed by its text.
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return None
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
        return "\n".join(texts)
    return None


def last_user_text(body: Mapping[str, Any]) -> str | None:
    """The cached prompt: the text of the last message, when a user sent it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    text = _text_of(last.get("content"))
    return text if text and text.strip() else None


def _deterministic(body: Mapping[str, Any], unset_is_deterministic: bool) -> bool:
    temperature = body.get("temperature")
    if temperature is None:
        return unset_is_deterministic
    return isinstance(temperature, int | float) and math.isclose(temperature, 0.0)


def scope_for(
    *,
    tenant: str,
    upstream: str,
    model: str,
    body: Mapping[str, Any],
    only_deterministic: bool = True,
    unset_temperature_is_deterministic: bool = False,
) -> Scope | None:
    """The scope of a chat request, or None when its answer must not be cached.

    The prompt is the last user message; the earlier messages (system prompt, turns)
    and all answer-changing parameters go into the digest.
    """
    if last_user_text(body) is None:
        return None
    if only_deterministic and not _deterministic(body, unset_temperature_is_deterministic):
        return None
    params = {k: v for k, v in body.items() if k not in _NOT_ANSWER_CHANGING}
    # A temperature of 0 and 0.0 are the same request.
    if isinstance(params.get("temperature"), int | float):
        params["temperature"] = float(params["temperature"])
    canonical = {
        "v": 1,
        "tenant": tenant,
        "upstream": upstream,
        "model": model,
        "history": body["messages"][:-1],
        # The last message's other fields ("name") can change the answer too.
        "last": {k: v for k, v in body["messages"][-1].items() if k != "content"},
        "params": params,
    }
    try:
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return Scope(tenant=tenant, upstream=upstream, model=model, digest=digest)
