from __future__ import annotations

import json
from typing import Any

import pytest

from router.cache import assemble_stream, is_complete, replay_sse

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


def events(stream: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for event in stream:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        data = event[6:-2]
        out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("include_usage", [False, True])
def test_replay_shape(include_usage: bool) -> None:
    parsed = events(list(replay_sse(COMPLETION, include_usage=include_usage)))
    assert parsed[-1] == "[DONE]"
    chunks = parsed[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert text == "Paris."
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert all("usage" in c for c in chunks)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == COMPLETION["usage"]
    else:
        assert all("usage" not in c for c in chunks)


@pytest.mark.parametrize("include_usage", [False, True])
def test_assemble_inverts_replay(include_usage: bool) -> None:
    rebuilt = assemble_stream(list(replay_sse(COMPLETION, include_usage=include_usage)))
    assert rebuilt is not None
    assert rebuilt["choices"][0]["message"]["content"] == "Paris."
    assert rebuilt["choices"][0]["finish_reason"] == "stop"
    assert rebuilt["usage"] == (COMPLETION["usage"] if include_usage else None)
    assert rebuilt["id"] == "chatcmpl-1" and rebuilt["object"] == "chat.completion"


def test_assemble_bare_payloads_and_tool_calls() -> None:
    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        return {"id": "c", "created": 1, "model": "m", "choices": [choice]}

    payloads = [
        chunk(0, {"role": "assistant"}),
        chunk(0, {"content": "Hel"}),
        chunk(0, {"content": "lo"}),
        chunk(1, {"content": "Hi"}, "length"),
        chunk(0, {}, "stop"),
    ]
    rebuilt = assemble_stream([json.dumps(p).encode() for p in payloads] + [b"[DONE]"])
    assert rebuilt is not None
    assert [c["message"]["content"] for c in rebuilt["choices"]] == ["Hello", "Hi"]
    assert [c["finish_reason"] for c in rebuilt["choices"]] == ["stop", "length"]


def test_cut_or_broken_streams_are_not_assembled() -> None:
    stream = list(replay_sse(COMPLETION, include_usage=False))
    cut = [e for e in stream if b'finish_reason":"stop' not in e and b"[DONE]" not in e]
    assert assemble_stream(cut) is None
    assert assemble_stream([]) is None
    assert assemble_stream([b"data: {not json"]) is None
    assert assemble_stream([*stream[:1], b'data: {"error": {"message": "boom"}}']) is None
    tool_stop = [
        b'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "x", '
        b'"function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}'
    ]
    # A tool-call answer assembles; whether the cache takes it is the policy's switch.
    rebuilt = assemble_stream(tool_stop)
    assert rebuilt is not None
    assert rebuilt["choices"][0]["message"]["tool_calls"] == [
        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert not is_complete(rebuilt)
    assert is_complete(rebuilt, tool_calls=True)
    unknown = [b'data: {"choices": [{"index": 0, "delta": {"audio": {"id": "a"}}, "finish_reason": "stop"}]}']
    assert assemble_stream(unknown) is None  # no faithful replay: the request misses instead
