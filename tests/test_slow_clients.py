"""Slow and hostile clients on real sockets: each is answered and cut off in bounded
time with an OpenAI-format error, and normal requests keep working."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from conftest import Stack, policy_text
from servers import FakeUpstream, serve

from router.app import create_app
from router.serving import protocol_with

LIMITS = """
server:
  header_timeout_s: 0.5
  body_timeout_s: 0.5
  keep_alive_s: 0.5
  max_connections: 20
  max_headers: 30
  max_header_kb: 8
"""
BODY = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


@dataclass
class Server:
    host: str
    port: int
    url: str


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    local, cloud = FakeUpstream("local"), FakeUpstream("cloud")
    with serve(local, lifespan="off") as lurl, serve(cloud, lifespan="off") as curl:
        path = tmp_path / "policy.yaml"
        path.write_text(policy_text(lurl, curl, tmp_path / "r.jsonl", extra=LIMITS))
        app = create_app(str(path), scorer_factory=None)
        limits = app.runtime.policy.limits
        with serve(app, http=protocol_with(limits), timeout_keep_alive=limits.keep_alive_s) as url:
            port = int(url.rsplit(":", 1)[1])
            yield Server("127.0.0.1", port, url)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def error_of(raw: bytes, status: int) -> dict:  # type: ignore[type-arg]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error  # type: ignore[no-any-return]


def test_normal_traffic_passes_the_protocol(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    for _ in range(3):  # one keep-alive connection, several requests
        reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    chunks = list(client.chat.completions.create(model="auto", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert chunks


def test_silent_connection_gets_408(server: Server) -> None:
    raw, took = read_until_closed(connect(server))
    assert error_of(raw, 408)["code"] == "request_timeout"
    assert 0.4 < took < 2.0


def test_trickled_headers_get_408(server: Server) -> None:
    sock = connect(server)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    started = time.monotonic()
    try:
        for _ in range(40):  # one byte every 0.1 s would take 4 s
            sock.sendall(b"x")
            time.sleep(0.1)
    except OSError:
        pass  # the server hung up on us, as it should
    raw, _ = read_until_closed(sock)
    assert error_of(raw, 408)["code"] == "request_timeout"
    assert time.monotonic() - started < 2.0


def test_stray_newlines_do_not_keep_a_connection_open(server: Server) -> None:
    sock = connect(server)
    sock.sendall(REQUEST)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    closed = False
    while not closed and time.monotonic() - started < 5:
        try:
            sock.sendall(b"\r\n")  # keeps uvicorn's own keep-alive timer from firing
            readable, _, _ = select.select([sock], [], [], 0.1)
            closed = bool(readable) and sock.recv(65536, socket.MSG_PEEK) == b""
            if readable and not closed:
                sock.recv(65536)  # the 408
        except OSError:
            closed = True
    assert closed and time.monotonic() - started < 2.5


def test_stalled_body_gets_408(server: Server) -> None:
    sock = connect(server)
    head, _, body = REQUEST.partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n" + body[:10])
    raw, took = read_until_closed(sock)
    error = error_of(raw, 408)
    assert error["code"] == "request_timeout" and "body" in error["message"]
    assert took < 2.0


def test_stalled_body_gets_408_in_middleware_mode(make_stack) -> None:  # type: ignore[no-untyped-def]
    from conftest import POLICY

    policy = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    stack: Stack = make_stack(policy="server: {body_timeout_s: 0.5}\n" + policy)
    port = int(stack.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head, _, body = REQUEST.partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n" + body[:10])
    raw, took = read_until_closed(sock)
    assert error_of(raw, 408)["code"] == "request_timeout"
    assert took < 2.0
    assert [(r["status"], r["error"]) for r in stack.records()] == [(408, "request_timeout")]


def test_trickled_body_gets_408(server: Server) -> None:
    sock = connect(server)
    head, _, body = REQUEST.partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n")
    started = time.monotonic()
    try:
        for byte in body:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
    except OSError:
        pass
    raw, _ = read_until_closed(sock)
    assert error_of(raw, 408)["code"] == "request_timeout"
    assert time.monotonic() - started < 2.0


def test_idle_keep_alive_connection_is_closed(server: Server) -> None:
    sock = connect(server)
    sock.sendall(REQUEST)
    raw, took = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200")
    assert took < 2.0


def test_huge_header_gets_431_before_it_is_read(server: Server) -> None:
    sock = connect(server)
    with contextlib.suppress(OSError):  # refused mid-send
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-tenant-id: " + b"t" * 1_000_000)
    raw, took = read_until_closed(sock)
    assert error_of(raw, 431)["code"] == "request_header_fields_too_large"
    assert took < 2.0


def test_too_many_headers_get_431(server: Server) -> None:
    sock = connect(server)
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(40))
    sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
    raw, _ = read_until_closed(sock)
    assert error_of(raw, 431)["code"] == "request_header_fields_too_large"


def test_connections_over_the_cap_get_503_and_service_recovers(server: Server) -> None:
    stalled = [connect(server) for _ in range(40)]
    refused = 0
    for sock in stalled:
        sock.settimeout(0.3)
        try:
            if sock.recv(65536).startswith(b"HTTP/1.1 503"):
                refused += 1
        except TimeoutError:
            pass
    assert refused >= 20
    # The stalled ones are cut after the header timeout; then requests work again.
    time.sleep(0.8)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    for sock in stalled:
        sock.close()


def test_large_body_arriving_with_the_headers_is_not_a_header_overflow(server: Server) -> None:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * 200_000}]}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    sock = connect(server)
    sock.sendall(request)  # one write: the first read holds the headers and much of the body
    raw, _ = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
