"""The hard scope of a cached answer: who asked, which model, with which parameters."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.formats.openai_chat import cache_text

__all__ = ["Prompt", "Scope", "cache_prompt", "last_user_text", "scope_for", "tenant_key"]

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


def last_user_text(body: Mapping[str, Any]) -> str | None:
    """The cached prompt: the text of the last message, when a user sent it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    text = cache_text(last.get("content"))
    return text if text and text.strip() else None


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a cached answer is keyed by within its scope.

    `exact` prompts are looked up by their exact key only, never by similarity:
    a tool result is data, and a near miss on data is a wrong answer.
    """

    text: str
    exact: bool = False


def cache_prompt(body: Mapping[str, Any], tool_turns: bool = False) -> Prompt | None:
    """The last user message; with `tool_turns`, also an agent's tool-result turn."""
    text = last_user_text(body)
    if text is not None:
        return Prompt(text)
    if not tool_turns:
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "tool":
        return None
    # Numbered along with the history, so the prompt says which call it answers.
    blob = _canonical(_without_call_ids(messages)[-1])
    if blob is None:
        return None
    return Prompt("tool-result " + hashlib.sha256(blob.encode()).hexdigest(), exact=True)


def _without_call_ids(messages: list[Any]) -> list[Any]:
    """Tool-call ids are random per answer: number them by first appearance instead,
    so that an agent repeating the same steps meets the same scope."""
    numbers: dict[str, str] = {}

    def number(call_id: Any) -> Any:
        if not isinstance(call_id, str):
            return call_id
        return numbers.setdefault(call_id, f"call#{len(numbers)}")

    out: list[Any] = []
    for message in messages:
        if not isinstance(message, Mapping):
            out.append(message)
            continue
        copy = dict(message)
        if "tool_call_id" in copy:
            copy["tool_call_id"] = number(copy["tool_call_id"])
        calls = copy.get("tool_calls")
        if isinstance(calls, list):
            copy["tool_calls"] = [
                {**c, "id": number(c.get("id"))} if isinstance(c, Mapping) else c for c in calls
            ]
        out.append(copy)
    return out


def _canonical(value: Any) -> str | None:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None


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
    tool_turns: bool = False,
) -> Scope | None:
    """The scope of a chat request, or None when its answer must not be cached.

    The prompt is the last message (see `cache_prompt`); the earlier messages
    (system prompt, turns, tool calls with their ids numbered) and all
    answer-changing parameters (tools and tool_choice among them) go into the digest.
    """
    if cache_prompt(body, tool_turns) is None:
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
        "history": _without_call_ids(body["messages"][:-1]),
        # The last message's other fields ("name") can change the answer too.
        "last": {k: v for k, v in body["messages"][-1].items() if k != "content"},
        "params": params,
    }
    if tool_turns and body["messages"][-1].get("role") == "tool":
        # Its id is numbered with the history's, and its content is the prompt.
        canonical["last"] = {"role": "tool"}
    blob = _canonical(canonical)
    if blob is None:
        return None
    digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return Scope(tenant=tenant, upstream=upstream, model=model, digest=digest)
