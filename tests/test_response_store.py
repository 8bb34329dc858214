"""The response store behind `previous_response_id`: memory and Redis (and a cluster)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis

from router.formats.responses import stored_items
from router.responses_store import (
    MemoryResponseStore,
    RedisResponseStore,
    ResponseStore,
    StoreUnavailable,
    build_response_store,
)

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")


def _namespace() -> str:
    return f"test-rs-{os.urandom(6).hex()}"


def _cleanup(namespace: str, url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisResponseStore]:
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    namespace = _namespace()
    store = RedisResponseStore(REDIS_URL, ttl_s=60, namespace=namespace, timeout_s=1.0)
    yield store
    await store.close()
    _cleanup(namespace)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ResponseStore]:
    if request.param == "memory":
        yield MemoryResponseStore(ttl_s=60, max_stored=100)
        return
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    namespace = _namespace()
    redis_store = RedisResponseStore(REDIS_URL, ttl_s=60, namespace=namespace, timeout_s=1.0)
    yield redis_store
    await redis_store.close()
    _cleanup(namespace)


def _conversation(turn: int = 1) -> list[dict[str, Any]]:
    request = {"model": "m", "input": f"question {turn} \u00e9\u2028"}
    response = {
        "id": f"resp_{turn}",
        "output": [
            {
                "type": "message",
                "id": f"msg_{turn}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"answer {turn}", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "f",
                "arguments": '{"x": 1}',
            },
        ],
    }
    return stored_items([], request, response)


# --------------------------------------------------------------------------- both stores


async def test_round_trip_and_copy(store: ResponseStore) -> None:
    items = _conversation()
    assert await store.get("acme", "resp_1") is None
    await store.put("acme", "resp_1", items)
    got = await store.get("acme", "resp_1")
    assert got == items
    assert got is not items
    # What a caller does to its copy does not change what is stored.
    assert got is not None
    got.append({"type": "message", "role": "user", "content": "later"})
    items[0]["content"] = "changed"
    assert await store.get("acme", "resp_1") == _conversation()


async def test_put_replaces(store: ResponseStore) -> None:
    await store.put("acme", "resp_1", _conversation(1))
    await store.put("acme", "resp_1", _conversation(2))
    assert await store.get("acme", "resp_1") == _conversation(2)


async def test_tenant_isolation(store: ResponseStore) -> None:
    await store.put("acme", "resp_1", _conversation(1))
    assert await store.get("globex", "resp_1") is None
    assert await store.delete("globex", "resp_1") is False
    await store.put("globex", "resp_1", _conversation(2))
    assert await store.get("acme", "resp_1") == _conversation(1)
    assert await store.get("globex", "resp_1") == _conversation(2)
    # Tenants whose names would collide in a naive key ("a:b" + "c" vs "a" + "b:c").
    await store.put("a:resp", "x", _conversation(3))
    assert await store.get("a", "resp:x") is None


async def test_delete(store: ResponseStore) -> None:
    await store.put("acme", "resp_1", _conversation())
    assert await store.delete("acme", "resp_1") is True
    assert await store.get("acme", "resp_1") is None
    assert await store.delete("acme", "resp_1") is False


async def test_odd_ids_are_not_found_and_not_stored(store: ResponseStore) -> None:
    for bad in ("", "resp 1", "resp_\n", "x" * 10_000):
        assert await store.get("acme", bad) is None
        assert await store.delete("acme", bad) is False
        with pytest.raises(ValueError):
            await store.put("acme", bad, _conversation())
    with pytest.raises(ValueError):
        await store.put("acme", "resp_1", [{"type": "message"}, "not an item"])  # type: ignore[list-item]
    # Glob and hash-tag characters are plain characters of one id.
    await store.put("acme", "resp_{1}*", _conversation())
    assert await store.get("acme", "resp_{1}*") == _conversation()
    assert await store.get("acme", "resp_*") is None
    assert await store.get("acme", "*") is None


async def test_empty_and_unicode_items(store: ResponseStore) -> None:
    await store.put("t\u00e9nant \u2603", "resp_e", [])
    assert await store.get("t\u00e9nant \u2603", "resp_e") == []


async def test_build_response_store() -> None:
    memory = build_response_store(ttl_s=5, max_stored=3)
    assert isinstance(memory, MemoryResponseStore) and memory.name == "memory"
    remote = build_response_store(
        ttl_s=5, max_stored=3, redis_url=REDIS_URL, redis_cluster=False, namespace="x"
    )
    assert isinstance(remote, RedisResponseStore) and remote.name == "redis"
    assert remote.key("acme", "resp_1").startswith("x:resp:")
    await memory.close()
    await remote.close()


# --------------------------------------------------------------------------- memory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_ttl() -> None:
    clock = Clock()
    store = MemoryResponseStore(ttl_s=10, max_stored=100, clock=clock)
    await store.put("acme", "resp_1", _conversation())
    clock.now += 9.9
    assert await store.get("acme", "resp_1") is not None  # a read does not extend the TTL
    clock.now += 0.1
    assert await store.get("acme", "resp_1") is None
    assert len(store) == 0 and store.bytes == 0


async def test_memory_expired_entries_leave_on_put() -> None:
    clock = Clock()
    store = MemoryResponseStore(ttl_s=10, max_stored=100, clock=clock)
    for i in range(5):
        await store.put("acme", f"resp_{i}", _conversation(i))
    clock.now += 11
    await store.put("acme", "resp_new", _conversation())
    assert len(store) == 1


async def test_memory_lru_by_count() -> None:
    store = MemoryResponseStore(ttl_s=60, max_stored=3)
    for i in range(3):
        await store.put("acme", f"resp_{i}", _conversation(i))
    assert await store.get("acme", "resp_0") is not None  # now the most recently used
    await store.put("acme", "resp_3", _conversation(3))
    assert await store.get("acme", "resp_1") is None  # the least recently used went
    for i in (0, 2, 3):
        assert await store.get("acme", f"resp_{i}") == _conversation(i)
    assert len(store) == 3


async def test_memory_lru_by_bytes() -> None:
    one = len(orjson.dumps(_conversation(1)))
    store = MemoryResponseStore(ttl_s=60, max_stored=1000, max_bytes=3 * (one + 400))
    for i in range(10):
        await store.put("acme", f"resp_{i}", _conversation(i))
        assert store.bytes <= 3 * (one + 400)
    assert len(store) == 3
    assert [await store.get("acme", f"resp_{i}") is not None for i in range(10)] == [False] * 7 + [
        True
    ] * 3
    # Replacing an entry accounts its old size out.
    before = store.bytes
    await store.put("acme", "resp_9", _conversation(9))
    assert store.bytes == before
    # One entry bigger than the whole bound is not kept, and evicts nothing.
    await store.put("acme", "huge", [{"type": "message", "content": "x" * 10 * one}])
    assert await store.get("acme", "huge") is None
    assert len(store) == 3
    await store.close()
    assert len(store) == 0 and store.bytes == 0


async def test_memory_ops_are_constant_time() -> None:
    # 20k entries in a 10k-entry store: each op touches only its own entry and the
    # cold end, so this stays far from quadratic.
    store = MemoryResponseStore(ttl_s=60, max_stored=10_000)
    items = [{"type": "message", "role": "user", "content": "hi"}]
    start = time.perf_counter()
    for i in range(20_000):
        await store.put("acme", f"resp_{i}", items)
        await store.get("acme", f"resp_{i // 2}")
    assert len(store) == 10_000
    assert time.perf_counter() - start < 5


def test_memory_bad_bounds() -> None:
    with pytest.raises(ValueError):
        MemoryResponseStore(ttl_s=0, max_stored=1)
    with pytest.raises(ValueError):
        MemoryResponseStore(ttl_s=1, max_stored=0)


# --------------------------------------------------------------------------- redis


@needs_redis
async def test_redis_ttl_expiry() -> None:
    namespace = _namespace()
    store = RedisResponseStore(REDIS_URL, ttl_s=0.2, namespace=namespace, timeout_s=1.0)
    try:
        await store.put("acme", "resp_1", _conversation())
        assert await store.get("acme", "resp_1") == _conversation()
        pttl = redis.Redis.from_url(REDIS_URL).pttl(store.key("acme", "resp_1"))
        assert 0 < pttl <= 200
        await asyncio.sleep(0.35)
        assert await store.get("acme", "resp_1") is None
    finally:
        await store.close()
        _cleanup(namespace)


@needs_redis
async def test_redis_key_layout_and_value(redis_store: RedisResponseStore) -> None:
    await redis_store.put("acme {x}*", "resp_1", _conversation())
    key = redis_store.key("acme {x}*", "resp_1")
    namespace = key.split(":resp:")[0]
    # The tenant appears hashed: no glob or hash-tag characters leak into the key.
    assert key.startswith(f"{namespace}:resp:") and "acme" not in key and "{" not in key
    client = redis.Redis.from_url(REDIS_URL)
    raw = client.get(key)
    client.close()
    assert raw is not None
    value = orjson.loads(raw)
    assert value["items"] == _conversation() and len(value["t"]) == 64


@needs_redis
async def test_redis_tenant_hash_is_checked_again(redis_store: RedisResponseStore) -> None:
    # A value under another tenant's key (a 64-bit hash collision, or a stray write)
    # is not handed out.
    await redis_store.put("acme", "resp_1", _conversation())
    client = redis.Redis.from_url(REDIS_URL)
    client.copy(redis_store.key("acme", "resp_1"), redis_store.key("globex", "resp_1"))
    client.set(redis_store.key("acme", "resp_junk"), b"not json")
    client.close()
    assert await redis_store.get("globex", "resp_1") is None
    assert await redis_store.get("acme", "resp_junk") is None
    assert await redis_store.get("acme", "resp_1") == _conversation()


@needs_redis
async def test_redis_concurrent_calls(redis_store: RedisResponseStore) -> None:
    async def one(i: int) -> list[dict[str, Any]] | None:
        await redis_store.put(f"t{i % 3}", f"resp_{i}", _conversation(i))
        return await redis_store.get(f"t{i % 3}", f"resp_{i}")

    got = await asyncio.gather(*(one(i) for i in range(50)))
    assert got == [_conversation(i) for i in range(50)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("cluster", [False, True])
async def test_redis_down_raises_store_unavailable_in_bound(cluster: bool) -> None:
    store = RedisResponseStore(
        f"redis://127.0.0.1:{_closed_port()}", ttl_s=60, cluster=cluster, timeout_s=0.3
    )
    calls: list[Callable[[], Any]] = [
        lambda: store.get("acme", "resp_1"),
        lambda: store.put("acme", "resp_1", _conversation()),
        lambda: store.delete("acme", "resp_1"),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        assert time.monotonic() - start < 0.3 + 0.2
        error = caught.value.router_error()
        assert error.status == 503 and error.code == "response_store_unavailable"
        assert error.type == "api_error"
    await store.close()


async def test_redis_silent_server_is_bounded() -> None:
    # Accepts connections and never answers: only the time bound ends the call.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisResponseStore(f"redis://127.0.0.1:{port}", ttl_s=60, timeout_s=0.2)
    try:
        for call in (
            lambda: store.get("acme", "resp_1"),
            lambda: store.put("acme", "resp_1", []),
        ):
            start = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            assert time.monotonic() - start < 0.2 + 0.2
    finally:
        await store.close()
        server.close()


async def test_redis_cancellation_is_not_swallowed() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisResponseStore(f"redis://127.0.0.1:{port}", ttl_s=60, timeout_s=5)
    try:
        task = asyncio.ensure_future(store.get("acme", "resp_1"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await store.close()
        server.close()


async def test_redis_cluster(cluster: int) -> None:
    namespace = _namespace()
    store = build_response_store(
        ttl_s=60,
        max_stored=10,
        redis_url=f"redis://127.0.0.1:{cluster}",
        redis_cluster=True,
        namespace=namespace,
        timeout_s=2.0,
    )
    assert isinstance(store, RedisResponseStore)
    try:
        # Many tenants and ids: keys land on every node.
        for i in range(30):
            await store.put(f"t{i % 5}", f"resp_{i}", _conversation(i))
        for i in range(30):
            assert await store.get(f"t{i % 5}", f"resp_{i}") == _conversation(i)
            assert await store.get(f"t{(i + 1) % 5}", f"resp_{i}") is None
        assert await store.delete("t0", "resp_0") is True
        assert await store.get("t0", "resp_0") is None
    finally:
        await store.close()
