"""The transport seam against real loopback servers: both engines behave alike."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from router.upstreams.transport import Timeouts, Transport, make_transport
from tests.servers import serve

KINDS = ("wire", "aiohttp", "httpx")


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    cookies = [v for k, v in scope["headers"] if k == b"cookie"]
    if path == "/stall":  # headers, then a body that never comes
        start = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await asyncio.sleep(2)
        return
    body = b"cookie:" + (cookies[0] if cookies else b"none")
    headers = [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"session=tenant-a"),
        (b"X-Custom-Case", b"kept"),
    ]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(_app) as base:
        yield base


def _run(kind: str, coro_of: object) -> object:
    async def main() -> object:
        transport: Transport = make_transport(kind, timeouts=Timeouts(connect=1, read=0.3))
        try:
            return await coro_of(transport)  # type: ignore[operator]
        finally:
            await transport.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_status_headers_and_body_arrive_as_sent(url: str, kind: str) -> None:
    async def go(t: Transport) -> tuple[int, str | None, str | None, bytes]:
        r = await t.send("POST", url + "/x", [("content-type", "application/json")], b"{}")
        body = await r.aread()
        await r.aclose()
        return r.status_code, r.headers.get("x-custom-case"), r.headers.get("missing"), body

    status, custom, missing, body = _run(kind, go)  # type: ignore[misc]
    assert (status, custom, missing) == (201, "kept", None)
    assert body == b"cookie:none"


@pytest.mark.parametrize("kind", KINDS)
def test_no_cookie_jar(url: str, kind: str) -> None:
    """A Set-Cookie from one request never rides on the next (one tenant to another)."""

    async def go(t: Transport) -> list[bytes]:
        seen = []
        for _ in range(2):
            r = await t.send("GET", url + "/x", [], b"")
            seen.append(await r.aread())
            await r.aclose()
        return seen

    assert _run(kind, go) == [b"cookie:none", b"cookie:none"]


@pytest.mark.parametrize("kind", KINDS)
def test_refused_connection_is_a_connect_error(kind: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def go(t: Transport) -> None:
        await t.send("GET", f"http://127.0.0.1:{port}/", [], b"")

    with pytest.raises(httpx.ConnectError):
        _run(kind, go)


@pytest.mark.parametrize("kind", KINDS)
def test_silence_in_the_body_is_a_read_timeout(url: str, kind: str) -> None:
    async def go(t: Transport) -> None:
        r = await t.send("GET", url + "/stall", [], b"")
        try:
            await r.aread()
        finally:
            await r.aclose()

    with pytest.raises(httpx.ReadTimeout):
        _run(kind, go)
