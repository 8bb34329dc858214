"""Property: a cached answer reads the same whichever mode stored it and whichever asks.

Over generated answers (text, reasoning in either spelling, refusals, tool calls,
annotations, logprobs, several choices), the stream an upstream sends, the
completion rebuilt from it, and the stream replayed from either, all amount to
the same answer, apart from ids and timestamps.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import stream_of

from router.cache import assemble_stream, is_complete, replay_sse, streamable

words = st.lists(st.sampled_from(["alpha", "beta", "4", "não", "日本", "\"q\"", "x\ny"]), min_size=1, max_size=6)
text = words.map(" ".join)


@st.composite
def choices(draw: Any, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    kind = draw(st.sampled_from(["text", "tools", "refusal"]))
    logprobs = None
    if kind == "text":
        content = draw(text)
        message["content"] = content
        if draw(st.booleans()):
            tokens = [w + (" " if i < len(content.split(" ")) - 1 else "") for i, w in enumerate(content.split(" "))]
            logprobs = {
                "content": [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in tokens],
                "refusal": None,
            }
        if draw(st.booleans()):
            message["annotations"] = [{"type": "url_citation", "url_citation": {"url": "https://e.x", "title": "t", "start_index": 0, "end_index": 1}}]
    elif kind == "refusal":
        message["refusal"] = draw(text)
    else:
        n = draw(st.integers(1, 3))
        message["tool_calls"] = [
            {"id": f"call_{index}_{i}", "type": "function",
             "function": {"name": f"f{i}", "arguments": json.dumps({"arg": draw(text)})}}
            for i in range(n)
        ]  # fmt: skip
    reasoning = draw(st.sampled_from([None, "reasoning_content", "reasoning"]))
    if reasoning:
        message[reasoning] = draw(text)
    finish = "tool_calls" if kind == "tools" else draw(st.sampled_from(["stop", "length"]))
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}


@st.composite
def completions(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 2))
    out: dict[str, Any] = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [draw(choices(i)) for i in range(n)],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    if draw(st.booleans()):
        out["system_fingerprint"] = "fp_x"
    return out


def normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if v not in (None, []) and k not in ("id", "created")}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def encoded(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(c).encode() for c in chunks]


@settings(max_examples=300, deadline=None)
@given(completions())
def test_every_mode_round_trips(completion: dict[str, Any]) -> None:
    assert is_complete(completion, tool_calls=True) and streamable(completion)
    # stored from a stream, asked plain
    from_stream = assemble_stream(encoded(stream_of(completion)))
    assert from_stream is not None
    assert normal(from_stream) == normal(completion)
    # stored plain, asked as a stream
    replayed = assemble_stream(list(replay_sse(completion, include_usage=True)))
    assert replayed is not None
    assert normal(replayed) == normal(completion)
    # stored from a stream, asked as a stream
    again = assemble_stream(list(replay_sse(from_stream, include_usage=True)))
    assert again is not None and normal(again) == normal(completion)
    # without include_usage the replay carries no usage, and nothing else changes
    bare = assemble_stream(list(replay_sse(completion, include_usage=False)))
    assert bare is not None and bare["usage"] is None
    assert normal({**bare, "usage": None}) == normal({**completion, "usage": None})


def test_fields_without_a_stream_form_are_not_replayed() -> None:
    completion = {
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hi", "audio": {"id": "a1", "data": "..."}}}],
    }  # fmt: skip
    assert not streamable(completion)
    assert streamable({**completion, "choices": [{**completion["choices"][0], "message": {"role": "assistant", "content": "hi", "audio": None}}]})
