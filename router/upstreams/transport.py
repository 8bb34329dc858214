"""The transport seam: how one request reaches an upstream and its answer comes back.

The router needs little of an HTTP client: send one request on a pooled
connection, read the status and raw headers, then the body as it arrives. That
is all a `Transport` does. Three ship (`ROUTER_TRANSPORT` picks one):

- `wire` (the default, router/upstreams/wire.py): HTTP/1.1 on asyncio protocols
  with llhttp's C parser, a request one formatted head and one write. Under load
  a whole router request costs about two thirds of the CPU it did on aiohttp
  (bench/overhead, issue #14).
- `aiohttp`: aiohttp's C-accelerated client, driven directly (not through the
  httpx API, whose request and response objects cost more than aiohttp's send).
- `httpx`: any `httpx.AsyncBaseTransport` (httpx's own pure-Python engine by
  default), so tests and users can still plug in what httpx can drive.

Failures are raised as httpx's exception classes whichever transport runs, so
the code above catches one family: `httpx.TimeoutException` for a timeout,
`httpx.TransportError` for a connection that failed or broke.

No transport keeps cookies: a jar shared by every request of every tenant
would send one tenant's upstream session cookie on the next tenant's request.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, overload

import httpx

__all__ = [
    "TRANSPORTS",
    "HeaderView",
    "HttpxTransport",
    "ParsedUrls",
    "RawHeaders",
    "Timeouts",
    "Transport",
    "UpstreamResponse",
    "as_transport",
    "make_transport",
]

TRANSPORTS = ("wire", "aiohttp", "httpx")

RawHeaderList = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to get a connection, and of silence while reading (also writing)."""

    connect: float = 5.0
    read: float = 60.0


class HeaderView(Protocol):
    """Response headers: a case-insensitive `get` and the raw pairs as received."""

    @property
    def raw(self) -> RawHeaderList: ...

    @overload
    def get(self, key: str) -> str | None: ...

    @overload
    def get(self, key: str, default: str) -> str: ...


class UpstreamResponse(Protocol):
    """An answer whose status and headers arrived; its body is still to be read."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> HeaderView: ...

    @property
    def content(self) -> bytes:
        """The body once `aread` returned it."""
        ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class RawHeaders:
    """Headers as received, looked up by a scan: an answer has a dozen at most, and
    building a dict (or httpx.Headers) for the one or two lookups costs more."""

    __slots__ = ("raw",)

    def __init__(self, raw: RawHeaderList) -> None:
        self.raw = raw

    @overload
    def get(self, key: str) -> str | None: ...

    @overload
    def get(self, key: str, default: str) -> str: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        wanted = key.lower().encode("latin-1")
        for name, value in self.raw:
            if name.lower() == wanted:
                return value.decode("latin-1")
        return default


_T = TypeVar("_T")


class ParsedUrls(Generic[_T]):
    """URLs parsed once per transport: the chat URL is the same on every request,
    and parsing it again costs more than the rest of building the request. Bounded,
    because pass-through paths are the clients' to choose."""

    __slots__ = ("_limit", "_parse", "_parsed")

    def __init__(self, parse: Callable[[str], _T], limit: int = 256) -> None:
        self._parse = parse
        self._limit = limit
        self._parsed: dict[str, _T] = {}

    def __call__(self, url: str) -> _T:
        parsed = self._parsed.get(url)
        if parsed is None:
            if len(self._parsed) >= self._limit:
                self._parsed.clear()
            parsed = self._parsed[url] = self._parse(url)
        return parsed


class HttpxTransport:
    """An `httpx.AsyncBaseTransport` behind the `Transport` seam."""

    def __init__(self, inner: httpx.AsyncBaseTransport, timeouts: Timeouts = Timeouts()) -> None:
        self.inner = inner
        timeout = httpx.Timeout(
            connect=timeouts.connect,
            read=timeouts.read,
            write=timeouts.read,
            pool=timeouts.connect,
        )
        self._extensions = {"timeout": timeout.as_dict()}

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
    ) -> UpstreamResponse:
        request = httpx.Request(
            method, url, headers=list(headers), content=content, extensions=self._extensions
        )
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def as_transport(
    transport: Transport | httpx.AsyncBaseTransport, timeouts: Timeouts = Timeouts()
) -> Transport:
    """An httpx transport wrapped for the seam; a `Transport` as it is."""
    if isinstance(transport, httpx.AsyncBaseTransport):
        return HttpxTransport(transport, timeouts)
    return transport


def make_transport(
    kind: str | None = None,
    *,
    max_connections: int = 256,
    timeouts: Timeouts = Timeouts(),
) -> Transport:
    kind = kind or os.environ.get("ROUTER_TRANSPORT", "wire")
    if kind == "wire":
        from router.upstreams.wire import WireTransport

        return WireTransport(max_connections=max_connections, timeouts=timeouts)
    if kind == "aiohttp":
        from router.upstreams.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(max_connections=max_connections, timeouts=timeouts)
    if kind == "httpx":
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        inner = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        return HttpxTransport(inner, timeouts)
    raise ValueError(f"unknown transport {kind!r}; expected one of {', '.join(TRANSPORTS)}")
