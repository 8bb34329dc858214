"""Cached answers as OpenAI chat.completion.chunk streams, and back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["COMPLETE_FINISH_REASONS", "assemble_stream", "is_complete", "replay_sse"]

# Only answers that ended on their own (or at max_tokens, which is in the scope)
# are worth replaying; "tool_calls", "content_filter" or a cut stream are not.
COMPLETE_FINISH_REASONS = frozenset({"stop", "length"})


def is_complete(completion: Mapping[str, Any]) -> bool:
    choices = completion.get("choices")
    if completion.get("object") != "chat.completion" or not isinstance(choices, list):
        return False
    if not choices:
        return False
    return all(
        isinstance(c, Mapping)
        and c.get("finish_reason") in COMPLETE_FINISH_REASONS
        and isinstance(c.get("message"), Mapping)
        for c in choices
    )


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def replay_sse(completion: Mapping[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The SSE events an upstream would have sent for `completion`, ending in [DONE].

    Each choice gets a role chunk, a content chunk and a finish chunk; with
    `include_usage` every chunk carries `"usage": null` and a last chunk with no
    choices carries the usage, as `stream_options.include_usage` asks.
    """
    base: dict[str, Any] = {
        "id": completion.get("id", "chatcmpl-cached"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", int(time.time())),
        "model": completion.get("model", ""),
    }
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _event({**base, "choices": [choice]})

    for position, choice in enumerate(completion.get("choices", [])):
        index = choice.get("index", position)
        message = choice.get("message", {})
        yield chunk(index, {"role": message.get("role", "assistant"), "content": ""}, None)
        if message.get("content"):
            yield chunk(index, {"content": message["content"]}, None)
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]}, None)
        for n, call in enumerate(message.get("tool_calls") or []):
            yield chunk(index, {"tool_calls": [{"index": n, **call}]}, None)
        yield chunk(index, {}, choice.get("finish_reason"))
    if include_usage:
        yield _event({**base, "choices": [], "usage": completion.get("usage")})
    yield b"data: [DONE]\n\n"


def _payload(raw: bytes) -> bytes:
    raw = raw.strip()
    if raw.startswith(b"data:"):
        raw = raw[5:].strip()
    return raw


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    index = int(delta.get("index", len(calls)))
    call = calls.setdefault(index, {"id": None, "type": "function", "function": {}})
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    for key in ("name", "arguments"):
        if function.get(key):
            call["function"][key] = call["function"].get(key, "") + function[key]


def assemble_stream(payloads: list[bytes]) -> dict[str, Any] | None:
    """Rebuild the chat.completion a stream of chunk payloads amounts to.

    Accepts bare JSON payloads or whole `data: ...` lines. Returns None when the
    stream is not a complete answer: unparsable, an error event, or a choice that
    never reached a finish_reason of stop or length.
    """
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for raw in payloads:
        data = _payload(raw)
        if not data or data == b"[DONE]":
            continue
        try:
            event = json.loads(data)
        except ValueError:
            return None
        if not isinstance(event, dict) or "error" in event:
            return None
        for key in ("id", "created", "model", "system_fingerprint"):
            if event.get(key) is not None:
                head.setdefault(key, event[key])
        if event.get("usage") is not None:
            usage = event["usage"]
        for choice in event.get("choices") or []:
            index = int(choice.get("index", 0))
            state = choices.setdefault(
                index, {"role": "assistant", "content": [], "refusal": [], "tools": {}}
            )
            delta = choice.get("delta") or {}
            if delta.get("role"):
                state["role"] = delta["role"]
            if delta.get("content"):
                state["content"].append(delta["content"])
            if delta.get("refusal"):
                state["refusal"].append(delta["refusal"])
            for call in delta.get("tool_calls") or []:
                _merge_tool_call(state["tools"], call)
            if choice.get("finish_reason") is not None:
                state["finish_reason"] = choice["finish_reason"]
    if not choices:
        return None
    built: list[dict[str, Any]] = []
    for index in sorted(choices):
        state = choices[index]
        if state.get("finish_reason") not in COMPLETE_FINISH_REASONS:
            return None
        message: dict[str, Any] = {
            "role": state["role"],
            "content": "".join(state["content"]) if state["content"] else None,
            "refusal": "".join(state["refusal"]) if state["refusal"] else None,
        }
        if state["tools"]:
            message["tool_calls"] = [state["tools"][n] for n in sorted(state["tools"])]
        built.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": state["finish_reason"],
            }
        )
    completion: dict[str, Any] = {
        "id": head.get("id", "chatcmpl-assembled"),
        "object": "chat.completion",
        "created": head.get("created", int(time.time())),
        "model": head.get("model", ""),
        "choices": built,
        "usage": usage,
    }
    if "system_fingerprint" in head:
        completion["system_fingerprint"] = head["system_fingerprint"]
    return completion
