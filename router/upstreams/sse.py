"""Split an SSE byte stream into whole events without holding back what is complete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["EventBuffer", "event_data", "payloads", "split_events"]


class EventBuffer:
    """Feed raw chunks; get back the bytes of the complete events seen so far.

    Whatever follows the last blank line stays buffered until its event completes,
    so an event is never split between two forwarded chunks.
    """

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._rest + chunk if self._rest else chunk
        end = _after(data, b"\n\n")
        if b"\r" in data:  # SSE allows CRLF and CR line ends too
            end = max(end, _after(data, b"\r\n\r\n"), _after(data, b"\r\r"))
        if end == 0:
            self._rest = data
            return b""
        self._rest = data[end:]
        return data[:end]

    @property
    def pending(self) -> bytes:
        return self._rest


def _after(data: bytes, boundary: bytes) -> int:
    """The index just past the last `boundary` in `data`, or 0."""
    at = data.rfind(boundary)
    return at + len(boundary) if at >= 0 else 0


def split_events(events: bytes) -> list[bytes]:
    """Complete events (without their blank line) of a block that `feed` returned."""
    if b"\r" in events:
        events = events.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return events.split(b"\n\n")[:-1]


def payloads(events: bytes) -> Iterator[bytes]:
    """The `data:` payload of each event in a block of complete events."""
    if b"\r" in events:
        events = events.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
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
