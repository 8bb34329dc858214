"""The router as a transparent sidecar: headers, cookies, statuses, cached fields, every /v1 path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from scripted import ScriptedUpstream, completion_of, stream_of
from servers import serve

from router.app import create_app
from router.cache import assemble_stream

POLICY = """
version: 1
auth: {{tenant_header: x-tenant-id}}
upstreams:
  local:
    base_url: {local}/v1
    model: small-local
    api_key: local-secret-key
    retries: 0
    backoff: 0.001
    timeouts: {{connect: 1, first_byte: 1, read: 1, total: 3}}
    breaker: {{failures: {failures}, cooldown: {cooldown}}}
  cloud:
    base_url: {cloud}/v1
    model: big-cloud
    api_key: sk-cloud-secret-key-123
    retries: 0
    backoff: 0.001
    timeouts: {{connect: 1, first_byte: 1, read: 1, total: 3}}
models: [auto]
routes:
  - name: pinned-cloud
    match: {{headers: {{x-route: cloud}}}}
    target: cloud
default:
  target: local
  fallbacks: {fallbacks}
record: {{path: {records}}}
cache: {{enabled: true}}
embeddings:
  models:
    text-embedding-3-small: cloud
    local-embed: {{upstream: local, model: nomic-embed-text}}
completions:
  models: {{gpt-3.5-turbo-instruct: cloud}}
"""


@dataclass
class Proxy:
    url: str
    local: ScriptedUpstream
    cloud: ScriptedUpstream
    records_path: Path
    app: Any

    def client(self, tenant: str = "t1", headers: dict[str, str] | None = None, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1",
            api_key="client-key-never-forwarded",
            default_headers={"x-tenant-id": tenant, **(headers or {})},
            max_retries=0,
            **kw,
        )

    def records(self) -> list[dict[str, Any]]:
        deadline = time.time() + 5
        while self.app.runtime.in_flight and time.time() < deadline:
            time.sleep(0.01)
        self.app.runtime.sink.flush()
        return [json.loads(line) for line in self.records_path.read_text().splitlines()]


@pytest.fixture
def make_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    with ExitStack() as stack:

        def make(extra: str = "", fallbacks: str = "[]", failures: int = 5, cooldown: float = 10) -> Proxy:
            local, cloud = ScriptedUpstream("local"), ScriptedUpstream("cloud")
            lurl = stack.enter_context(serve(local, lifespan="off"))
            curl = stack.enter_context(serve(cloud, lifespan="off"))
            records = tmp_path / "records.jsonl"
            path = tmp_path / "policy.yaml"
            path.write_text(
                POLICY.format(local=lurl, cloud=curl, records=records, fallbacks=fallbacks,
                              failures=failures, cooldown=cooldown) + extra
            )  # fmt: skip
            app = create_app(str(path), scorer_factory=None)
            url = stack.enter_context(serve(app))
            return Proxy(url, local, cloud, records, app)

        yield make


@pytest.fixture
def proxy(make_proxy: Callable[..., Proxy]) -> Proxy:
    return make_proxy()


HELLO = [{"role": "user", "content": "Hello"}]


# -- cookies and headers -----------------------------------------------------------------


def test_upstream_cookies_never_cross_requests_or_tenants(proxy: Proxy) -> None:
    for tenant in ("tenant-a", "tenant-b", "tenant-a"):
        raw = proxy.client(tenant).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": f"hi from {tenant}"}]
        )
        assert "set-cookie" not in raw.headers  # never passed back to a client either
    calls = proxy.local.chat_calls()
    assert len(calls) == 3
    assert all("cookie" not in c.headers for c in calls)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_response_headers_reach_the_client(proxy: Proxy, stream: bool) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, stream=stream
    )
    headers = raw.headers
    assert headers["x-request-id"].startswith("req_local_")
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["openai-processing-ms"] == "12"
    assert headers["x-router-route"] == "local"
    # Not on the allow-list: an upstream's private header, its cookie.
    assert "x-upstream-secret-header" not in headers and "set-cookie" not in headers
    if not stream:
        assert raw.parse()._request_id == headers["x-request-id"]  # what the SDK reads


def test_request_headers_forwarded_by_allow_list_and_credentials_never(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy("headers: {request: [traceparent, tracestate, x-app-name]}\n")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    proxy.client(headers={"x-tenant-id": "t", "traceparent": trace, "x-app-name": "rag",
                                  "x-not-listed": "1", "cookie": "a=b"}).chat.completions.create(
        model="auto", messages=HELLO)  # fmt: skip
    seen = proxy.local.chat_calls()[-1].headers
    assert seen["traceparent"] == trace and seen["x-app-name"] == "rag"
    assert "x-not-listed" not in seen and "cookie" not in seen and "x-tenant-id" not in seen
    assert seen["authorization"] == "Bearer local-secret-key"  # the upstream's key, not the client's


# -- statuses clients act on ---------------------------------------------------------------


def test_rate_limit_reaches_the_client_as_429_with_retry_after(proxy: Proxy) -> None:
    proxy.local.fail_status, proxy.local.fail_times = 429, 10
    proxy.local.fail_headers = [(b"retry-after", b"7"), (b"x-ratelimit-remaining-requests", b"0")]
    with pytest.raises(openai.RateLimitError) as info:
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    response = info.value.response
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-router-route"] == "local"
    assert response.headers["x-router-rule"] == "default"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(proxy.local.chat_calls()) == 1  # a 7 s wait is not retried inline


def test_open_circuit_answers_503_with_its_remaining_time(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(failures=1, cooldown=30)
    proxy.local.fail_status, proxy.local.fail_times = 500, 1
    with pytest.raises(openai.InternalServerError):
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    assert info.value.status_code == 503
    assert 25 <= int(info.value.response.headers["retry-after"]) <= 30


def test_upstream_auth_failure_is_not_blamed_on_the_client_and_falls_back(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(fallbacks="[cloud]")
    proxy.local.fail_status, proxy.local.fail_times = 401, 10
    proxy.local.fail_body = b'{"error": {"message": "Incorrect API key provided: local-secret-key", "code": "invalid_api_key"}}'
    answer = proxy.client().chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert answer.headers["x-router-route"] == "cloud"
    proxy.cloud.fail_status, proxy.cloud.fail_times = 401, 10
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    assert info.value.status_code == 502  # the router's set-up is wrong, not the client's key
    assert "local-secret-key" not in info.value.response.text
    assert "sk-cloud-secret-key-123" not in info.value.response.text


def test_upstream_echoing_its_key_in_a_400_is_redacted(proxy: Proxy) -> None:
    proxy.local.fail_status, proxy.local.fail_times = 400, 1
    proxy.local.fail_body = b'{"error": {"message": "bad request for key local-secret-key", "type": "invalid_request_error"}}'
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    assert "local-secret-key" not in info.value.response.text
    assert "[redacted]" in info.value.response.text


@pytest.mark.parametrize("misbehave", ["redirect", "garbage", "cut", "hang"])
@pytest.mark.parametrize("stream", [False, True])
def test_broken_answers_fall_back_while_nothing_reached_the_client(
    make_proxy: Callable[..., Proxy], misbehave: str, stream: bool
) -> None:
    proxy = make_proxy(fallbacks="[cloud]")
    proxy.local.misbehave = misbehave
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, stream=stream
    )
    assert raw.headers["x-router-route"] == "cloud"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "Hello there friend"
    record = proxy.records()[-1]
    assert record["tried"] == ["local"] and record["route"] == "cloud"
    assert proxy.app.runtime.pool.clients["local"].breaker.failures >= 1  # counted


def test_cancelled_breaker_probe_does_not_keep_the_circuit_half_open(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(failures=1, cooldown=0.2)
    proxy.local.fail_status, proxy.local.fail_times = 500, 1
    with pytest.raises(openai.InternalServerError):
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    time.sleep(0.3)
    proxy.local.misbehave = "hang"  # the probe hangs; the client gives up first
    with pytest.raises(openai.APITimeoutError):
        proxy.client(timeout=0.3).chat.completions.create(model="auto", messages=HELLO)
    time.sleep(0.1)
    proxy.local.misbehave = None
    answer = proxy.client().chat.completions.create(model="auto", messages=HELLO)
    assert answer.choices[0].message.content == "Hello there friend"
    assert proxy.app.runtime.pool.clients["local"].breaker.state == "closed"


# -- cached answers carry every field ---------------------------------------------------------

RICH = completion_of(
    "The answer is four",
    reasoning_content="two plus two makes four",
)
RICH["choices"][0]["logprobs"] = {
    "content": [
        {"token": w, "logprob": -0.1 * i, "bytes": list(w.encode()), "top_logprobs": []}
        for i, w in enumerate(["The ", "answer ", "is ", "four"])
    ],
    "refusal": None,
}


def _normal(completion: dict[str, Any]) -> dict[str, Any]:
    """An answer without what differs between two servings (ids, timestamps) or means nothing."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v not in (None, []) and k not in ("id", "created")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(completion)


def _ask(proxy: Proxy, stream: bool, **extra: Any) -> tuple[str, dict[str, Any]]:
    client = proxy.client()
    kwargs = {"model": "auto", "messages": HELLO, "temperature": 0, "logprobs": True, **extra}
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        return raw.headers["x-router-cache"], raw.parse().model_dump(exclude_unset=True)
    kwargs.setdefault("stream_options", {"include_usage": True})
    raw = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    chunks = [c.model_dump_json(exclude_unset=True).encode() for c in raw.parse()]
    assembled = assemble_stream(chunks)
    assert assembled is not None
    return raw.headers["x-router-cache"], assembled


@pytest.mark.parametrize("stored,asked", [(False, False), (True, True), (True, False), (False, True)])
def test_cache_hit_carries_logprobs_and_reasoning_across_modes(
    proxy: Proxy, stored: bool, asked: bool
) -> None:
    proxy.local.answer = RICH
    first_status, _ = _ask(proxy, stored)
    status, hit = _ask(proxy, asked)
    assert (first_status, status) == ("miss", "hit")
    expected = {**RICH, "model": "small-local"}
    if stored:
        expected = assemble_stream([json.dumps(c).encode() for c in stream_of(expected)]) or {}
    assert _normal(hit) == _normal(expected)
    assert hit["choices"][0]["message"]["reasoning_content"] == "two plus two makes four"
    assert [t["token"] for t in hit["choices"][0]["logprobs"]["content"]] == ["The ", "answer ", "is ", "four"]


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_answers_are_cached_for_repeating_agents(proxy: Proxy, stream: bool) -> None:
    call = {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    proxy.local.answer = completion_of(None, tool_calls=[call])  # type: ignore[arg-type]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    statuses = [_ask(proxy, stream, messages=ask, tools=TOOLS, logprobs=None)[0] for _ in range(2)]
    assert statuses == ["miss", "hit"]
    _, hit = _ask(proxy, stream, messages=ask, tools=TOOLS, logprobs=None)
    assert hit["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert hit["choices"][0]["finish_reason"] == "tool_calls"
    # A similar prompt about another city is not a hit: tool answers match exactly only.
    other = [{"role": "user", "content": "Weather in Rome?"}]
    assert _ask(proxy, stream, messages=other, tools=TOOLS, logprobs=None)[0] == "miss"
    # The agent's next turn (a tool result) is cached too, whatever ids the calls got.
    proxy.local.answer = completion_of("It is sunny in Paris.")
    for run, call_id in enumerate(["call_abc", "call_xyz"]):
        turn = [*ask, {"role": "assistant", "content": None, "tool_calls": [{**call, "id": call_id}]},
                {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "sunny"}'}]  # fmt: skip
        status, _ = _ask(proxy, stream, messages=turn, tools=TOOLS, logprobs=None)
        assert status == ("miss" if run == 0 else "hit")
    changed = [*ask, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_abc", "content": '{"sky": "rain"}'}]  # fmt: skip
    assert _ask(proxy, stream, messages=changed, tools=TOOLS, logprobs=None)[0] == "miss"


# -- every /v1 path ---------------------------------------------------------------------------


def test_embeddings_routed_by_model_cached_and_recorded(proxy: Proxy) -> None:
    client = proxy.client()
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "bb"])
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [3, 3]
    assert raw.headers["x-router-route"] == "cloud" and raw.headers["x-router-cache"] == "miss"
    assert raw.headers["x-request-id"].startswith("req_cloud_")
    again = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "bb"])
    assert again.headers["x-router-cache"] == "hit"
    assert again.parse().data[0].embedding == result.data[0].embedding
    assert len([c for c in proxy.cloud.calls if c.path == "/v1/embeddings"]) == 1
    client.embeddings.create(model="local-embed", input="x")
    sent = proxy.local.calls[-1]
    assert sent.path == "/v1/embeddings" and sent.body["model"] == "nomic-embed-text"
    assert sent.headers["authorization"] == "Bearer local-secret-key"
    calls = [r for r in proxy.records() if r.get("kind") == "call"]
    assert [r["endpoint"] for r in calls] == ["embeddings"] * 3
    assert calls[0]["tokens_in"] == 8 and calls[0]["route"] == "cloud" and calls[1]["route"] == "cache"
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-embedder", input="x")
    assert "text-embedding-3-small" in info.value.message


def test_other_tenants_do_not_share_cached_embeddings(proxy: Proxy) -> None:
    proxy.client("a").embeddings.create(model="text-embedding-3-small", input="same")
    raw = proxy.client("b").embeddings.with_raw_response.create(model="text-embedding-3-small", input="same")
    assert raw.headers["x-router-cache"] == "miss"


def test_completions_and_model_lookup(proxy: Proxy) -> None:
    client = proxy.client()
    done = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello")
    assert done.choices[0].text == " world"
    assert proxy.cloud.calls[-1].path == "/v1/completions"
    assert client.models.retrieve("auto").id == "auto"
    assert client.models.retrieve("text-embedding-3-small").id == "text-embedding-3-small"
    assert {m.id for m in client.models.list()} >= {"auto", "text-embedding-3-small", "gpt-3.5-turbo-instruct"}
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_unknown_paths_name_the_passthrough_setting_or_pass_through(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy()
    with pytest.raises(openai.NotFoundError) as info:
        proxy.client().files.list()
    assert "passthrough" in info.value.message
    proxy = make_proxy("passthrough: cloud\n")
    page = proxy.client().files.with_raw_response.list(extra_query={"purpose": "batch"})
    assert page.parse().data == []
    call = proxy.cloud.calls[-1]
    assert (call.method, call.path, call.query) == ("GET", "/v1/files", "purpose=batch")
    assert call.headers["authorization"] == "Bearer sk-cloud-secret-key-123"
    assert page.headers["x-request-id"].startswith("req_cloud_")
    assert "set-cookie" not in page.headers
    record = proxy.records()[-1]
    assert record["kind"] == "call" and record["endpoint"] == "passthrough" and record["status"] == 200


def test_no_secret_reaches_records(proxy: Proxy) -> None:
    proxy.client().chat.completions.create(model="auto", messages=HELLO)
    proxy.client().embeddings.create(model="text-embedding-3-small", input="x")
    text = proxy.records_path.read_text()
    for secret in ("local-secret-key", "sk-cloud-secret-key-123", "client-key-never-forwarded"):
        assert secret not in text


def test_raw_httpx_error_answers_carry_router_headers(proxy: Proxy) -> None:
    proxy.local.fail_status, proxy.local.fail_times = 503, 10
    response = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "auto", "messages": HELLO})
    assert response.status_code == 502
    assert response.headers["x-router-route"] == "local" and response.headers["x-router-rule"] == "default"


def test_circuit_opened_by_rate_limits_still_answers_429(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(failures=1, cooldown=20)
    proxy.local.fail_status, proxy.local.fail_times = 429, 1
    proxy.local.fail_headers = [(b"retry-after", b"2")]
    with pytest.raises(openai.RateLimitError):
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as info:  # the upstream is not even asked now
        proxy.client().chat.completions.create(model="auto", messages=HELLO)
    assert 15 <= int(info.value.response.headers["retry-after"]) <= 20
    assert len(proxy.local.chat_calls()) == 1


def test_async_sdk_sees_the_same_headers_and_stream(proxy: Proxy) -> None:
    import asyncio

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
        assert raw.headers["x-request-id"].startswith("req_local_")
        assert raw.parse()._request_id == raw.headers["x-request-id"]
        stream = await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello there friend"
        vectors = await client.embeddings.create(model="text-embedding-3-small", input="a")
        assert vectors.data[0].embedding[0] == 1.0
        await client.close()

    asyncio.run(run())
