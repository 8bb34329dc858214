"""The cache over both stores. Redis tests need a Redis on 127.0.0.1:6379 and fail
without one: CI starts it, and a skipped Redis test hides a broken shared cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import redis

from router.cache import CacheConfig, Scope, SemanticCache, build_cache, scope_for

REDIS_URL = "redis://127.0.0.1:6379/15"
DIM = 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def make_scope(tenant: str = "acme", model: str = "m", **params: Any) -> Scope:
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0, **params}
    scope = scope_for(tenant=tenant, upstream="local", model=model, body=body)
    assert scope is not None
    return scope


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector at exactly `cosine` from unit vector `v`."""
    r = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    out = cosine * v + np.sqrt(1 - cosine**2) * r
    return (out / np.linalg.norm(out)).astype(np.float32)


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config_for(kind: str, **overrides: Any) -> CacheConfig:
    if kind == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
        except redis.RedisError as error:
            pytest.fail(f"Redis tests need a Redis on {REDIS_URL}: {error!r}")
        overrides.setdefault("redis_url", REDIS_URL)
        overrides.setdefault("namespace", f"hrtest-{uuid.uuid4().hex[:8]}")
        overrides.setdefault("lookup_timeout_ms", 500)
    return CacheConfig(**overrides)


@pytest.fixture
async def cache(kind: str) -> AsyncIterator[SemanticCache]:
    built = build_cache(config_for(kind))
    yield built
    await built.clear()
    await built.close()


pytestmark = pytest.mark.anyio


async def test_exact_hit_and_miss(cache: SemanticCache) -> None:
    scope = make_scope()
    assert (await cache.lookup(scope, "What is 2+2?", None, similarity=0.95)).status == "miss"
    await cache.store(scope, "What is 2+2?", None, completion("4"))
    found = await cache.lookup(scope, "  what is 2+2 ", None, similarity=0.95)
    assert found.status == "hit" and found.kind == "exact" and found.similarity == 1.0
    assert found.completion == completion("4")


async def test_semantic_hit_above_threshold_only(cache: SemanticCache) -> None:
    scope = make_scope()
    v = unit(1)
    await cache.store(scope, "How do I reverse a list in Python?", v, completion("a[::-1]"))
    close = await cache.lookup(
        scope, "How can I reverse a Python list?", near(v, 0.97), similarity=0.95
    )
    assert close.status == "hit" and close.kind == "semantic"
    assert close.similarity is not None and 0.96 < close.similarity < 0.98
    far = await cache.lookup(
        scope, "How can I reverse a Python list?", near(v, 0.90), similarity=0.95
    )
    assert far.status == "miss" and not far.guarded
    lower = await cache.lookup(
        scope, "How can I reverse a Python list?", near(v, 0.90), similarity=0.85
    )
    assert lower.status == "hit"


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        (
            "Tom has 3 apples and buys 5 more. How many?",
            "Tom has 3 apples and buys 6 more. How many?",
        ),
        ("Which of these is a mammal?", "Which of these is not a mammal?"),
        ("Turn on the kitchen light", "Turn off the kitchen light"),
        ("Who was the first president of France?", "Who was the first president of Chile?"),
    ],
)
async def test_guards_refuse_near_misses(cache: SemanticCache, cached: str, new: str) -> None:
    scope = make_scope()
    v = unit(2)
    await cache.store(scope, cached, v, completion("cached"))
    found = await cache.lookup(scope, new, near(v, 0.99), similarity=0.95)
    assert found.status == "miss" and found.guarded
    assert found.similarity is not None and found.similarity > 0.98


async def test_second_stage_can_refuse(kind: str) -> None:
    calls: list[tuple[str, str]] = []

    def never(cached: str, new: str) -> bool:
        calls.append((cached, new))
        return False

    cache = build_cache(config_for(kind), second_stage=never)
    try:
        scope = make_scope()
        v = unit(3)
        await cache.store(scope, "Name a prime number", v, completion("7"))
        found = await cache.lookup(scope, "Give a prime number", near(v, 0.99), similarity=0.9)
        assert found.status == "miss" and found.guarded
        assert calls == [("Name a prime number", "Give a prime number")]
    finally:
        await cache.clear()
        await cache.close()


@pytest.mark.parametrize(
    "other",
    [
        make_scope(tenant="globex"),
        make_scope(model="m2"),
        make_scope(top_p=0.5),
        make_scope(
            messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "x"}]
        ),
    ],
)
async def test_scopes_never_share(cache: SemanticCache, other: Scope) -> None:
    v = unit(4)
    await cache.store(make_scope(), "What is the capital of France?", v, completion("Paris"))
    found = await cache.lookup(other, "What is the capital of France?", v, similarity=0.5)
    assert found.status == "miss"


async def test_clear_by_tenant_and_stats(cache: SemanticCache) -> None:
    await cache.store(make_scope("acme"), "a question", unit(5), completion("a"))
    await cache.store(make_scope("acme"), "another question", unit(6), completion("b"))
    await cache.store(make_scope("globex"), "a question", unit(5), completion("c"))
    assert (await cache.stats("acme"))["entries"] == 2
    assert (await cache.stats())["entries"] == 3
    assert await cache.clear("acme") == 2
    assert (
        await cache.lookup(make_scope("acme"), "a question", None, similarity=0.9)
    ).status == "miss"
    assert (
        await cache.lookup(make_scope("globex"), "a question", None, similarity=0.9)
    ).status == "hit"


async def test_incomplete_answers_are_not_stored(cache: SemanticCache) -> None:
    scope = make_scope()
    await cache.store(scope, "q1", None, completion("partial", finish="tool_calls"))
    await cache.store(scope, "q2", None, {"error": {"message": "boom"}})
    for prompt in ("q1", "q2"):
        assert (await cache.lookup(scope, prompt, None, similarity=0.9)).status == "miss"


async def test_ttl_expiry(kind: str) -> None:
    cache = build_cache(config_for(kind, ttl_s=0.2))
    try:
        scope = make_scope()
        await cache.store(scope, "short lived", unit(7), completion("x"))
        assert (await cache.lookup(scope, "short lived", None, similarity=0.9)).status == "hit"
        await asyncio.sleep(0.3)
        assert (await cache.lookup(scope, "short lived", unit(7), similarity=0.9)).status == "miss"
    finally:
        await cache.clear()
        await cache.close()


async def test_lru_bound_on_entries(kind: str) -> None:
    cache = build_cache(config_for(kind, max_entries=3))
    try:
        scope = make_scope()
        for i in range(3):
            await cache.store(scope, f"question {i}", unit(10 + i), completion(str(i)))
        # Touch question 0 so question 1 is the least recently used.
        assert (await cache.lookup(scope, "question 0", None, similarity=0.9)).status == "hit"
        await asyncio.sleep(0.01)
        await cache.store(scope, "question 3", unit(13), completion("3"))
        hits = {
            i: (await cache.lookup(scope, f"question {i}", None, similarity=0.9)).status == "hit"
            for i in range(4)
        }
        assert hits == {0: True, 1: False, 2: True, 3: True}
        # The evicted entry is not found through its vector either.
        assert (
            await cache.lookup(scope, "question one", unit(11), similarity=0.9)
        ).status == "miss"
    finally:
        await cache.clear()
        await cache.close()


async def test_memory_byte_bound() -> None:
    cache = build_cache(CacheConfig(max_bytes=8_000))
    scope = make_scope()
    for i in range(20):
        await cache.store(scope, f"question {i}", None, completion("y" * 1000))
    stats = await cache.stats()
    assert stats["bytes"] <= 8_000 and 0 < stats["entries"] < 20
    assert (await cache.lookup(scope, "question 19", None, similarity=0.9)).status == "hit"
    assert (await cache.lookup(scope, "question 0", None, similarity=0.9)).status == "miss"


async def test_disabled_cache_always_misses() -> None:
    cache = build_cache(CacheConfig(enabled=False))
    await cache.store(make_scope(), "q", None, completion("a"))
    assert (await cache.lookup(make_scope(), "q", None, similarity=0.9)).status == "miss"
