"""Where decision records go. Writing happens on a thread, off the event loop."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog
from prometheus_client import Counter

from router.deadlines import call_later

__all__ = ["RECORD_ERRORS", "JsonlSink", "NullSink", "RedisStreamSink", "Sink"]

log = structlog.get_logger("router.records")

RECORD_ERRORS = Counter(
    "router_record_errors_total",
    "Records kept without their bulky fields (stripped) or lost (unserializable, queue_full).",
    ["kind"],
)

# Fields a client controls in bulk (prompts, answers, headers): when a record cannot
# be serialised, it is written again without them rather than lost.
_BULKY = ("messages", "prompt", "answer", "headers", "shadow_result")

# Records emitted on the event loop are handed to the writer thread in batches,
# at most this long after the first of a batch: one thread wake-up per batch
# instead of one per record (each wake-up also takes the GIL from the loop).
_HANDOFF_S = 0.02


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


def serialize(record: dict[str, Any]) -> str | None:
    """One JSON line; a record orjson refuses (nesting deeper than 254, ...) is
    written without its bulky fields, and dropped only if even that fails."""
    try:
        return orjson.dumps(record, default=str).decode()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    stripped = {k: v for k, v in record.items() if k not in _BULKY}
    stripped["record_error"] = error
    try:
        line = orjson.dumps(stripped, default=str).decode()
    except Exception as exc:
        RECORD_ERRORS.labels("unserializable").inc()
        log.error("record_unserializable", error=f"{type(exc).__name__}: {exc}")
        return None
    RECORD_ERRORS.labels("stripped").inc()
    log.error("record_stripped", request_id=str(record.get("request_id")), error=error)
    return line


class _ThreadedSink:
    """Batches records on the caller's side and writes them from one thread.

    At most `max_queue` records wait (emitted, not yet written): a stalled disk or
    store then costs records, counted in `router_record_errors_total{kind="queue_full"}`,
    rather than memory without bound.
    """

    name = "records-writer"

    def __init__(self, max_queue: int = 100_000) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._max_queue = max_queue
        self._waiting = 0  # emitted and not yet written (or given up on)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._waiting >= self._max_queue:
                full = True
            else:
                full = False
                self._waiting += 1
                self._pending.append(record)
            first = len(self._pending) == 1 and not full
        if full:
            RECORD_ERRORS.labels("queue_full").inc()
            return
        if first:
            try:
                call_later(_HANDOFF_S, self._handoff)
            except RuntimeError:  # no event loop here: hand over at once
                self._handoff()

    def _handoff(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self._queue.put(batch)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything emitted so far is written (tests, shutdown)."""
        self._handoff()
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._handoff()
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self._closed()

    def _run(self) -> None:
        backlog: list[str] = []
        while True:
            items = [self._queue.get()]
            try:
                while len(items) < 64:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            stop = False
            events: list[threading.Event] = []
            handled = len(backlog)
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                elif isinstance(item, list):
                    handled += len(item)
                    backlog.extend(line for r in item if (line := serialize(r)) is not None)
            try:
                backlog = self._write_all(backlog, final=stop)
            except Exception:
                # Nothing may end this thread but _STOP: every later record would be lost.
                log.exception("record_writer_failed", lost=len(backlog))
                backlog = []
            with self._lock:
                self._waiting -= handled - len(backlog)
            for event in events:
                event.set()
            if stop:
                return

    def _write_all(self, lines: list[str], final: bool) -> list[str]:
        """Write `lines`; return what could not be written, to retry later."""
        raise NotImplementedError

    def _closed(self) -> None:
        pass


class JsonlSink(_ThreadedSink):
    """Append records as JSON lines; rotate `path` -> `path.1` ... `path.<keep>` by size."""

    def __init__(
        self,
        path: str | Path,
        rotate_bytes: int = 100 << 20,
        keep: int = 5,
        max_queue: int = 100_000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        super().__init__(max_queue)

    def _write_all(self, lines: list[str], final: bool) -> list[str]:
        if not lines:
            return []
        try:
            self._write(lines)
        except OSError as exc:
            log.error("record_write_failed", path=str(self.path), error=str(exc))
        return []

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

    def _closed(self) -> None:
        self._file.close()


class RedisStreamSink(_ThreadedSink):
    """XADD records to a Redis Stream capped near `maxlen` entries.

    Each entry has one field, `r`, holding the record's JSON. While Redis is
    unreachable, records wait in memory (at most `max_queue`) and are retried.
    Each request's id is also kept (`<stream>:id:<request_id>` -> tenant, for
    `ID_TTL_S`), so that feedback can reach any replica of a fleet.
    """

    name = "records-stream"
    ID_TTL_S = 7 * 86400

    def __init__(
        self,
        url: str,
        stream: str = "hr:decisions",
        maxlen: int = 1_000_000,
        cluster: bool = False,
        max_queue: int = 100_000,
    ) -> None:
        import redis
        from redis.cluster import RedisCluster

        self.stream = stream
        self.maxlen = maxlen
        client = RedisCluster if cluster else redis.Redis
        self.redis: Any = client.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        super().__init__(max_queue)

    def _write_all(self, lines: list[str], final: bool) -> list[str]:
        import redis

        while lines:
            try:
                pipe = self.redis.pipeline(transaction=False)
                for line in lines:
                    pipe.xadd(self.stream, {"r": line}, maxlen=self.maxlen, approximate=True)
                    record = orjson.loads(line)
                    if "kind" not in record and record.get("request_id"):
                        key = f"{self.stream}:id:{record['request_id']}"
                        pipe.set(key, record.get("tenant", ""), ex=self.ID_TTL_S)
                pipe.execute()
                return []
            except redis.RedisError as exc:
                log.error(
                    "record_stream_failed", stream=self.stream, error=str(exc), waiting=len(lines)
                )
                if final:
                    return lines
                threading.Event().wait(1.0)
        return []

    def tenant_of(self, request_id: str) -> str | None:
        """The tenant a recorded request belonged to (blocking: call from a thread)."""
        value = self.redis.get(f"{self.stream}:id:{request_id}")
        return value.decode() if isinstance(value, bytes) else None

    def _closed(self) -> None:
        self.redis.close()
