"""The Redis store on a three-node Redis Cluster: one scope's keys share a slot."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from router.cache import CacheConfig, build_cache, scope_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    # A cluster node also listens on port + 10000 (the cluster bus).
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, 40000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[int]:
    ports = free_ports(3)
    processes = []
    for port in ports:
        (tmp_path / str(port)).mkdir()
        processes.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--save", "", "--appendonly", "no"],
                cwd=tmp_path / str(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    try:
        for port in ports:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 5
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True
            ).stdout
        ):
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.05)
        yield ports[0]
    finally:
        for process in processes:
            process.kill()
            process.wait()


async def test_store_lookup_and_clear_on_a_cluster(cluster: int) -> None:
    cache = build_cache(
        CacheConfig(
            redis_url=f"redis://127.0.0.1:{cluster}",
            redis_cluster=True,
            lookup_timeout_ms=1000,
            store_timeout_ms=1000,
        )
    )
    answer = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"content": "a"}, "finish_reason": "stop"}],
    }
    vectors = np.random.default_rng(0).standard_normal((12, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0}
    for t in range(4):  # several scopes, so several slots and nodes
        scope = scope_for(tenant=f"t{t}", upstream="u", model="m", body=body)
        assert scope is not None
        for i in range(3):
            await cache.store(scope, f"question {t} {i}", vectors[t * 3 + i], answer)
        exact = await cache.lookup(scope, f"Question {t} 1?", None, similarity=0.9)
        near = await cache.lookup(
            scope, f"question {t} 1 thanks", vectors[t * 3 + 1], similarity=0.9
        )
        assert (exact.kind, near.kind) == ("exact", "semantic")
    assert (await cache.stats())["entries"] == 12
    assert await cache.clear("t1") == 3
    assert (await cache.stats())["entries"] == 9
    assert await cache.clear() == 9
    await cache.close()
