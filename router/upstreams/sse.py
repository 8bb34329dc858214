"""Split an SSE byte stream into whole events without holding back what is complete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["EventBuffer", "event_data", "payloads"]


class EventBuffer:
    """Feed raw chunks; get back the bytes of the complete events seen so far.

    Whatever follows the last blank line stays buffered until its event completes,
    so an event is never split between two forwarded chunks.
    """

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._rest + chunk if self._rest else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._rest = data
            return b""
        self._rest = data[end + 2 :]
        return data[: end + 2]

    @property
    def pending(self) -> bytes:
        return self._rest


def payloads(events: bytes) -> Iterator[bytes]:
    """The `data:` payload of each event in a block of complete events."""
    for event in events.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                yield line[5:].strip()


def event_data(payload: bytes) -> dict[str, Any] | None:
    if payload == b"[DONE]":
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
