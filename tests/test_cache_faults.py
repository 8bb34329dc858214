"""A Redis that dies, hangs or restarts never fails a call, and is used again after."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from router.cache import CacheConfig, build_cache, scope_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A throwaway redis-server that the test may kill, freeze and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=0.2)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(free_port())
    srv.start()
    yield srv
    if srv.process is not None:
        os.kill(srv.process.pid, signal.SIGCONT)
    srv.kill()


def answer(text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


async def test_redis_killed_and_restarted_mid_traffic(server: Server) -> None:
    config = CacheConfig(
        redis_url=f"redis://127.0.0.1:{server.port}/0",
        namespace=f"hrtest-{uuid.uuid4().hex[:8]}",
        lookup_timeout_ms=50,
        store_timeout_ms=50,
        retry_after_s=0.05,
        max_retry_after_s=0.2,
    )
    cache = build_cache(config)
    scope = scope_for(tenant="t", upstream="u", model="m", body={
        "messages": [{"role": "user", "content": "x"}], "temperature": 0})  # fmt: skip
    assert scope is not None
    statuses: list[str] = []

    async def traffic(rounds: int) -> None:
        for i in range(rounds):
            started = time.perf_counter()
            await cache.store(scope, f"question {i}", None, answer(str(i)))
            found = await cache.lookup(scope, f"question {i}", None, similarity=0.9)
            # Each call is bounded by its budget, whatever Redis does.
            assert time.perf_counter() - started < 0.5
            statuses.append(found.status)
            await asyncio.sleep(0.005)

    await traffic(10)
    assert statuses == ["hit"] * 10

    server.kill()
    statuses.clear()
    await traffic(20)
    assert set(statuses) == {"error"}

    server.start()
    await asyncio.sleep(0.3)  # longer than the largest backoff
    statuses.clear()
    await traffic(10)
    assert statuses[-5:] == ["hit"] * 5

    # A frozen server (SIGSTOP) is a slow one: calls time out instead of hanging.
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    statuses.clear()
    started = time.perf_counter()
    await traffic(5)
    assert set(statuses) == {"error"}
    assert time.perf_counter() - started < 1.0
    os.kill(server.process.pid, signal.SIGCONT)
    await asyncio.sleep(0.3)
    statuses.clear()
    await traffic(10)
    assert statuses[-5:] == ["hit"] * 5
    await cache.close()


async def test_redis_down_at_start() -> None:
    cache = build_cache(CacheConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    scope = scope_for(tenant="t", upstream="u", model="m", body={
        "messages": [{"role": "user", "content": "x"}], "temperature": 0})  # fmt: skip
    assert scope is not None
    await cache.store(scope, "q", None, answer("a"))
    assert (await cache.lookup(scope, "q", None, similarity=0.9)).status == "error"
    await cache.close()
