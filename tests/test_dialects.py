"""The three dialects through the router: OpenAI chat, OpenAI Responses, Anthropic Messages.

Driven by the official SDKs (`openai` responses.create/stream/parse, `anthropic`
messages.create/stream, sync and async, with tools) against a chat-completions-only
upstream (`tests/scripted.py`), which is what most vLLM / Ollama / llama.cpp
deployments are.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel
from scripted import completion_of
from test_transparent import Proxy, make_proxy  # noqa: F401  (the fixture)

POLICY_EXTRA = "models: [auto, claude-sonnet-4-5]\n"


def claude(proxy: Proxy, tenant: str = "t1") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.url, api_key="sk-ant-client", max_retries=0,
        default_headers={"x-tenant-id": tenant},
    )  # fmt: skip


def test_anthropic_messages_plain_stream_and_count(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    client = claude(proxy)
    message = client.messages.create(
        model="auto", max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}], stop_sequences=["END"],
    )  # fmt: skip
    assert message.content[0].type == "text" and message.content[0].text == "Hello there friend"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3
    sent = proxy.local.chat_calls()[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["END"] and sent["max_tokens"] == 100
    assert sent["model"] == "small-local"  # routed by the policy like chat
    with client.messages.stream(
        model="auto", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there friend" and final.usage.input_tokens == 5
    counted = client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens > 0
    record = proxy.records()[-1]
    assert record["dialect"] == "anthropic" and record["route"] == "local" and record["tokens_out"] == 3


def test_anthropic_tools_round_trip(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    proxy.local.answer = completion_of(None, tool_calls=[call])  # type: ignore[arg-type]
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    client = claude(proxy)
    first = client.messages.create(model="auto", max_tokens=50, tools=tools,
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])  # fmt: skip
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    proxy.local.answer = completion_of("Sunny.")
    second = client.messages.create(
        model="auto", max_tokens=50, tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
    )  # fmt: skip
    assert second.content[0].text == "Sunny."
    sent = proxy.local.chat_calls()[-1].body
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_anthropic_errors_in_anthropic_format(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    client = claude(proxy)
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "not_found_error"
    raw = httpx.post(proxy.url + "/v1/messages", json={"model": "auto", "messages": []})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    proxy.local.fail_status, proxy.local.fail_times = 429, 5
    proxy.local.fail_headers = [(b"retry-after", b"4")]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "4"
    assert limited.value.body["error"]["type"] == "rate_limit_error"


def test_anthropic_async_stream_cut_raises(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()

    async def run() -> str:
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="k", max_retries=0)
        async with client.messages.stream(
            model="auto", max_tokens=50, messages=[{"role": "user", "content": "Hello"}]
        ) as stream:
            return "".join([t async for t in stream.text_stream])

    assert asyncio.run(run()) == "Hello there friend"


def openai_client(proxy: Proxy, tenant: str = "t1") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0,
                         default_headers={"x-tenant-id": tenant})  # fmt: skip


def test_responses_create_stream_and_previous_id(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    client = openai_client(proxy)
    first = client.responses.create(model="auto", instructions="Be brief.", input="Hello", max_output_tokens=50)
    assert first.output_text == "Hello there friend" and first.status == "completed"
    assert first.usage is not None and first.usage.output_tokens == 3
    sent = proxy.local.chat_calls()[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert sent["max_completion_tokens"] == 50
    second = client.responses.create(model="auto", input="And again?", previous_response_id=first.id)
    assert second.output_text == "Hello there friend"
    history = proxy.local.chat_calls()[-1].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == "Hello there friend"
    with client.responses.stream(model="auto", input="Stream it") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hello there friend" == final.output_text
    # Another tenant cannot continue this conversation: the id reads as unknown.
    with pytest.raises(openai.BadRequestError) as info:
        openai_client(proxy, "t2").responses.create(model="auto", input="x", previous_response_id=first.id)
    assert info.value.code == "previous_response_not_found"
    record = proxy.records()[-1]
    assert record["dialect"] == "responses"


class Weather(BaseModel):
    city: str
    sky: str


def test_responses_parse_and_function_tools(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    proxy.local.answer = completion_of(json.dumps({"city": "Paris", "sky": "sunny"}))
    client = openai_client(proxy)
    parsed = client.responses.parse(model="auto", input="Weather in Paris as JSON", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", sky="sunny")
    assert proxy.local.chat_calls()[-1].body["response_format"]["type"] == "json_schema"
    call = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    proxy.local.answer = completion_of(None, tool_calls=[call])  # type: ignore[arg-type]
    tools: list[Any] = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    asked = client.responses.create(model="auto", input="Weather in Rome?", tools=tools)
    fc = next(o for o in asked.output if o.type == "function_call")
    assert fc.name == "get_weather" and fc.call_id == "call_9"
    proxy.local.answer = completion_of("Sunny in Rome.")
    done = client.responses.create(
        model="auto", previous_response_id=asked.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": '{"sky": "sunny"}'}],
    )  # fmt: skip
    assert done.output_text == "Sunny in Rome."
    sent = proxy.local.chat_calls()[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_9", "content": '{"sky": "sunny"}'}


def test_same_prompt_scores_and_caches_alike_across_dialects(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    ask = "What is the capital of France?"
    chat = openai_client(proxy).chat.completions.with_raw_response.create(
        model="auto", temperature=0, messages=[{"role": "user", "content": ask}]
    )
    assert chat.headers["x-router-cache"] == "miss"
    again = openai_client(proxy).responses.with_raw_response.create(model="auto", temperature=0, input=ask)
    assert again.headers["x-router-cache"] == "hit"  # the answer stored by a chat request
    assert again.parse().output_text == "Hello there friend"
    third = claude(proxy).messages.with_raw_response.create(
        model="auto", max_tokens=50, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": ask}],
    )
    # Anthropic requests carry max_tokens, which is part of the scope: a separate entry.
    assert third.headers["x-router-cache"] in ("miss", "hit")
    assert len(proxy.local.chat_calls()) <= 2


def test_every_dialect_reaches_an_anthropic_native_upstream(tmp_path: Any) -> None:
    from contextlib import ExitStack

    from scripted import AnthropicUpstream
    from servers import serve

    from router.app import create_app

    upstream = AnthropicUpstream()
    with ExitStack() as stack:
        url = stack.enter_context(serve(upstream, lifespan="off"))
        records = tmp_path / "r.jsonl"
        policy = tmp_path / "p.yaml"
        policy.write_text(
            "upstreams:\n"
            f"  claude: {{kind: anthropic, base_url: {url}/v1, model: claude-sonnet-4-5, api_key: sk-ant-up-123,"
            " price: {input: 3, output: 15}}\n"
            f"default: {{target: claude}}\nrecord: {{path: {records}}}\n"
        )
        app = create_app(str(policy), scorer_factory=None)
        base = stack.enter_context(serve(app))
        chat = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        answer = chat.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == "Bonjour from Claude"
        assert answer.usage is not None and answer.usage.prompt_tokens == 7
        sent = upstream.calls[-1]
        assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant-up-123"
        assert "authorization" not in sent.headers and sent.headers["anthropic-version"]
        assert sent.body["model"] == "claude-sonnet-4-5" and sent.body["max_tokens"] > 0
        streamed = chat.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "Bonjour from Claude"
        with chat.responses.stream(model="auto", input="Hi") as stream:
            assert stream.get_final_response().output_text == "Bonjour from Claude"
        claude_client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
        with claude_client.messages.stream(
            model="auto", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        ) as s:
            assert "".join(s.text_stream) == "Bonjour from Claude"
        app.runtime.sink.flush()
        rows = [json.loads(line) for line in records.read_text().splitlines()]
        assert rows[0]["tokens_in"] == 7 and rows[0]["cost_usd"] == pytest.approx((7 * 3 + 3 * 15) / 1e6)


def test_shadow_to_an_anthropic_upstream_records_its_answer(tmp_path: Any) -> None:
    from contextlib import ExitStack

    from scripted import AnthropicUpstream, ScriptedUpstream
    from servers import serve

    from router.app import create_app

    claude_up, local = AnthropicUpstream(), ScriptedUpstream("local")
    with ExitStack() as stack:
        curl = stack.enter_context(serve(claude_up, lifespan="off"))
        lurl = stack.enter_context(serve(local, lifespan="off"))
        records = tmp_path / "r.jsonl"
        policy = tmp_path / "p.yaml"
        policy.write_text(
            "upstreams:\n"
            f"  claude: {{kind: anthropic, base_url: {curl}/v1, model: claude-sonnet-4-5,"
            " price: {input: 3, output: 15}}\n"
            f"  local: {{base_url: {lurl}/v1, model: small}}\n"
            "default: {target: local, shadow: {percent: 100, target: claude}}\n"
            f"record: {{path: {records}, prompts: true}}\n"
        )
        app = create_app(str(policy), scorer_factory=None)
        base = stack.enter_context(serve(app))
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
        deadline = time.time() + 5
        while not records.exists() or not records.read_text().strip():
            assert time.time() < deadline, "no record"
            app.runtime.sink.flush()
            time.sleep(0.05)
        row = json.loads(records.read_text().splitlines()[-1])
        shadow = row["shadow_result"]
        assert shadow["upstream"] == "claude" and shadow["error"] is None
        assert shadow["answer"] == "Bonjour from Claude"
        assert shadow["tokens_in"] == 7 and shadow["tokens_out"] == 3


def test_a_refusal_from_an_anthropic_upstream_reaches_a_chat_client_in_openais_format(
    tmp_path: Any,
) -> None:
    """The chat request was translated for Anthropic; its 400 is translated back, so the
    OpenAI SDK raises BadRequestError with Anthropic's message, not an unreadable body."""
    from contextlib import ExitStack

    from scripted import AnthropicUpstream
    from servers import serve

    from router.app import create_app

    upstream = AnthropicUpstream()
    refusal = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}
    with ExitStack() as stack:
        url = stack.enter_context(serve(upstream, lifespan="off"))
        policy = tmp_path / "p.yaml"
        policy.write_text(
            "upstreams:\n"
            f"  claude: {{kind: anthropic, base_url: {url}/v1, model: claude-sonnet-4-5, api_key: sk-ant-up-123}}\n"
            f"default: {{target: claude}}\nrecord: {{path: {tmp_path / 'r.jsonl'}}}\n"
        )
        base = stack.enter_context(serve(create_app(str(policy), scorer_factory=None)))
        chat = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        upstream.fail = (400, json.dumps(refusal).encode())
        with pytest.raises(openai.BadRequestError) as caught:
            chat.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
        body = caught.value.response.json()
        assert set(body) == {"error"} and body["error"]["message"] == "prompt is too long"
        assert body["error"]["type"] == "invalid_request_error"
