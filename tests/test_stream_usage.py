"""`note_stream_usage` is `inspect_events` without the text: the same bytes out, the same usage."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from router.exchange import inspect_events, note_stream_usage
from router.outcomes.record import DecisionRecord
from router.policy.model import Price


def _chunk(text: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + orjson.dumps(delta)


USAGE = b"data: " + orjson.dumps(
    {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}
)
USAGE_WITH_CHOICE = b"data: " + orjson.dumps(
    {"choices": [{"index": 0, "delta": {}}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
)
NOT_JSON = b'data: {"prompt_tokens": broken'
EVENTS = [_chunk("a"), _chunk("b"), USAGE, USAGE_WITH_CHOICE, NOT_JSON, b"data: [DONE]", b""]
SEPARATORS = [b"\n\n", b"\n\n\n", b"\n\n\n\n", b"\r\n\r\n", b"\r\r"]


def _blocks() -> list[bytes]:
    blocks = []
    for events in itertools.permutations(EVENTS[:5], 3):
        for sep in SEPARATORS:
            blocks.append(b"".join(e + sep for e in events))
    blocks.append(b"\n\n\n" + USAGE + b"\n\n")
    blocks.append(b"\n\n" + USAGE + b"\n\n\n\n" + USAGE + b"\n\n")
    blocks.append(b"".join(e + b"\n\n" for e in EVENTS))
    blocks.append(USAGE)  # no whole event at all
    # What follows the last whole event (a feed never returns it, but the two agree).
    return blocks + [b + tail for b in blocks for tail in (b"\n", USAGE, b"x\n")]


def _record() -> DecisionRecord:
    return DecisionRecord(request_id="r", ts=0.0, tenant="t", model="m", stream=True)


@pytest.mark.parametrize("drop_usage", [False, True])
def test_same_bytes_and_usage_as_inspect_events(drop_usage: bool) -> None:
    upstream: Any = SimpleNamespace(config=SimpleNamespace(price=Price(1.0, 2.0)))
    for block in _blocks():
        if b'"prompt_tokens"' not in block:
            continue
        want, got = _record(), _record()
        expected = inspect_events(block, want, upstream, [], drop_usage, False)
        assert note_stream_usage(block, got, upstream, drop_usage) == expected, block
        assert (got.tokens_in, got.tokens_out, got.cost_usd) == (
            want.tokens_in,
            want.tokens_out,
            want.cost_usd,
        )
