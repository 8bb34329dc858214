"""Retries, fallbacks, the circuit breaker, timeouts, cut streams and client disconnects."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest
from conftest import Stack

from router.demo import demo_answer
from router.upstreams.breaker import CircuitBreaker


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)


def ask(stack: Stack, text: str = "hi", **kw: object):  # type: ignore[no-untyped-def]
    return client(stack).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        **kw,  # type: ignore[arg-type]
    )


def test_retry_on_503_then_success_on_same_upstream(stack: Stack) -> None:
    stack.local.faults.status, stack.local.faults.times = 503, 1
    raw = ask(stack)
    assert raw.headers["x-router-route"] == "local"
    assert len(stack.local.seen) == 2 and not stack.cloud.seen
    assert stack.records()[-1]["tried"] == []


def test_429_is_retried(stack: Stack) -> None:
    stack.local.faults.status, stack.local.faults.times = 429, 1
    assert ask(stack).headers["x-router-route"] == "local"


def test_fallback_to_cloud_after_retries(stack: Stack) -> None:
    stack.local.faults.status = 500
    raw = ask(stack, "fall back")
    assert raw.headers["x-router-route"] == "cloud"
    assert raw.parse().choices[0].message.content == demo_answer("cloud", "fall back")
    assert len(stack.local.seen) == 2  # first try + 1 retry
    record = stack.records()[-1]
    assert record["tried"] == ["local"] and record["route"] == "cloud" and record["status"] == 200


def test_streaming_fallback_happens_before_first_byte(stack: Stack) -> None:
    stack.local.faults.status = 502
    stream = client(stack).chat.completions.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "s"}]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == demo_answer("cloud", "s")


def test_all_upstreams_down_gives_502_with_cause(stack: Stack) -> None:
    stack.local.faults.status = 500
    stack.cloud.faults.status = 503
    with pytest.raises(openai.InternalServerError) as info:
        ask(stack)
    assert info.value.status_code == 502
    body = info.value.body
    assert isinstance(body, dict)
    assert "local" in body["message"] and "cloud" in body["message"]
    assert body["type"] == "api_error"


def test_upstream_4xx_is_relayed_not_retried(stack: Stack) -> None:
    stack.local.faults.status = 400
    stack.local.faults.error_body = {
        "error": {"message": "context too long", "type": "invalid_request_error", "code": "ctx"}
    }
    with pytest.raises(openai.BadRequestError) as info:
        ask(stack)
    assert "context too long" in str(info.value)
    assert len(stack.local.seen) == 1 and not stack.cloud.seen


def test_circuit_breaker_opens_then_probes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=5, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 5.0
    assert breaker.state == "half-open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_breaker_skips_a_failing_upstream(stack: Stack) -> None:
    stack.local.faults.status = 500
    for _ in range(2):  # 2 requests x 2 attempts >= 3 failures: the circuit opens
        assert ask(stack).headers["x-router-route"] == "cloud"
    before = len(stack.local.seen)
    assert ask(stack).headers["x-router-route"] == "cloud"
    assert len(stack.local.seen) == before  # open circuit: local not even tried
    assert httpx.get(f"{stack.url}/readyz").json()["upstreams"]["local"] == "open"
    from prometheus_client import REGISTRY

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("router_breaker_open", {"upstream": "local"})

    assert gauge() == 1
    stack.local.faults.status = None
    time.sleep(0.6)  # cooldown 0.5 s: the next request is the half-open probe
    assert ask(stack).headers["x-router-route"] == "local"
    assert gauge() == 0  # the successful probe closed the circuit


def test_first_byte_timeout_falls_back(stack: Stack) -> None:
    stack.local.faults.delay = 3.0  # first_byte timeout is 2 s
    started = time.perf_counter()
    raw = ask(stack)
    assert raw.headers["x-router-route"] == "cloud"
    assert time.perf_counter() - started < 6
    assert stack.records()[-1]["tried"] == ["local"]


def test_unreachable_upstream_falls_back(make_stack) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    stack = make_stack()
    from prometheus_client import REGISTRY

    def refused() -> float:
        labels = {"upstream": "local", "error": "connect_error"}
        return REGISTRY.get_sample_value("router_fallbacks_total", labels) or 0.0

    before = refused()
    text = stack.policy_path.read_text().replace(stack.local_url, f"http://127.0.0.1:{dead}")
    stack.write_policy(text)
    time.sleep(0.3)
    raw = ask(stack)
    assert raw.headers["x-router-route"] == "cloud"
    assert stack.records()[-1]["tried"] == ["local"]
    assert refused() > before  # a refused connection, not a timeout


def test_cut_stream_is_reported_to_the_client(stack: Stack) -> None:
    stack.local.faults.cut_after = 3
    stream = client(stack).chat.completions.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "cut"}]
    )
    got: list[str] = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert got == ["w0 ", "w1 ", "w2 "]
    record = stack.records()[-1]
    assert record["error"] == "stream_cut"


def test_client_disconnect_cancels_upstream_stream(stack: Stack) -> None:
    stack.local.faults.chunk_delay = 0.02  # 10,000 chunks would take minutes
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/chat/completions",
        json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "long"}]},
    ) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    deadline = time.time() + 5
    while stack.local.disconnected == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert stack.local.disconnected == 1
    assert stack.local.streamed < 200
    record = stack.records()[-1]
    assert record["status"] == 499 and record["error"] == "client_disconnected"


def test_client_disconnect_while_waiting_cancels_upstream(stack: Stack) -> None:
    stack.local.faults.delay = 1.5
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{stack.url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "slow"}]},
            timeout=0.3,
        )
    time.sleep(0.3)
    record = stack.records()[-1]
    assert record["status"] == 499 and record["error"] == "client_disconnected"
    assert not stack.cloud.seen  # gave up; no fallback for a client who is gone
