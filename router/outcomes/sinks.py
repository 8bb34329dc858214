"""Where decision records go. Writing happens on a thread, off the event loop."""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Any, Protocol

import structlog

__all__ = ["JsonlSink", "NullSink", "RedisStreamSink", "Sink"]

log = structlog.get_logger("router.records")


class Sink(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...

    def flush(self, timeout: float = 5.0) -> None: ...

    def close(self) -> None: ...


class NullSink:
    def emit(self, record: dict[str, Any]) -> None:
        pass

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def close(self) -> None:
        pass


_STOP = object()


class JsonlSink:
    """Append records as JSON lines; rotate `path` -> `path.1` ... `path.<keep>` by size.

    `emit` only enqueues, so the request path never waits on the disk. A bounded
    queue would drop records under a slow disk; an unbounded one trades memory
    for never losing an accepted record, which is the promise here.
    """

    def __init__(self, path: str | Path, rotate_bytes: int = 100 << 20, keep: int = 5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._thread = threading.Thread(target=self._run, name="records-writer", daemon=True)
        self._thread.start()

    def emit(self, record: dict[str, Any]) -> None:
        self._queue.put(record)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything emitted so far is on disk (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self._file.close()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            try:
                while len(items) < 1024:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            lines: list[str] = []
            stop = False
            events: list[threading.Event] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    lines.append(json.dumps(item, separators=(",", ":"), default=str))
            if lines:
                try:
                    self._write(lines)
                except OSError as exc:
                    log.error("record_write_failed", path=str(self.path), error=str(exc))
            for event in events:
                event.set()
            if stop:
                return

    def _write(self, lines: list[str]) -> None:
        """Write lines, rotating as soon as the file reaches its size limit."""
        pending: list[str] = []
        for line in lines:
            pending.append(line + "\n")
            self._size += len(line) + 1
            if self._size >= self.rotate_bytes:
                self._file.write("".join(pending))
                pending = []
                self._rotate()
        if pending:
            self._file.write("".join(pending))
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0


class RedisStreamSink:
    """XADD records to a Redis Stream capped near `maxlen` entries, from a thread.

    Each entry has one field, `r`, holding the record's JSON. While Redis is
    unreachable, records wait in memory and are retried, so none is dropped.
    """

    def __init__(self, url: str, stream: str = "hr:decisions", maxlen: int = 1_000_000) -> None:
        import redis

        self.stream = stream
        self.maxlen = maxlen
        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="records-stream", daemon=True)
        self._thread.start()

    def emit(self, record: dict[str, Any]) -> None:
        self._queue.put(record)

    def flush(self, timeout: float = 5.0) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self.redis.close()

    def _run(self) -> None:
        import redis

        backlog: list[str] = []
        while True:
            items = [self._queue.get()]
            try:
                while len(items) < 1024:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            stop = False
            events: list[threading.Event] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    backlog.append(json.dumps(item, separators=(",", ":"), default=str))
            while backlog:
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    for line in backlog:
                        pipe.xadd(self.stream, {"r": line}, maxlen=self.maxlen, approximate=True)
                    pipe.execute()
                    backlog = []
                except redis.RedisError as exc:
                    log.error(
                        "record_stream_failed",
                        stream=self.stream,
                        error=str(exc),
                        waiting=len(backlog),
                    )
                    if stop:
                        break
                    threading.Event().wait(1.0)
            for event in events:
                event.set()
            if stop:
                return
