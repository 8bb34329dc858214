"""The OpenAI Responses API translation (router/formats/responses.py).

Requests are checked field by field; answers and streams against the openai
SDK's own types and stream accumulator, and by property: a chat answer streamed
through `ResponsesStream` ends in exactly the object `render_response` gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from format_strategies import completions, texts
from hypothesis import given, settings
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from router.cache.scope import scope_for
from router.cache.sse import replay_sse
from router.errors import RouterError
from router.formats.openai_chat import conversation_key
from router.formats.responses import (
    ResponsesStream,
    input_items,
    parse_responses,
    previous_response_not_found,
    render_response,
    stored_items,
)
from router.scoring.text import prompt_text
from router.upstreams.sse import payloads

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
IMAGE = "data:image/png;base64,iVBORw0KGgo="


def chunks_of(completion: dict[str, Any]) -> list[dict[str, Any]]:
    stream = b"".join(replay_sse(completion, include_usage=True))
    return [json.loads(p) for p in payloads(stream) if p != b"[DONE]"]


def stream_events(
    completion: dict[str, Any], request: dict[str, Any], response_id: str
) -> list[dict[str, Any]]:
    translator = ResponsesStream(request, response_id=response_id)
    events = translator.start()
    for chunk in chunks_of(completion):
        events += translator.feed(chunk)
    events += translator.finish()
    assert translator.response == events[-1]["response"]
    return events


def bad(body: dict[str, Any]) -> RouterError:
    with pytest.raises(RouterError) as caught:
        parse_responses(body)
    assert caught.value.status == 400
    return caught.value


# ---------------------------------------------------------------- requests


def test_string_input_and_instructions() -> None:
    chat = parse_responses({"model": "gpt-x", "input": "Hello", "instructions": "Be brief."})
    assert chat == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
    }


def test_items_with_parts_history_and_tools() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "dev rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is here?"},
                    {"type": "input_image", "image_url": IMAGE, "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,AA",
                        "filename": "a.pdf",
                    },
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xxx"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "look",
                "arguments": '{"at": 1}',
            },
            {"type": "function_call", "call_id": "call_2", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "a photo"},
                    {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
                ],
            },
            {"role": "user", "content": "thanks"},
        ],
    }
    assert parse_responses(body)["messages"] == [
        {"role": "developer", "content": "dev rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is here?"},
                {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"at": 1}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "look", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": [{"type": "text", "text": "a photo"}],
        },
        # Chat tool messages hold text only: the image follows the tool results.
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": IMAGE, "detail": "auto"}}],
        },
        {"role": "user", "content": "thanks"},
    ]


def test_a_function_call_after_a_tool_answer_starts_a_new_assistant_turn() -> None:
    messages = parse_responses(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "a", "output": "1"},
                {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "b", "output": "2"},
            ],
        }
    )["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[1]["content"] is None


def test_parameters() -> None:
    chat = parse_responses(
        {
            "model": "m",
            "input": "hi",
            "tools": [
                {
                    "type": "function",
                    "name": "get",
                    "description": "Get it",
                    "parameters": {"type": "object"},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "function", "name": "get"},
            "parallel_tool_calls": False,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "out",
                    "schema": {"type": "object"},
                    "strict": True,
                },
                "verbosity": "low",
            },
            "max_output_tokens": 256,
            "temperature": 0.2,
            "top_p": 0.9,
            "reasoning": {"effort": "high", "summary": "auto"},
            "metadata": {"k": "v"},
            "user": "u1",
            "store": False,
            "truncation": "auto",
            "top_logprobs": 3,
            "stream": True,
            "service_tier": "auto",
        }
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get",
                    "description": "Get it",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        "verbosity": "low",
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "high",
        "metadata": {"k": "v"},
        "user": "u1",
        "logprobs": True,
        "top_logprobs": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "service_tier": "auto",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "required"),
        ("none", "none"),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "a"}],
            },
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "a"}}],
                },
            },
        ),
    ],
)
def test_tool_choice(choice: object, expected: object) -> None:
    assert (
        parse_responses({"model": "m", "input": "x", "tool_choice": choice})["tool_choice"]
        == expected
    )


def test_json_object_and_logprobs_include() -> None:
    chat = parse_responses(
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_object"}},
            "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
        }
    )
    assert chat["response_format"] == {"type": "json_object"}
    assert chat["logprobs"] is True


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x"}, "model", "invalid_request"),
        ({"model": "m"}, "input", "invalid_request"),
        ({"model": "m", "instructions": "only"}, "input", "invalid_request"),
        ({"model": "m", "input": 3}, "input", "invalid_request"),
        ({"model": "m", "input": ["x"]}, "input[0]", "invalid_request"),
        ({"model": "m", "input": "x", "frobnicate": 1}, "frobnicate", "unknown_parameter"),
        (
            {"model": "m", "input": "x", "tools": [{"type": "web_search"}]},
            "tools[0].type",
            "invalid_request",
        ),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation", "invalid_request"),
        ({"model": "m", "input": "x", "background": True}, "background", "invalid_request"),
        (
            {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]},
            "input[0].type",
            "invalid_request",
        ),
        (
            {"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]},
            "input[0].type",
            "invalid_request",
        ),
        (
            {"model": "m", "input": [{"role": "tool", "content": "x"}]},
            "input[0].role",
            "invalid_request",
        ),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            },
            "input[0].content[0]",
            "invalid_request",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "invalid_request",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "invalid_request",
        ),
        ({"model": "m", "input": "x", "temperature": 3}, "temperature", "invalid_request"),
        (
            {"model": "m", "input": "x", "max_output_tokens": 0},
            "max_output_tokens",
            "invalid_request",
        ),
        ({"model": "m", "input": "x", "top_logprobs": 30}, "top_logprobs", "invalid_request"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "text.format",
            "invalid_request",
        ),
        (
            {"model": "m", "input": "x", "tool_choice": {"type": "mcp"}},
            "tool_choice",
            "invalid_request",
        ),
        ({"model": "m", "input": "x", "stream": "yes"}, "stream", "invalid_request"),
    ],
)
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str, code: str) -> None:
    error = bad(body)
    assert (error.param, error.code, error.type) == (param, code, "invalid_request_error")


def test_previous_response_id_conversation() -> None:
    first = {"model": "m", "instructions": "sys", "input": "What is 2+2?", "store": True}
    completion = {
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
        ],
    }
    response = render_response(completion, first, response_id="resp_1")
    history = stored_items([], first, response)
    assert [i["type"] for i in history] == ["message", "message"]
    follow = {"model": "m", "input": "And 3+3?", "previous_response_id": "resp_1"}
    messages = parse_responses(follow, history)["messages"]
    # Instructions are not carried over, as with OpenAI.
    assert messages == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    # A chain keeps growing.
    second = render_response(completion, follow, response_id="resp_2")
    assert len(stored_items(history, follow, second)) == 4

    missing = previous_response_not_found("resp_x")
    assert (missing.status, missing.param, missing.code) == (
        400,
        "previous_response_id",
        "previous_response_not_found",
    )
    assert "resp_x" in missing.message


def test_input_items_normalises_a_string() -> None:
    assert input_items({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]
    assert input_items({}) == []


@settings(max_examples=100, deadline=None)
@given(texts, texts)
def test_the_same_prompt_scores_and_caches_as_chat(system: str, prompt: str) -> None:
    as_chat = {
        "model": "m",
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    }
    for via in (
        {"model": "m", "temperature": 0, "instructions": system, "input": prompt},
        {
            "model": "m",
            "temperature": 0,
            "input": [
                {"role": "system", "content": system},
                {"role": "user", "content": [{"type": "input_text", "text": prompt}]},
            ],
        },
    ):
        translated = parse_responses(via)
        assert prompt_text(translated["messages"]) == prompt_text(as_chat["messages"])
        assert conversation_key(translated["messages"][0]) == conversation_key(
            as_chat["messages"][0]
        )
        scope = {"tenant": "t", "upstream": "u", "model": "m"}
        assert scope_for(**scope, body=translated) == scope_for(**scope, body=as_chat)


# ---------------------------------------------------------------- answers


def test_render_response_full() -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "local-8b",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "See the docs.",
                    "reasoning_content": "Hmm.",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "start_index": 0,
                                "end_index": 3,
                                "title": "Docs",
                                "url": "https://d",
                            },
                        }
                    ],
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "open", "arguments": '{"u": "d"}'},
                        }
                    ],
                },
                "logprobs": {
                    "content": [
                        {
                            "token": "See",
                            "logprob": -0.5,
                            "bytes": [83, 101, 101],
                            "top_logprobs": [{"token": "See", "logprob": -0.5, "bytes": None}],
                        }
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    request = {
        "model": "auto",
        "input": "x",
        "tools": [{"type": "function", "name": "open"}],
        "max_output_tokens": 50,
    }
    response = render_response(completion, request, response_id="resp_abc")
    parsed = Response.model_validate(response)
    assert parsed.output_text == "See the docs."
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call"]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "Hmm."}]
    text = response["output"][1]["content"][0]
    assert text["annotations"] == [
        {
            "type": "url_citation",
            "start_index": 0,
            "end_index": 3,
            "title": "Docs",
            "url": "https://d",
        }
    ]
    assert text["logprobs"] == [
        {
            "token": "See",
            "bytes": [83, 101, 101],
            "logprob": -0.5,
            "top_logprobs": [{"token": "See", "bytes": [83, 101, 101], "logprob": -0.5}],
        }
    ]
    call = response["output"][2]
    assert (call["call_id"], call["name"], call["arguments"], call["id"]) == (
        "call_9",
        "open",
        '{"u": "d"}',
        "fc_abc02",
    )
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert (response["id"], response["object"], response["status"], response["model"]) == (
        "resp_abc",
        "response",
        "completed",
        "local-8b",
    )
    assert response["max_output_tokens"] == 50 and response["tools"][0]["name"] == "open"


def test_render_response_incomplete_and_refusal() -> None:
    completion = {
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Once upon"},
                "finish_reason": "length",
            }
        ],
    }
    response = render_response(completion, {"model": "m", "input": "x"})
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["id"].startswith("resp_")
    Response.model_validate(response)

    refused = {
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "No."},
                "finish_reason": "stop",
            }
        ],
    }
    content = render_response(refused, {"model": "m"})["output"][0]["content"]
    assert content == [{"type": "refusal", "refusal": "No."}]


@settings(max_examples=150, deadline=None)
@given(completions())
def test_rendered_responses_validate(completion: dict[str, Any]) -> None:
    response = render_response(completion, {"model": "m", "input": "x"})
    parsed = Response.model_validate(response)
    content = completion["choices"][0]["message"]["content"]
    assert parsed.output_text == (content or "")
    calls = completion["choices"][0]["message"].get("tool_calls") or []
    assert [(i.call_id, i.arguments) for i in parsed.output if i.type == "function_call"] == [
        (c["id"], c["function"]["arguments"]) for c in calls
    ]


# ---------------------------------------------------------------- streams


@settings(max_examples=150, deadline=None)
@given(completions())
def test_stream_ends_in_the_plain_render_and_the_sdk_reads_it(completion: dict[str, Any]) -> None:
    request = {"model": "auto", "input": "x", "stream": True}
    events = stream_events(completion, request, "resp_s1")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    final = events[-1]
    finish = completion["choices"][0]["finish_reason"]
    assert final["type"] == (
        "response.completed" if finish in ("stop", "tool_calls") else "response.incomplete"
    )
    assert final["response"] == render_response(completion, request, response_id="resp_s1")

    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    # Each item's done event says what the final object holds.
    done = {
        e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"
    }
    assert list(done.values()) == final["response"]["output"]
    if final["type"] == "response.completed":
        assert state._completed_response is not None
        assert state._completed_response.output_text == (
            completion["choices"][0]["message"]["content"] or ""
        )


def test_stream_event_sequence_for_text() -> None:
    request = {"model": "m", "input": "x", "stream": True}
    translator = ResponsesStream(request, response_id="resp_t")
    events = translator.start()
    base = {"id": "c", "object": "chat.completion.chunk", "created": 5, "model": "local"}
    for delta, finish in [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "stop"),
    ]:
        events += translator.feed(
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        )
    events += translator.feed(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }
    )
    events += translator.finish()
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {
        "type": "message",
        "id": "msg_t00",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    assert events[6]["text"] == "Hello"
    assert events[-1]["response"]["usage"]["total_tokens"] == 4
    assert events[-1]["response"]["model"] == "local"
    assert (
        events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    )


def test_empty_answer_still_streams_a_message() -> None:
    translator = ResponsesStream({"model": "m"}, response_id="resp_e")
    events = translator.start() + translator.feed(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    )
    events += translator.finish()
    for event in events:
        EVENTS.validate_python(event)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""
    completion = {
        "object": "chat.completion",
        "created": events[-1]["response"]["created_at"],
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
        ],
    }
    assert events[-1]["response"] == render_response(
        completion, {"model": "m"}, response_id="resp_e"
    )


def test_stream_failure_events() -> None:
    translator = ResponsesStream({"model": "m"}, response_id="resp_f")
    events = translator.start() + translator.feed(
        {"choices": [{"index": 0, "delta": {"content": "par"}}]}
    )
    events += translator.fail(RouterError.upstream("cloud: the stream broke off.", "stream_cut"))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    for event in events:
        EVENTS.validate_python(event)
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"] == "cloud: the stream broke off."
