"""The sidecar through the official openai SDK: plain, streaming, sync and async."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from conftest import Stack

from router.demo import demo_answer


def client(stack: Stack, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.url}/v1", api_key="client-key-never-forwarded", max_retries=0, **kw
    )  # type: ignore[arg-type]


def test_plain_completion_routes_to_local_and_says_so(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == demo_answer("local", "What is 2+2?")
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-rule"] == "default"
    assert raw.headers["x-router-cache"] == "off"
    assert float(raw.headers["x-router-overhead-ms"]) >= 0
    assert len(raw.headers["x-router-request-id"]) == 32
    # The upstream got its own model name, and its own key, never the client's.
    seen = stack.local.seen[-1]
    assert seen.body["model"] == "small-local"
    assert seen.headers["authorization"] == "Bearer local-secret-key"


def test_streaming_passes_chunks_through(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "tell me"}]
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) >= 8
    assert "".join(pieces) == demo_answer("local", "tell me")


def test_stream_options_include_usage_is_honoured(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(
            model="auto",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "usage please"}],
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # Without include_usage the client sees no usage chunk, but the record has the cost.
    chunks = list(
        client(stack).chat.completions.create(
            model="auto", stream=True, messages=[{"role": "user", "content": "no usage"}]
        )
    )
    assert all(c.usage is None for c in chunks)
    record = stack.records()[-1]
    assert record["tokens_out"] > 0 and record["cost_usd"] > 0


def test_async_client_concurrent_plain_and_stream(stack: Stack) -> None:
    async def main() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)

        async def one(i: int) -> str:
            if i % 2:
                stream = await aclient.chat.completions.create(
                    model="auto", stream=True, messages=[{"role": "user", "content": f"q{i}"}]
                )
                return "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
            done = await aclient.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": f"q{i}"}]
            )
            return done.choices[0].message.content or ""

        try:
            return await asyncio.gather(*(one(i) for i in range(20)))
        finally:
            await aclient.close()

    answers = asyncio.run(main())
    assert answers == [demo_answer("local", f"q{i}") for i in range(20)]


@pytest.mark.parametrize(
    ("kwargs", "route", "rule"),
    [
        ({"extra_headers": {"x-route": "cloud"}}, "cloud", "pinned-cloud"),
        ({"extra_headers": {"x-tenant-id": "vip"}}, "cloud", "vip"),
        ({"model": "gpt-4o"}, "cloud", "gpt4-name"),
        ({"messages": [{"role": "user", "content": "x" * 2001}]}, "cloud", "long"),
        ({"messages": [{"role": "user", "content": "x" * 1999}]}, "local", "default"),
    ],
)
def test_routing_by_header_tenant_model_and_size(
    stack: Stack, kwargs: dict[str, object], route: str, rule: str
) -> None:
    args: dict[str, object] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    args.update(kwargs)
    raw = client(stack).chat.completions.with_raw_response.create(**args)  # type: ignore[call-overload]
    assert (raw.headers["x-router-route"], raw.headers["x-router-rule"]) == (route, rule)
    content = raw.parse().choices[0].message.content
    assert content.startswith(f"[DEMO {route} model]")


def test_models_endpoint_lists_public_names(stack: Stack) -> None:
    names = [m.id for m in client(stack).models.list()]
    assert names == ["auto", "gpt-4o"]


def test_health_ready_metrics(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz").json()
    assert ready["status"] == "ready" and set(ready["upstreams"]) == {"local", "cloud"}
    client(stack).chat.completions.create(model="auto", messages=[{"role": "user", "content": "m"}])
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'router_requests_total{dialect="chat",route="local",rule="default",status="200"}' in metrics


@pytest.mark.parametrize("sep", ["lf-no-final-blank", "crlf"])
def test_streams_with_unusual_event_framing(tmp_path, sep: str) -> None:  # type: ignore[no-untyped-def]
    import json as _json

    from conftest import policy_text
    from servers import serve

    from router.app import create_app

    def event(data: dict) -> bytes:  # type: ignore[type-arg]
        return b"data: " + _json.dumps(data).encode() + (b"\r\n\r\n" if sep == "crlf" else b"\n\n")

    base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    body = event({**base, "choices": [{"index": 0, "delta": {"content": "ter"}, "finish_reason": None}]})
    body += event({**base, "choices": [{"index": 0, "delta": {"content": "se"}, "finish_reason": "stop"}]})
    body += event({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    body += b"data: [DONE]\r\n\r\n" if sep == "crlf" else b"data: [DONE]\n"

    async def upstream(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(0, len(body), 7):  # arbitrary TCP-ish cuts
            await send({"type": "http.response.body", "body": body[i : i + 7], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve(upstream, lifespan="off") as up:
        path = tmp_path / "p.yaml"
        records = tmp_path / "r.jsonl"
        path.write_text(policy_text(up, up, records))
        app = create_app(str(path), scorer_factory=None)
        with serve(app) as url:
            c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            chunks = list(c.chat.completions.create(model="auto", stream=True, messages=[{"role": "user", "content": "x"}]))
            assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "terse"
            assert all(ch.usage is None for ch in chunks)  # the usage we asked for is not relayed
            deadline = time.time() + 5
            while app.runtime.in_flight and time.time() < deadline:
                time.sleep(0.01)
            app.runtime.sink.flush()
    record = _json.loads(records.read_text().splitlines()[-1])
    assert (record["tokens_in"], record["tokens_out"], record["error"]) == (3, 2, None)


def test_event_buffer_cuts_only_at_event_boundaries() -> None:
    from router.upstreams.sse import EventBuffer

    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        stream = b"".join(b"data: {\"n\": %d}" % i + sep for i in range(20)) + b"data: [DONE]" + sep
        for size in (1, 2, 3, 5, 7, 64):
            buffer = EventBuffer()
            out = [buffer.feed(stream[i : i + size]) for i in range(0, len(stream), size)]
            assert b"".join(out) == stream and buffer.pending == b""
            assert all(block == b"" or block.endswith(sep) for block in out)
