"""A lean closed-loop HTTP/1.1 load generator for the overhead benchmark.

Each of `concurrency` keep-alive connections sends one request, waits for the
whole response, and sends the next (closed loop). Raw asyncio protocols on
uvloop with httptools' C response parser keep the client far cheaper than any
proxy under test, so a single process on one core drives tens of thousands of
requests a second on loopback (the `direct` row of the report shows how many).

Per request it records the latency to the last byte and, for streams, the time
to the first SSE event (`data:` in the body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

__all__ = ["LoadResult", "build_request", "loop_factory", "run_load"]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def build_request(host: str, port: int, path: str, body: bytes, key: str = "sk-bench") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"host: {host}:{port}\r\n"
        "content-type: application/json\r\n"
        "accept: application/json, text/event-stream\r\n"
        f"authorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, to the last byte
    first_event: list[float] = field(default_factory=list)  # seconds, streams only
    errors: int = 0
    completed: int = 0  # every answered request, warm-up and tail included (for CPU/request)
    cpu_s: float | None = None  # CPU seconds the target used over the whole point, if known
    error_samples: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.sent = 0.0
        self.first = 0.0
        self.status = 0
        self.events = 0
        self.body_len = 0
        self.tail = b""
        self.keep_alive = True
        self.lost: BaseException | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionResetError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.first and b"data:" in body:
            self.first = time.perf_counter()
        self.events += body.count(b"data:")
        self.body_len += len(body)
        self.tail = (self.tail + body)[-64:]

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def request(self, raw: bytes) -> None:
        if self.transport is None:
            raise self.lost or ConnectionResetError("not connected")
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.first = 0.0
        self.status = 0
        self.events = 0
        self.body_len = 0
        self.tail = b""
        self.sent = time.perf_counter()
        self.transport.write(raw)
        await self.waiter


async def _connect(host: str, port: int) -> _Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Conn, host, port)
    return conn


def _check(conn: _Conn, stream: bool, expect_events: int) -> str | None:
    if conn.status != 200:
        return f"HTTP {conn.status}"
    if stream:
        if b"[DONE]" not in conn.tail:
            return "stream without [DONE]"
        if expect_events and conn.events < expect_events:
            return f"stream with {conn.events} events, expected >= {expect_events}"
    elif conn.body_len == 0:
        return "empty body"
    return None


async def run_load(
    host: str,
    port: int,
    raw: bytes,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    stream: bool,
    expect_events: int = 0,
    max_requests: int | None = None,
    min_requests: int = 0,
    max_duration: float | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """Closed loop: `concurrency` connections, `warmup` s unrecorded, then `duration` s.

    A slow target gets more time, up to `max_duration` s, until `min_requests`
    were recorded (a proxy at 1 s per stream records nothing in a 2 s window).
    Stops early once `max_requests` were recorded (bounded work on fast targets).
    """
    result = LoadResult()
    conns = [await _connect(host, port) for _ in range(concurrency)]
    start = time.perf_counter()
    measure_from = start + warmup
    soft_stop = measure_from + duration
    hard_stop = measure_from + max(duration, max_duration or duration)
    stop_at = float("inf")  # set once, when the first worker sees the stop condition

    def should_stop(now: float) -> bool:
        nonlocal stop_at
        if now >= stop_at:
            return True
        recorded = len(result.latencies)
        if (
            (now >= soft_stop and recorded >= min_requests)
            or now >= hard_stop
            or (max_requests is not None and recorded >= max_requests)
        ):
            stop_at = now
            return True
        return False

    async def worker(index: int) -> None:
        conn = conns[index]
        while not should_stop(time.perf_counter()):
            try:
                if conn.transport is None or not conn.keep_alive:
                    if conn.transport is not None:
                        conn.transport.close()
                    conn = conns[index] = await _connect(host, port)
                async with asyncio.timeout(timeout):
                    await conn.request(raw)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                if conn.sent >= measure_from:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{type(exc).__name__}: {exc}")
                if conn.transport is not None:
                    conn.transport.close()
                conn.transport = None
                await asyncio.sleep(0.01)
                continue
            end = time.perf_counter()
            result.completed += 1
            if conn.sent < measure_from or end > stop_at:
                continue
            problem = _check(conn, stream, expect_events)
            if problem is not None:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(problem)
                continue
            result.latencies.append(end - conn.sent)
            if stream and conn.first:
                result.first_event.append(conn.first - conn.sent)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    end = min(time.perf_counter(), stop_at)
    result.duration = max(end - measure_from, 1e-9)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0)
    return result
