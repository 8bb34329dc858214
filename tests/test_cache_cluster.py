"""The Redis store on a three-node Redis Cluster: one scope's keys share a slot."""

from __future__ import annotations

import numpy as np
import pytest

from router.cache import CacheConfig, build_cache, scope_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
