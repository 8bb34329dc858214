"""Cached answers as OpenAI chat.completion.chunk streams, and back.

A cached answer must read the same whichever way it was stored and whichever
way it is asked for: a stream stored and asked for plain, a plain answer asked
for as a stream. So both directions carry every field an answer can hold
(content, refusal, reasoning in either spelling, tool calls, annotations,
logprobs, usage, system_fingerprint, service_tier). An answer with a field
that has no faithful stream form (audio, a legacy function_call) is not
replayed as a stream (`streamable`), and a stream with a delta field this
module does not know is not assembled: such a request misses instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "COMPLETE_FINISH_REASONS",
    "assemble_stream",
    "has_tool_calls",
    "is_complete",
    "replay_sse",
    "streamable",
]

# Only answers that ended on their own (or at max_tokens, which is in the scope)
# are worth replaying; "content_filter" or a cut stream are not. "tool_calls" is
# added when the cache takes tool-call answers (`CacheConfig.tool_calls`).
COMPLETE_FINISH_REASONS = frozenset({"stop", "length"})
_WITH_TOOLS = COMPLETE_FINISH_REASONS | {"tool_calls"}

# Message fields streamed as text deltas, in the order they are replayed.
_TEXT = ("reasoning_content", "reasoning", "content", "refusal")
_MESSAGE_KEYS = frozenset({"role", *_TEXT, "tool_calls", "annotations"})
_HEAD = ("id", "created", "model", "system_fingerprint", "service_tier")
_CHOICE_KEYS = frozenset({"index", "delta", "logprobs", "finish_reason", "stop_reason"})


def _present(value: Any) -> bool:
    return value is not None and value != []


def is_complete(completion: Mapping[str, Any], *, tool_calls: bool = False) -> bool:
    choices = completion.get("choices")
    if completion.get("object") != "chat.completion" or not isinstance(choices, list):
        return False
    if not choices:
        return False
    finished = _WITH_TOOLS if tool_calls else COMPLETE_FINISH_REASONS
    return all(
        isinstance(c, Mapping)
        and c.get("finish_reason") in finished
        and isinstance(c.get("message"), Mapping)
        # "tool_calls" with no call in the message is a broken answer, not a complete one.
        and (c["finish_reason"] != "tool_calls" or _present(c["message"].get("tool_calls")))
        for c in choices
    )


def has_tool_calls(completion: Mapping[str, Any]) -> bool:
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping) and _present(message.get("tool_calls")):
            return True
    return False


def streamable(completion: Mapping[str, Any]) -> bool:
    """Whether `replay_sse` can give every field of `completion` back."""
    for choice in completion.get("choices") or ():
        if not isinstance(choice, Mapping) or not isinstance(choice.get("message"), Mapping):
            return False
        message = choice["message"]
        if any(_present(v) for k, v in message.items() if k not in _MESSAGE_KEYS):
            return False
        if any(_present(v) for k, v in choice.items() if k not in _CHOICE_KEYS | {"message"}):
            return False
    return True


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def replay_sse(completion: Mapping[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The SSE events an upstream would have sent for `completion`, ending in [DONE].

    Each choice gets a role chunk, a chunk per text field, one for its tool calls
    and one for annotations, and a finish chunk; the logprobs ride on the content
    chunk (or the finish chunk when there is no content). With `include_usage`
    every chunk carries `"usage": null` and a last chunk with no choices carries
    the usage, as `stream_options.include_usage` asks.
    """
    base: dict[str, Any] = {
        "id": completion.get("id", "chatcmpl-cached"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", int(time.time())),
        "model": completion.get("model", ""),
    }
    for key in ("system_fingerprint", "service_tier"):
        if completion.get(key) is not None:
            base[key] = completion[key]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        choice.update(extra)
        return _event({**base, "choices": [choice]})

    for position, choice in enumerate(completion.get("choices", [])):
        index = choice.get("index", position)
        message = choice.get("message", {})
        logprobs = choice.get("logprobs")
        role: dict[str, Any] = {"role": message.get("role", "assistant")}
        if isinstance(message.get("content"), str):
            role["content"] = ""
        yield chunk(index, role, None)
        for key in _TEXT:
            if message.get(key):
                extra = {"logprobs": logprobs} if key == "content" and logprobs else {}
                if extra:
                    logprobs = None
                yield chunk(index, {key: message[key]}, None, **extra)
        for n, call in enumerate(message.get("tool_calls") or []):
            yield chunk(index, {"tool_calls": [{"index": n, **call}]}, None)
        if message.get("annotations"):
            yield chunk(index, {"annotations": message["annotations"]}, None)
        finish_extra: dict[str, Any] = {"logprobs": logprobs} if logprobs else {}
        if choice.get("stop_reason") is not None:
            finish_extra["stop_reason"] = choice["stop_reason"]
        yield chunk(index, {}, choice.get("finish_reason"), **finish_extra)
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
        if function.get(key) is not None:
            call["function"][key] = call["function"].get(key, "") + function[key]


class _Choice:
    """One choice of a stream, as its deltas arrive."""

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: dict[str, list[str]] = {}
        self.tools: dict[int, dict[str, Any]] = {}
        self.annotations: list[Any] = []
        self.logprobs: dict[str, list[Any]] = {}
        self.finish_reason: str | None = None
        self.stop_reason: Any = None

    def add(self, choice: Mapping[str, Any]) -> bool:
        """False when the chunk holds something this module cannot give back."""
        if any(_present(v) for k, v in choice.items() if k not in _CHOICE_KEYS):
            return False
        delta = choice.get("delta") or {}
        if any(_present(v) for k, v in delta.items() if k not in _MESSAGE_KEYS):
            return False
        if delta.get("role"):
            self.role = delta["role"]
        for key in _TEXT:
            if isinstance(delta.get(key), str):
                self.text.setdefault(key, []).append(delta[key])
        for call in delta.get("tool_calls") or []:
            _merge_tool_call(self.tools, call)
        self.annotations.extend(delta.get("annotations") or [])
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, Mapping):
            for key, items in logprobs.items():
                if isinstance(items, list):
                    self.logprobs.setdefault(key, []).extend(items)
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        if choice.get("stop_reason") is not None:
            self.stop_reason = choice["stop_reason"]
        return True

    def build(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": None, "refusal": None}
        for key, parts in self.text.items():
            message[key] = "".join(parts)
        if self.tools:
            message["tool_calls"] = [self.tools[n] for n in sorted(self.tools)]
        if self.annotations:
            message["annotations"] = self.annotations
        logprobs = None
        if self.logprobs:
            logprobs = {"content": None, "refusal": None, **self.logprobs}
        built = {
            "index": index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason,
        }
        if self.stop_reason is not None:
            built["stop_reason"] = self.stop_reason
        return built


def assemble_stream(payloads: list[bytes]) -> dict[str, Any] | None:
    """Rebuild the chat.completion a stream of chunk payloads amounts to.

    Accepts bare JSON payloads or whole `data: ...` lines. Returns None when the
    stream is not a complete answer (unparsable, an error event, a choice that
    never finished) or holds a field that could not be given back faithfully.
    """
    head: dict[str, Any] = {}
    choices: dict[int, _Choice] = {}
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
        for key in _HEAD:
            if event.get(key) is not None:
                head.setdefault(key, event[key])
        if event.get("usage") is not None:
            usage = event["usage"]
        for choice in event.get("choices") or []:
            if not isinstance(choice, Mapping):
                return None
            state = choices.setdefault(int(choice.get("index", 0)), _Choice())
            if not state.add(choice):
                return None
    if not choices or any(c.finish_reason is None for c in choices.values()):
        return None
    completion: dict[str, Any] = {
        "id": head.get("id", "chatcmpl-assembled"),
        "object": "chat.completion",
        "created": head.get("created", int(time.time())),
        "model": head.get("model", ""),
        "choices": [choices[i].build(i) for i in sorted(choices)],
        "usage": usage,
    }
    for key in ("system_fingerprint", "service_tier"):
        if key in head:
            completion[key] = head[key]
    return completion
