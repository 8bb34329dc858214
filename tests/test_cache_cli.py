from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from router.cache import CacheConfig, build_cache, scope_for
from router.cli import main

REDIS_URL = "redis://127.0.0.1:6379/15"


def fill(namespace: str) -> None:
    async def go() -> None:
        cache = build_cache(CacheConfig(redis_url=REDIS_URL, namespace=namespace))
        answer = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"content": "a"}, "finish_reason": "stop"}],
        }
        for tenant, prompt in [("acme", "q1"), ("acme", "q2"), ("globex", "q1")]:
            body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0}
            scope = scope_for(tenant=tenant, upstream="u", model="m", body=body)
            assert scope is not None
            await cache.store(scope, prompt, None, answer)
        await cache.close()

    asyncio.run(go())


def test_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = f"hrtest-{uuid.uuid4().hex[:8]}"
    fill(namespace)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "upstreams: {a: {base_url: 'http://127.0.0.1:1/v1', model: m}}\n"
        "default: {target: a}\n"
        f"cache:\n  redis_url: {REDIS_URL}\n  namespace: {namespace}\n"
    )
    assert main(["cache", "stats", "--policy", str(policy), "--tenant", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 2
    url = ["--redis-url", REDIS_URL, "--namespace", namespace]
    assert main(["cache", "clear", *url, "--tenant", "acme"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "stats", *url]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 1
    assert main(["cache", "clear", *url]) == 0
    assert "removed 1 entries" in capsys.readouterr().out


def test_needs_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "stats"]) == 2
    assert "redis_url" in capsys.readouterr().err
