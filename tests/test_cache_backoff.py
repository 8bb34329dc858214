"""Cache back-off on a failing Redis: one outage is one failure episode however many
lookups were in flight, the delay never exceeds its cap, and the cache is back soon
after Redis is."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from test_cache_faults import Server, answer, free_port

from router.cache import CacheConfig, build_cache, scope_for
from router.cache.backoff import Backoff

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(free_port())
    srv.start()
    yield srv
    if srv.process is not None:
        os.kill(srv.process.pid, signal.SIGCONT)
    srv.kill()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_failures_are_one_episode() -> None:
    clock = Clock()
    backoff = Backoff(0.5, 30.0, clock=clock)
    attempts = [backoff.attempt() for _ in range(50)]  # 50 lookups in flight together
    delays = [backoff.failure(a) for a in attempts]
    assert max(delays) <= 0.5 * 1.2  # the first delay, jittered: not doubled 49 times
    clock.now += 1.0
    assert backoff.allow()
    delay = backoff.failure(backoff.attempt())  # the probe fails: now it doubles
    assert 0.8 <= delay <= 1.2


def test_delay_never_exceeds_the_cap() -> None:
    clock = Clock()
    backoff = Backoff(0.5, 2.0, clock=clock)
    for _ in range(40):
        delay = backoff.failure(backoff.attempt())
        assert delay <= 2.0
        clock.now += delay
    assert delay >= 2.0 * 0.8


async def test_cache_is_back_soon_after_a_paused_redis(server: Server) -> None:
    # Default back-off settings: what a user gets.
    config = CacheConfig(
        redis_url=f"redis://127.0.0.1:{server.port}/0",
        namespace=f"hrtest-{uuid.uuid4().hex[:8]}",
    )
    cache = build_cache(config)
    scope = scope_for(tenant="t", upstream="u", model="m", body={
        "messages": [{"role": "user", "content": "x"}], "temperature": 0})  # fmt: skip
    assert scope is not None
    await cache.store(scope, "question", None, answer("a"))
    assert (await cache.lookup(scope, "question", None)).status == "hit"
    stop = False
    hits: list[float] = []

    async def client() -> None:  # 20 concurrent clients, ~100 lookups/s each
        while not stop:
            if (await cache.lookup(scope, "question", None)).status == "hit":
                hits.append(time.monotonic())
            await asyncio.sleep(0.01)

    clients = [asyncio.ensure_future(client()) for _ in range(20)]
    await asyncio.sleep(0.2)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    await asyncio.sleep(3.0)
    hits.clear()
    os.kill(server.process.pid, signal.SIGCONT)
    resumed = time.monotonic()
    while not hits and time.monotonic() - resumed < 40:
        await asyncio.sleep(0.05)
    stop = True
    await asyncio.gather(*clients)
    await cache.close()
    assert hits, "the cache never came back"
    back_after = hits[0] - resumed
    assert back_after <= config.max_retry_after_s + 0.3, back_after
