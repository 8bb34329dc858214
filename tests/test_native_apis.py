"""Native APIs: a client's request reaches an upstream that speaks its API untranslated.

A Responses client on an upstream with `apis: [chat, responses]` and a Messages
client on a `kind: anthropic` upstream: the upstream gets the client's body (the
model name and credentials its own), the client gets the upstream's answer byte
for byte, plain and streamed, and the router still records usage and cost, keeps
`previous_response_id` working, caches what has a chat form, and falls back to a
chat-only target with today's translation. Driven by the official SDKs against
real HTTP fakes on loopback (`tests/scripted.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel
from scripted import AnthropicUpstream, ResponsesUpstream, ScriptedUpstream
from servers import serve

from router.app import create_app
from router.formats.responses import render_response
from router.formats.responses_upstream import chat_from_response, native_request

POLICY = """
version: 1
upstreams:
  native:
    base_url: {native}/v1
    model: native-model
    api_key: sk-native-upstream
    apis: [chat, responses]
    retries: 0
    timeouts: {{connect: 1, first_byte: 2, read: 2, total: 5}}
  local:
    base_url: {local}/v1
    model: small-local
    retries: 0
  claude:
    kind: anthropic
    base_url: {claude}/v1
    model: claude-sonnet-4-5
    api_key: sk-ant-upstream
    price: {{input: 3, output: 15}}
models: [auto, local-only, claude]
routes:
  - name: to-local
    match: {{model: local-only}}
    target: local
  - name: to-claude
    match: {{model: claude}}
    target: claude
default:
  target: native
  fallbacks: [local]
record: {{path: {records}, prompts: true}}
cache: {{enabled: true}}
"""


@dataclass
class Setup:
    url: str
    native: ResponsesUpstream
    local: ScriptedUpstream
    claude: AnthropicUpstream
    records_path: Path
    app: Any

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="sk-client", max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="sk-ant-client", max_retries=0)

    def records(self) -> list[dict[str, Any]]:
        deadline = time.time() + 5
        while self.app.runtime.in_flight and time.time() < deadline:
            time.sleep(0.01)
        self.app.runtime.sink.flush()
        return [json.loads(line) for line in self.records_path.read_text().splitlines()]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    native, local, claude = (
        ResponsesUpstream("native"),
        ScriptedUpstream("local"),
        AnthropicUpstream(),
    )
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve(fake, lifespan="off"))
                for name, fake in (("native", native), ("local", local), ("claude", claude))}  # fmt: skip
        records = tmp_path / "records.jsonl"
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY.format(records=records, **urls))
        app = create_app(str(policy), scorer_factory=None)
        yield Setup(stack.enter_context(serve(app)), native, local, claude, records, app)


# -- Responses ------------------------------------------------------------------------


def test_responses_create_reaches_a_responses_upstream_as_is(setup: Setup) -> None:
    client = setup.openai()
    raw = client.responses.with_raw_response.create(
        model="auto", instructions="Be brief.", input="Hello", max_output_tokens=50,
        truncation="auto", reasoning={"effort": "low"}, metadata={"k": "v"},
    )  # fmt: skip
    # The client reads the upstream's bytes, a field the router does not know included.
    assert raw.http_response.content == setup.native.sent[-1]
    answer = raw.parse()
    assert answer.output_text == "Native answer here" and answer.id.startswith("resp_up_")
    assert (
        answer.model_extra is not None
        and answer.model_extra["x_upstream_note"]["served_by"] == "native"
    )
    assert raw.headers["x-router-route"] == "native"
    # The upstream reads the client's body, only the model its own, with its own key.
    sent = setup.native.responses_calls()[-1]
    assert sent.path == "/v1/responses"
    assert sent.body == {
        "model": "native-model", "instructions": "Be brief.", "input": "Hello",
        "max_output_tokens": 50, "truncation": "auto", "reasoning": {"effort": "low"},
        "metadata": {"k": "v"},
    }  # fmt: skip
    assert sent.headers["authorization"] == "Bearer sk-native-upstream"
    assert not setup.native.chat_calls()
    record = setup.records()[-1]
    assert record["dialect"] == "responses" and record["route"] == "native"
    assert record["upstream_model"] == "native-model" and record["status"] == 200
    assert (record["tokens_in"], record["tokens_out"]) == (11, 4)
    assert record["answer"] == "Native answer here"


def test_responses_stream_is_relayed_event_by_event(setup: Setup) -> None:
    body = {"model": "auto", "input": "Stream it", "stream": True, "truncation": "auto"}
    with httpx.stream("POST", setup.url + "/v1/responses", json=body) as response:
        got = b"".join(response.iter_raw())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert got == setup.native.sent[-1]  # every event as the upstream wrote it
    assert setup.native.responses_calls()[-1].body == {**body, "model": "native-model"}
    with setup.openai().responses.stream(model="auto", input="Stream it") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Native answer here" == final.output_text
    assert (
        final.id.startswith("resp_up_")
        and final.usage is not None
        and final.usage.output_tokens == 4
    )
    record = setup.records()[-1]
    assert record["stream"] and record["route"] == "native" and record["error"] is None
    assert (record["tokens_in"], record["tokens_out"]) == (11, 4)
    assert record["answer"] == "Native answer here"


class Weather(BaseModel):
    city: str
    sky: str


def test_responses_parse_sends_text_format_untranslated(setup: Setup) -> None:
    setup.native.text = json.dumps({"city": "Paris", "sky": "sunny"})
    parsed = setup.openai().responses.parse(
        model="auto", input="Weather in Paris", text_format=Weather
    )
    assert parsed.output_parsed == Weather(city="Paris", sky="sunny")
    sent = setup.native.responses_calls()[-1].body
    assert (
        sent["text"]["format"]["type"] == "json_schema"
        and sent["text"]["format"]["name"] == "Weather"
    )
    assert "response_format" not in sent and "messages" not in sent


def test_previous_response_id_is_expanded_from_the_router_store(setup: Setup) -> None:
    client = setup.openai()
    first = client.responses.create(model="auto", input="Hello")
    # The upstream's id, stored by the router: the next turn names it.
    second = client.responses.create(
        model="auto", input="And again?", previous_response_id=first.id
    )
    sent = setup.native.responses_calls()[-1].body
    assert "previous_response_id" not in sent
    assert [i.get("role") or i["type"] for i in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][1]["content"][0]["text"] == "Native answer here"
    assert sent["input"][2] == {"type": "message", "role": "user", "content": "And again?"}
    # The conversation is the router's: a turn routed to a chat-only target continues it.
    third = client.responses.create(
        model="local-only", input="Once more", previous_response_id=second.id
    )
    assert third.output_text == "Hello there friend"
    history = setup.local.chat_calls()[-1].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant", "user"]
    assert history[1]["content"] == "Native answer here"
    # An id the router never stored is not passed on for the upstream to guess at.
    calls = len(setup.native.calls)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="auto", input="x", previous_response_id="resp_elsewhere")
    assert info.value.code == "previous_response_not_found" and len(setup.native.calls) == calls


def test_fallback_from_a_responses_target_to_a_chat_target(setup: Setup) -> None:
    client = setup.openai()
    setup.native.fail_status, setup.native.fail_times = 500, 2
    answer = client.responses.create(model="auto", input="Hello")
    assert answer.output_text == "Hello there friend" and answer.id.startswith("resp_")
    assert setup.local.chat_calls()[-1].body["messages"] == [{"role": "user", "content": "Hello"}]
    with client.responses.stream(model="auto", input="Stream it") as stream:
        assert stream.get_final_response().output_text == "Hello there friend"
    records = setup.records()
    assert [(r["route"], r["tried"]) for r in records[-2:]] == [("local", ["native"])] * 2
    assert records[-1]["tokens_out"] == 3
    # Back on its feet, the Responses target answers natively again.
    assert client.responses.create(model="auto", input="Hello").output_text == "Native answer here"


def test_responses_upstream_errors_and_cuts(setup: Setup) -> None:
    client = setup.openai()
    # The upstream's own 4xx was written for this very API: the client reads it as sent.
    setup.native.fail_status, setup.native.fail_times = 400, 1
    setup.native.fail_body = json.dumps(
        {"error": {"message": "bad reasoning", "type": "invalid_request_error",
                   "param": "reasoning.effort", "code": "unsupported_value"}}
    ).encode()  # fmt: skip
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="auto", input="Hello")
    assert info.value.response.content == setup.native.fail_body
    assert info.value.code == "unsupported_value" and info.value.param == "reasoning.effort"
    # A stream that breaks off ends in an error event and response.failed.
    setup.native.misbehave = "cut"
    body = {"model": "auto", "input": "Cut me", "stream": True}
    with httpx.stream("POST", setup.url + "/v1/responses", json=body) as response:
        got = b"".join(response.iter_raw())
    assert got.startswith(setup.native.sent[-1])
    tail = [
        json.loads(line[6:])
        for line in got[len(setup.native.sent[-1]) :].splitlines()
        if line.startswith(b"data: ")
    ]
    assert [e["type"] for e in tail] == ["error", "response.failed"]
    assert tail[0]["code"] == "stream_cut" and tail[0]["sequence_number"] == 5
    assert (
        tail[1]["response"]["id"].startswith("resp_up_")
        and tail[1]["response"]["status"] == "failed"
    )
    assert setup.records()[-1]["error"] == "stream_cut"


def test_built_in_tools_reach_a_responses_upstream_and_are_refused_only_by_translation(
    setup: Setup,
) -> None:
    """Built-in tools (web search, as the Agents SDK sends) and a parameter the router
    does not know have no chat form: a Responses-speaking target takes them as is; a
    request bound for a chat-only target gets the translation's 400, which names the
    tool, and that target is never called. Neither is cached."""
    client = setup.openai()
    tools: Any = [{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {}}]
    answer = client.responses.create(
        model="auto", input="What happened today?", tools=tools,
        extra_body={"brand_new_option": 1},
    )  # fmt: skip
    assert answer.output_text == "Native answer here"
    sent = setup.native.responses_calls()[-1].body
    assert sent["tools"] == tools and sent["brand_new_option"] == 1
    # The same request again: no cache hit (its chat form is not the whole question).
    client.responses.create(model="auto", input="What happened today?", tools=tools)
    assert len(setup.native.responses_calls()) == 2
    rows = [r for r in setup.records() if r.get("dialect") == "responses"]
    assert [r["cache"] for r in rows[-2:]] == ["bypass", "bypass"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="local-only", input="What happened today?", tools=tools)
    error = caught.value.response.json()["error"]
    assert "web_search" in error["message"] and error["param"] == "tools[0].type"
    assert not setup.local.calls
    assert setup.records()[-1]["status"] == 400


def test_a_malformed_request_is_refused_whatever_the_target(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        setup.openai().responses.create(
            model="auto", input="Hi", tools=[{"type": "web_search"}], temperature=7
        )
    assert caught.value.response.json()["error"]["param"] == "temperature"
    assert not setup.native.responses_calls()


def test_a_native_answer_is_cached_as_chat(setup: Setup) -> None:
    client = setup.openai()
    ask = "What is the capital of France?"
    first = client.responses.with_raw_response.create(model="auto", temperature=0, input=ask)
    assert first.headers["x-router-cache"] == "miss"
    deadline = time.time() + 5
    while True:  # the answer is stored off the request's path
        chat = client.chat.completions.with_raw_response.create(
            model="auto", temperature=0, messages=[{"role": "user", "content": ask}]
        )
        if chat.headers["x-router-cache"] == "hit" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert chat.headers["x-router-cache"] == "hit"
    assert chat.parse().choices[0].message.content == "Native answer here"
    again = client.responses.with_raw_response.create(model="auto", temperature=0, input=ask)
    assert (
        again.headers["x-router-cache"] == "hit"
        and again.parse().output_text == "Native answer here"
    )
    assert len(setup.native.responses_calls()) == 1


# -- Anthropic Messages -----------------------------------------------------------------

SYSTEM = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]


def test_messages_reach_an_anthropic_upstream_as_is(setup: Setup) -> None:
    client = setup.anthropic()
    raw = client.messages.with_raw_response.create(
        model="claude", max_tokens=100, system=SYSTEM,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Hi"}], service_tier="auto",
    )  # fmt: skip
    assert raw.http_response.content == setup.claude.sent[-1]
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour from Claude"
    assert message.model_extra is not None and message.model_extra["x_upstream_note"] == "kept"
    sent = setup.claude.calls[-1]
    # `cache_control` and `service_tier` are dropped by the translation; here they arrive.
    assert sent.body == {
        "model": "claude-sonnet-4-5", "max_tokens": 100, "system": SYSTEM,
        "messages": [{"role": "user", "content": "Hi"}], "service_tier": "auto",
    }  # fmt: skip
    assert sent.headers["x-api-key"] == "sk-ant-upstream" and sent.headers["anthropic-version"]
    assert "authorization" not in sent.headers
    record = setup.records()[-1]
    assert record["dialect"] == "anthropic" and record["route"] == "claude"
    assert (record["tokens_in"], record["tokens_out"]) == (7, 3)
    assert record["cost_usd"] == pytest.approx((7 * 3 + 3 * 15) / 1e6)
    assert record["answer"] == "Bonjour from Claude"


def test_server_tools_reach_an_anthropic_upstream_and_are_refused_only_by_translation(
    setup: Setup,
) -> None:
    """Anthropic's server tools, and the blocks a previous turn with them left in the
    conversation, reach a Messages-speaking upstream as is; bound for a chat-only
    target, the request gets the translation's 400 in Anthropic's format."""
    client = setup.anthropic()
    tools: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
    messages: Any = [
        {"role": "user", "content": "News?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
             "input": {"query": "news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "Nothing found."},
        ]},
        {"role": "user", "content": "Try again."},
    ]  # fmt: skip
    message = client.messages.create(model="claude", max_tokens=50, tools=tools, messages=messages)
    assert message.content[0].type == "text"
    sent = setup.claude.calls[-1].body
    assert sent["tools"] == tools and sent["messages"] == messages

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="local-only", max_tokens=50, tools=tools, messages=messages)
    body = caught.value.response.json()
    # The first thing the translation cannot carry is named: the server tool's block.
    assert body["type"] == "error" and "'server_tool_use'" in body["error"]["message"]
    assert not setup.local.calls


def test_messages_stream_is_relayed_event_by_event(setup: Setup) -> None:
    body = {"model": "claude", "max_tokens": 20, "stream": True, "system": SYSTEM,
            "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
    with httpx.stream("POST", setup.url + "/v1/messages", json=body) as response:
        got = b"".join(response.iter_raw())
    assert got == setup.claude.sent[-1]
    assert setup.claude.calls[-1].body == {**body, "model": "claude-sonnet-4-5"}
    with setup.anthropic().messages.stream(
        model="claude", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Bonjour from Claude" and final.usage.output_tokens == 3
    assert final.model_extra is not None and final.model_extra["x_upstream_note"] == "kept"
    record = setup.records()[-1]
    assert (
        record["stream"] and record["error"] is None and record["answer"] == "Bonjour from Claude"
    )
    assert (record["tokens_in"], record["tokens_out"]) == (7, 3)


def test_a_cut_messages_stream_raises_in_the_sdk(setup: Setup) -> None:
    setup.claude.cut = True
    client = setup.anthropic()
    hello: Any = [{"role": "user", "content": "Hi"}]
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model="claude", max_tokens=20, messages=hello) as stream,
    ):
        "".join(stream.text_stream)
    assert "broke off" in str(info.value)
    record = setup.records()[-1]
    assert record["error"] == "stream_cut" and record["tokens_in"] == 7


def test_anthropic_upstream_errors_reach_a_messages_client_as_written(setup: Setup) -> None:
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad block"},
             "request_id": "req_ant_upstream"}  # fmt: skip
    setup.claude.fail = (400, json.dumps(error).encode())
    with pytest.raises(anthropic.BadRequestError) as info:
        setup.anthropic().messages.create(
            model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body == error


# -- the pure parts ---------------------------------------------------------------------


def test_native_request_spells_out_the_stored_conversation() -> None:
    body = {"model": "auto", "input": "Next", "previous_response_id": "resp_1", "store": True}
    history = [
        {"type": "message", "role": "user", "content": "First"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]},
    ]
    sent = native_request(body, "up-model", history)
    assert sent == {
        "model": "up-model", "store": True,
        "input": [history[0], history[2], {"type": "message", "role": "user", "content": "Next"}],
    }  # fmt: skip
    assert native_request(body, "m", None) == {**body, "model": "m"}  # no history: as is


def test_chat_from_response_only_where_faithful() -> None:
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": "Looking.", "refusal": None,
                                 "reasoning_content": "Think.",
                                 "tool_calls": [{"id": "call_1", "type": "function",
                                                 "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip
    response = render_response(completion, {"model": "m"})
    back = chat_from_response(response)
    assert back is not None
    assert back["choices"][0]["message"] == completion["choices"][0]["message"]  # type: ignore[index]
    assert back["choices"][0]["finish_reason"] == "tool_calls"
    assert back["usage"]["prompt_tokens"] == 3 and back["usage"]["completion_tokens"] == 2
    # Output the chat format has no room for: no chat form, so never cached.
    searched = {
        **response,
        "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}],
    }
    assert chat_from_response(searched) is None
    assert chat_from_response({**response, "status": "failed"}) is None
    cut = {
        **response,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    assert chat_from_response(cut)["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
