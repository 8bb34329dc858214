"""The default `Transport`: HTTP/1.1 on asyncio protocols, parsed by llhttp (httptools).

The router needs a narrow slice of an HTTP client: one request with a body it
already holds as bytes, on a pooled keep-alive connection, then the status, the
raw headers and the body as it arrives. aiohttp's client does that through a
request object, a response object, a payload registry, a timer per request and
several coroutine layers; profiled under load (issue #14) it was the largest
single share of the router's CPU per request. Here a request is one formatted
head and one `write`, and the answer is parsed by the same C parser uvicorn uses
for the router's own clients.

What it deliberately does not do: redirects (the router never follows them),
cookies (a shared jar would carry one tenant's upstream session to another),
decompression (bodies are relayed as sent), proxies from the environment, and
HTTP/2. `ROUTER_TRANSPORT=aiohttp` or `=httpx` selects a full client instead.

Failures are httpx's exception classes, like every transport behind the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

from router.deadlines import Deadline
from router.upstreams.transport import ParsedUrls, RawHeaders, Timeouts

__all__ = ["WireTransport"]

# An idle pooled connection older than this is closed rather than reused (as
# aiohttp's default). Servers close idle connections on their own schedule
# (uvicorn, under vLLM, after 5 s); one that did is caught before reuse, below.
KEEPALIVE_S = 15.0
# A connection idle this long is checked for a close (or stray bytes) that has
# reached the socket but not yet the event loop, before a request goes into it;
# under load connections are never idle this long and the check costs nothing.
_CHECK_IDLE_S = 0.25
# Stop reading from an upstream whose body the client does not take this fast.
_HIGH_WATER = 256 * 1024
# Framing is the transport's: these headers from the caller would contradict it.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})


class _Target:
    """A parsed URL: where to connect, and what goes into the request line."""

    __slots__ = ("host", "host_header", "key", "port", "secure", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"cannot send to {url!r}: not an http(s) URL")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        default = 443 if self.secure else 80
        try:
            port = parts.port
        except ValueError as exc:
            raise httpx.UnsupportedProtocol(f"invalid port in {url!r}") from exc
        self.port = port or default
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if self.port == default else f"{name}:{self.port}"
        path = parts.path or "/"
        self.target = f"{path}?{parts.query}" if parts.query else path
        self.key = (self.secure, self.host, self.port)


class WireTransport:
    """Pooled HTTP/1.1 connections to any number of origins, at most
    `max_connections` open at once (requests beyond wait for one to free up)."""

    def __init__(
        self,
        max_connections: int = 256,
        timeouts: Timeouts | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float = KEEPALIVE_S,
    ) -> None:
        self._max = max_connections
        timeouts = timeouts or Timeouts()
        self._connect_s = timeouts.connect
        self._read_s = timeouts.read
        self._ssl = ssl_context
        self._keepalive = keepalive
        self._target = ParsedUrls(_Target)
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._count = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
    ) -> _Response:
        target = self._target(url)
        head = _head(method, target, headers, content)
        while True:
            conn, reused = await self._acquire(target)
            response = _Response(conn, method == "HEAD", self._read_s)
            try:
                await conn.request(response, head, content)
            except _NoAnswer as exc:
                # The server closed a kept-alive connection as the request went out:
                # nothing was answered. Trying again is safe only where sending the
                # request twice is (a POST is left to the caller's retry policy).
                if reused and method in _IDEMPOTENT:
                    continue
                raise httpx.RemoteProtocolError(str(exc)) from None
            except BaseException:
                conn.close()  # half a request went out: the connection is unusable
                raise
            return response

    async def _acquire(self, target: _Target) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise httpx.ConnectError("the transport is closed")
            idle = self._idle.get(target.key)
            if idle:
                now = loop.time()
                while idle:
                    conn = idle.pop()
                    if conn.reusable(now, self._keepalive):
                        return conn, True
                    conn.close()
            if self._count >= self._max and not self._evict_idle():
                await self._wait_for_room()
                continue
            self._count += 1
            conn = _Connection(self, target.key)
            try:
                await self._connect(conn, target)
            except BaseException:
                conn.close()
                self._lost(conn)
                raise
            return conn, False

    def _evict_idle(self) -> bool:
        """Close one idle connection of any origin to make room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return self._count < self._max
        return False

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            with Deadline(self._connect_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken as it gave up: the room goes to the next in line
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no connection became free in time") from None
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, conn: _Connection, target: _Target) -> None:
        loop = asyncio.get_running_loop()
        context = None
        if target.secure:
            context = self._ssl = self._ssl or _default_ssl()
        try:
            with Deadline(self._connect_s):
                await loop.create_connection(
                    lambda: conn,
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {target.host_header} in time") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc

    def _release(self, conn: _Connection) -> None:
        """A connection whose answer was read to its end goes back to its pool."""
        if self._closed:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake()

    def _lost(self, conn: _Connection) -> None:
        if not conn.counted:
            return
        conn.counted = False
        self._count -= 1
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
            idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


def _default_ssl() -> ssl.SSLContext:
    """The system's CAs (SSL_CERT_FILE / SSL_CERT_DIR honoured), or certifi's where
    the system has none (minimal images)."""
    context = ssl.create_default_context()
    if not context.cert_store_stats().get("x509_ca"):
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi comes with httpx
            return context
        context.load_verify_locations(certifi.where())
    return context


def _head(
    method: str, target: _Target, headers: Sequence[tuple[str, str]], content: bytes
) -> bytes:
    lines = [f"{method} {target.target} HTTP/1.1"]
    host = True
    for name, value in headers:
        lowered = name.lower()
        if lowered in _FRAMING:
            continue
        if lowered == "host":
            host = False
        lines.append(f"{name}: {value}")
    if host:
        lines.append(f"host: {target.host_header}")
    if content or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(content)}")
    text = "\r\n".join(lines)
    # A CR or LF inside a name or value would start a header (or a request) of the
    # caller's making: every line break must be one of ours.
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise httpx.LocalProtocolError("a header name or value holds a line break")
    try:
        return (text + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header is not latin-1 text") from None


def _readable(transport: asyncio.Transport) -> bool:
    """Whether an idle connection's socket holds something: the server's close, most
    likely (an idle connection is owed nothing), so it is not reused."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        ready, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class _NoAnswer(Exception):
    """The connection closed before any byte of an answer arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one request at a time."""

    def __init__(self, owner: WireTransport, key: tuple[bool, str, int]) -> None:
        self.owner = owner
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: _Response | None = None
        self.counted = True  # in the transport's count of open connections
        self.closed = False
        self.idle_since = 0.0
        self.paused = False
        self._answered = False  # some byte of the current answer arrived

    def reusable(self, now: float, keepalive: float) -> bool:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        idle = now - self.idle_since
        return idle < keepalive and (idle < _CHECK_IDLE_S or not _readable(transport))

    async def request(self, response: _Response, head: bytes, content: bytes) -> None:
        """Write the request; return once the answer's status and headers arrived."""
        transport = self.transport
        if transport is None or self.closed:
            raise _NoAnswer("the connection closed before the request was sent")
        self.response = response
        self._answered = False
        if len(content) < 65536:
            transport.write(head + content)
        else:
            transport.write(head)
            transport.write(content)
        await response.wait_headers()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()  # connection_lost follows and does the accounting

    def done_with(self, response: _Response) -> None:
        """The client is done with `response`: reuse the connection if it may be."""
        if self.response is not response:
            return
        self.response = None
        if response.complete and response.keep_alive and not self.closed:
            if self.paused:
                self.paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self.owner._release(self)
        else:
            self.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the connection is out of step with the server.
            self.close()
            return
        self._answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response.fail(httpx.RemoteProtocolError("the upstream switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            response.fail(httpx.RemoteProtocolError(f"malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.until_eof:
                response.finish()  # a body delimited by the connection's close
            elif not self._answered and not response.has_headers:
                response.fail(_NoAnswer("the upstream closed the connection without answering"))
            else:
                cause = f" ({exc})" if exc else ""
                response.fail(httpx.RemoteProtocolError(f"the answer broke off{cause}"))
        self.owner._lost(self)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        # After the headers come a chunked body's trailers: the headers were relayed
        # already, so they are not added to them after the fact.
        if not response.has_headers:
            response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            response.raw_headers.clear()  # an interim answer (100 Continue): the real one follows
            return
        response.headers_arrived(status, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        if response.feed(body) and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status_code >= 200:
            response.finish()

    def resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()


class _Response:
    """An answer from a `_Connection`, read by one consumer."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_error",
        "_head_only",
        "_read_s",
        "_released",
        "_waiter",
        "complete",
        "content",
        "has_headers",
        "headers",
        "keep_alive",
        "raw_headers",
        "status_code",
        "until_eof",
    )

    def __init__(self, conn: _Connection, head_only: bool, read_s: float) -> None:
        self._conn = conn
        self._head_only = head_only
        self._read_s = read_s
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers = RawHeaders(self.raw_headers)
        self.status_code = 0
        self.has_headers = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False
        self.content = b""

    # fed by the connection

    def headers_arrived(self, status: int, keep_alive: bool) -> None:
        self.status_code = status
        self.has_headers = True
        self.keep_alive = keep_alive
        if self._head_only:
            # A HEAD answer has no body whatever its headers say; the parser does not
            # know that, so the connection is not trusted again.
            self.keep_alive = False
            self.complete = True
        elif keep_alive is False and status not in (204, 304):
            self.until_eof = not any(
                name.lower() in (b"content-length", b"transfer-encoding")
                for name, _ in self.raw_headers
            )
        self._wake()

    def feed(self, body: bytes) -> bool:
        """Buffer a piece of the body; True when enough waits to stop reading."""
        if self.complete:
            return False
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()
        return self._buffered > _HIGH_WATER

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._error is None and not self.complete:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            with Deadline(self._read_s):
                await waiter
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream went silent") from None
        finally:
            self._waiter = None

    async def wait_headers(self) -> None:
        while not self.has_headers:
            if self._error is not None:
                raise self._error
            await self._wait()

    # read by the caller

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    async def _next(self) -> bytes | None:
        """What arrived of the body since the last call, waited for; None at its end."""
        while not self._chunks:
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._take()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        while (chunk := await self._next()) is not None:
            yield chunk

    async def aread(self) -> bytes:
        parts: list[bytes] = []
        while (chunk := await self._next()) is not None:
            parts.append(chunk)
        self.content = parts[0] if len(parts) == 1 else b"".join(parts)
        return self.content

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._conn.done_with(self)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<_Response {self.status_code} complete={self.complete}>"
