"""The default transport (router/upstreams/wire.py) against scripted loopback servers.

Each server here answers with exact bytes, so that what real upstreams do at the
edges of HTTP/1.1 (chunks, bodies delimited by a close, interim answers, idle
connections closed under the client, cuts, garbage) is met on purpose. The
tests run on asyncio's loop and on uvloop, which `router serve` uses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import pytest
import trustme
import uvloop

from router.upstreams.transport import Timeouts
from router.upstreams.wire import WireTransport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def go(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(asyncio.wait_for(coro, 10))

    return go


class Server:
    """A loopback server that reads requests and runs `script` on each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.script(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request, head and body; None at the end of the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def keep_answering(answer: bytes) -> Script:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            w.write(answer)
            await w.drain()

    return script


async def fetch(t: WireTransport, url: str, method: str = "POST", body: bytes = b"{}") -> Any:
    r = await t.send(method, url, [("content-type", "application/json")], body)
    try:
        return r.status_code, r.headers.raw, await r.aread()
    finally:
        await r.aclose()


def test_keep_alive_reuses_one_connection_and_sends_exact_framing(run: Any) -> None:
    async def main() -> None:
        async with Server(
            keep_answering(ok(b"hello", b"X-Case: Kept", b"set-cookie: a", b"set-cookie: b"))
        ) as s:
            t = WireTransport()
            headers = [
                ("content-type", "application/json"),
                ("Content-Length", "999"),  # framing is the transport's
                ("transfer-encoding", "chunked"),
            ]
            for _ in range(3):
                r = await t.send("POST", s.url + "/v1/chat?x=1", headers, b'{"a":1}')
                assert r.status_code == 200
                assert await r.aread() == b"hello"
                # raw names keep their case; repeated headers stay, in order
                assert (b"X-Case", b"Kept") in r.headers.raw
                assert [v for k, v in r.headers.raw if k == b"set-cookie"] == [b"a", b"b"]
                assert r.headers.get("x-case") == "Kept"
                await r.aclose()
            await t.aclose()
        assert s.connections == 1
        first = s.requests[0]
        assert first.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n")
        assert b"content-length: 7\r\n" in first and b"999" not in first
        assert b"transfer-encoding" not in first.lower()
        assert f"host: 127.0.0.1:{s.port}\r\n".encode() in first
        assert first.endswith(b'\r\n\r\n{"a":1}')

    run(main())


def test_chunked_body_is_decoded_and_streams_as_it_arrives(run: Any) -> None:
    release = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await release.wait()
        w.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await w.drain()
        await s.read_request(r)

    async def main() -> None:
        async with Server(script) as s:
            t = WireTransport()
            r = await t.send("POST", s.url, [], b"{}")
            chunks = r.aiter_raw()
            assert await chunks.__anext__() == b"first"  # before the rest was even sent
            release.set()
            assert [c async for c in chunks] == [b"second"]
            await r.aclose()
            await t.aclose()

    run(main())


def test_body_delimited_by_close_is_read_whole_and_not_reused(run: Any) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await w.drain()

    async def main() -> None:
        async with Server(script) as s:
            t = WireTransport()
            for _ in range(2):
                assert (await fetch(t, s.url))[2] == b"all of it"
            await t.aclose()
            assert s.connections == 2

    run(main())


def test_interim_answer_is_skipped(run: Any) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")

    async def main() -> None:
        async with Server(keep_answering(answer)) as s:
            t = WireTransport()
            status, _, body = await fetch(t, s.url)
            assert (status, body) == (200, b"done")
            assert (await fetch(t, s.url))[2] == b"done"  # and the connection is still in step
            await t.aclose()
            assert s.connections == 1

    run(main())


def test_no_body_answers_complete_at_once(run: Any) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while (req := await s.read_request(r)) is not None:
            if req.startswith(b"HEAD"):  # says a length, sends no body
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
            else:
                w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await w.drain()

    async def main() -> None:
        async with Server(script) as s:
            t = WireTransport(timeouts=Timeouts(connect=1, read=2))
            assert await fetch(t, s.url, "HEAD", b"") == (200, [(b"content-length", b"10")], b"")
            assert (await fetch(t, s.url, "DELETE", b""))[:1] == (204,)
            assert (await fetch(t, s.url, "DELETE", b""))[:1] == (204,)
            await t.aclose()
            assert s.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")
            assert b"content-length" not in s.requests[0]  # no body, no length
            # the HEAD's connection is not trusted again; the 204's is
            assert s.connections == 2

    run(main())


def test_idle_connection_closed_by_the_server_is_not_used(run: Any) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"once"))
        await w.drain()  # then close, keep-alive notwithstanding

    async def main() -> None:
        async with Server(script) as s:
            t = WireTransport()
            assert (await fetch(t, s.url))[2] == b"once"
            await asyncio.sleep(0.05)  # the close reaches the client while it is idle
            assert (await fetch(t, s.url))[2] == b"once"
            await t.aclose()
            assert (s.connections, len(s.requests)) == (2, 2)

    run(main())


def test_close_without_answer_retries_only_what_may_be_sent_twice(run: Any) -> None:
    """A kept-alive connection the server drops as a request goes out: a GET is sent
    again on a new connection; a POST is not (it may have been acted on)."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"first"))
        await w.drain()
        await s.read_request(r)  # the second request on this connection: no answer

    async def main() -> None:
        async with Server(script) as s:
            t = WireTransport()
            assert (await fetch(t, s.url, "GET", b""))[2] == b"first"
            assert (await fetch(t, s.url, "GET", b""))[2] == b"first"  # sent again, answered
            assert len(s.requests) == 3
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(t, s.url, "POST")  # reused the second connection: dropped
            assert len(s.requests) == 4  # sent once, never again
            await t.aclose()

    run(main())


def test_cut_body_and_garbage_are_protocol_errors(run: Any) -> None:
    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await w.drain()

    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"this is not HTTP at all\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    async def main() -> None:
        t = WireTransport(timeouts=Timeouts(connect=1, read=2))
        async with Server(cut) as s:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(t, s.url)
        async with Server(garbage) as s:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(t, s.url)
        await t.aclose()

    run(main())


def test_silence_before_the_headers_is_a_read_timeout(run: Any) -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await asyncio.sleep(2)

    async def main() -> None:
        t = WireTransport(timeouts=Timeouts(connect=1, read=0.2))
        async with Server(silent) as s:
            with pytest.raises(httpx.ReadTimeout):
                await fetch(t, s.url)
        await t.aclose()

    run(main())


def test_line_breaks_in_headers_never_reach_the_wire(run: Any) -> None:
    async def main() -> None:
        async with Server(keep_answering(ok(b""))) as s:
            t = WireTransport()
            for headers in (
                [("x-a", "v\r\nx-injected: 1")],
                [("x-a\nx-b", "v")],
                [("x-a", "v\rx")],
            ):
                with pytest.raises(httpx.LocalProtocolError):
                    await t.send("POST", s.url, headers, b"{}")
            await t.aclose()
            assert s.requests == []

    run(main())


def test_connections_are_capped_and_waiters_served(run: Any) -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            await asyncio.sleep(0.05)
            w.write(ok(b"ok"))
            await w.drain()

    async def main() -> None:
        async with Server(slow) as s:
            t = WireTransport(max_connections=2)
            answers = await asyncio.gather(*(fetch(t, s.url) for _ in range(6)))
            assert [a[2] for a in answers] == [b"ok"] * 6
            assert s.most_open == 2
            await t.aclose()

    run(main())


def test_waiting_for_a_connection_times_out_and_a_cancel_frees_it(run: Any) -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            if len(s.requests) > 1:
                w.write(ok(b"later"))
                await w.drain()

    async def main() -> None:
        async with Server(silent) as s:
            t = WireTransport(max_connections=1, timeouts=Timeouts(connect=0.2, read=5))
            held = asyncio.create_task(fetch(t, s.url))  # the one connection, unanswered
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await fetch(t, s.url)
            held.cancel()  # the client left: its connection is closed and counted out
            with pytest.raises(asyncio.CancelledError):
                await held
            assert (await fetch(t, s.url))[2] == b"later"
            await t.aclose()

    run(main())


def test_a_slow_reader_holds_back_a_large_body_intact(run: Any) -> None:
    body = bytes(range(256)) * 16384  # 4 MiB

    async def big(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(body))
        await w.drain()
        await s.read_request(r)

    async def main() -> None:
        async with Server(big) as s:
            t = WireTransport()
            r = await t.send("GET", s.url, [], b"")
            got, most = [], 0
            async for chunk in r.aiter_raw():
                got.append(chunk)
                most = max(most, len(chunk))
                await asyncio.sleep(0.001)
            await r.aclose()
            await t.aclose()
            assert b"".join(got) == body
            # reading paused while the reader lagged: no piece near the whole body
            assert most < len(body) // 4

    run(main())


def test_refused_and_unsupported_urls(run: Any) -> None:
    async def main() -> None:
        t = WireTransport(timeouts=Timeouts(connect=1, read=1))
        async with Server(keep_answering(ok(b""))) as s:
            port = s.port
        with pytest.raises(httpx.ConnectError):
            await fetch(t, f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await fetch(t, "ftp://127.0.0.1/")
        await t.aclose()

    run(main())


def test_https_with_the_given_ca(run: Any) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def main() -> None:
        s = Server(keep_answering(ok(b"secret")))
        server = await asyncio.start_server(s._handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            t = WireTransport(ssl_context=client_context)
            url = f"https://localhost:{port}/v1"
            assert (await fetch(t, url))[2] == b"secret"
            assert (await fetch(t, url))[2] == b"secret"
            await t.aclose()
            assert s.connections == 1
            assert f"host: localhost:{port}\r\n".encode() in s.requests[0]
            # a certificate nobody vouched for is refused
            strict = WireTransport(timeouts=Timeouts(connect=2, read=2))
            with pytest.raises(httpx.ConnectError):
                await fetch(strict, url)
            await strict.aclose()
        finally:
            server.close()

    run(main())


def test_a_close_not_yet_seen_by_the_loop_is_caught_before_reuse(run: Any) -> None:
    """The server closed an idle connection while the client's event loop was busy:
    the close sits in the socket, unseen by the loop. A POST must not go into it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[bytes] = []

    def serve() -> None:  # in its own thread: it closes while the client's loop is blocked
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                accepted.append(conn.recv(65536))
                conn.sendall(ok(b"fresh"))
                time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> None:
        t = WireTransport()
        url = f"http://127.0.0.1:{port}/"
        assert (await fetch(t, url))[2] == b"fresh"
        time.sleep(0.4)  # blocks the loop: the close reaches the socket, not the loop
        assert (await fetch(t, url))[2] == b"fresh"
        await t.aclose()

    try:
        run(main())
    finally:
        listener.close()
    thread.join(2)
    assert len(accepted) == 2  # one request per connection, none lost


def test_trailers_do_not_join_the_headers(run: Any) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-head: 1\r\n\r\n"
        b"2\r\nhi\r\n0\r\nx-trailer: late\r\n\r\n"
    )

    async def main() -> None:
        async with Server(keep_answering(answer)) as s:
            t = WireTransport()
            for _ in range(2):
                status, raw, body = await fetch(t, s.url)
                assert (status, body) == (200, b"hi")
                assert raw == [(b"transfer-encoding", b"chunked"), (b"x-head", b"1")]
            await t.aclose()
            assert s.connections == 1

    run(main())
