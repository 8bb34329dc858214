"""The semantic cache on the request path: headers, scope, streaming replay, Redis."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
import redis
from conftest import POLICY, Stack

REDIS = "redis://127.0.0.1:6379/0"


def policy(cache: str) -> str:
    text = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    return text + cache


def ask(stack: Stack, text: str, tenant: str = "t1", **kw: object):  # type: ignore[no-untyped-def]
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
    headers = {"x-tenant-id": tenant, **kw.pop("extra_headers", {})}  # type: ignore[dict-item]
    kw.setdefault("temperature", 0)
    return c.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        extra_headers=headers,
        **kw,  # type: ignore[arg-type]
    )


def wait_stored(stack: Stack) -> None:
    time.sleep(0.2)  # the store runs after the answer went out


@pytest.fixture(params=["memory", "redis"])
def cached(request: pytest.FixtureRequest, make_stack) -> Stack:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return make_stack(policy=policy("cache: {enabled: true}\n"))  # type: ignore[no-any-return]
    ns = f"hrtest{uuid.uuid4().hex[:8]}"
    stack = make_stack(policy=policy(f"cache: {{redis_url: '{REDIS}', namespace: {ns}}}\n"))
    request.addfinalizer(
        lambda: [
            redis.Redis.from_url(REDIS).delete(k)
            for k in redis.Redis.from_url(REDIS).scan_iter(f"{ns}:*")
        ]
    )
    return stack  # type: ignore[no-any-return]


def test_miss_then_exact_hit_costs_nothing(cached: Stack) -> None:
    first = ask(cached, "What is the capital of France?")
    assert first.headers["x-router-cache"] == "miss"
    wait_stored(cached)
    second = ask(cached, "  what is the capital of france? ")
    assert second.headers["x-router-cache"] == "hit"
    assert second.headers["x-router-route"] == "cache"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert len(cached.local.seen) == 1
    record = cached.records()[-1]
    assert (
        record["cache"] == "hit" and record["cost_usd"] == 0 and record["cache_similarity"] == 1.0
    )


def test_hit_is_replayed_as_a_stream(cached: Stack) -> None:
    ask(cached, "Stream me later")
    wait_stored(cached)
    c = openai.OpenAI(base_url=f"{cached.url}/v1", api_key="k", max_retries=0)
    stream = c.chat.completions.create(
        model="auto",
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream me later"}],
        extra_headers={"x-tenant-id": "t1"},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("[DEMO local model]")
    assert chunks[-1].usage is not None
    assert len(cached.local.seen) == 1


def test_streamed_answer_is_stored_and_served_plain(cached: Stack) -> None:
    c = openai.OpenAI(base_url=f"{cached.url}/v1", api_key="k", max_retries=0)
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model="auto",
            temperature=0,
            stream=True,
            extra_headers={"x-tenant-id": "t1"},
            messages=[{"role": "user", "content": "Streamed first"}],
        )
        if ch.choices
    )
    wait_stored(cached)
    hit = ask(cached, "Streamed first")
    assert hit.headers["x-router-cache"] == "hit"
    assert hit.parse().choices[0].message.content == streamed


def test_cut_stream_is_never_stored(cached: Stack) -> None:
    cached.local.faults.cut_after = 2
    c = openai.OpenAI(base_url=f"{cached.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError):
        list(
            c.chat.completions.create(
                model="auto",
                temperature=0,
                stream=True,
                extra_headers={"x-tenant-id": "t1"},
                messages=[{"role": "user", "content": "cut me"}],
            )
        )
    cached.local.faults.cut_after = None
    wait_stored(cached)
    assert ask(cached, "cut me").headers["x-router-cache"] == "miss"


def test_scope_tenant_params_and_bypass(cached: Stack) -> None:
    ask(cached, "Scoped question")
    wait_stored(cached)
    assert ask(cached, "Scoped question", tenant="t2").headers["x-router-cache"] == "miss"
    assert ask(cached, "Scoped question", max_tokens=5).headers["x-router-cache"] == "miss"
    assert (
        ask(cached, "Scoped question", extra_headers={"x-route": "cloud"}).headers["x-router-cache"]
        == "miss"
    )
    assert (
        ask(cached, "Scoped question", extra_headers={"cache-control": "no-cache"}).headers[
            "x-router-cache"
        ]
        == "bypass"
    )
    assert ask(cached, "Scoped question", temperature=0.7).headers["x-router-cache"] == "bypass"
    assert ask(cached, "Scoped question").headers["x-router-cache"] == "hit"


def test_guard_refuses_other_numbers(cached: Stack) -> None:
    ask(cached, "What is 12 times 7?")
    wait_stored(cached)
    assert ask(cached, "What is 12 times 8?").headers["x-router-cache"] == "miss"


def test_cache_off_without_section(stack: Stack) -> None:
    assert ask(stack, "anything").headers["x-router-cache"] == "off"


def test_dead_redis_never_fails_a_request(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(
        policy=policy("cache: {redis_url: 'redis://127.0.0.1:1/0', lookup_timeout_ms: 50}\n")
    )
    for i in range(3):
        raw = ask(stack, f"q{i}")
        assert raw.status_code == 200
        assert raw.headers["x-router-cache"] == "miss"
    assert stack.records()[-1]["cache"] == "error"
