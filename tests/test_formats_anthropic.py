"""Anthropic Messages in (router/formats/anthropic.py) and an Anthropic upstream out
(router/formats/anthropic_upstream.py).

Field-by-field mappings, Anthropic-format 400s, and round trips by property over
generated conversations with tools, tool results and images; answers and streams
are checked against the anthropic SDK's own types and stream accumulator.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from format_strategies import anthropic_requests, completions, texts
from hypothesis import given, settings
from pydantic import TypeAdapter

from router.cache.scope import scope_for
from router.cache.sse import assemble_stream, replay_sse
from router.errors import RouterError
from router.formats.anthropic import AnthropicStream, count_tokens, parse_messages, render_message
from router.formats.anthropic_upstream import (
    ChatFromAnthropicStream,
    from_anthropic_message,
    to_anthropic_request,
)
from router.formats.errors import error_json
from router.formats.openai_chat import conversation_key
from router.scoring.text import prompt_text
from router.upstreams.sse import payloads

EVENTS: TypeAdapter[Any] = TypeAdapter(at.RawMessageStreamEvent)
THINKING = {
    "model": "claude",
    "max_tokens": 64,
    "messages": [],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


def chunks_of(completion: dict[str, Any]) -> list[dict[str, Any]]:
    stream = b"".join(replay_sse(completion, include_usage=True))
    return [json.loads(p) for p in payloads(stream) if p != b"[DONE]"]


def anthropic_events(
    completion: dict[str, Any], request: dict[str, Any], message_id: str = "msg_1"
) -> list[dict[str, Any]]:
    translator = AnthropicStream(request, message_id=message_id)
    events: list[dict[str, Any]] = []
    for chunk in chunks_of(completion):
        events += translator.feed(chunk)
    return events + translator.finish()


def assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Message the anthropic SDK builds from `events` (each validated on the way)."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] == "ping":  # the SDK skips pings before parsing
            continue
        snapshot = accumulate_event(
            event=EVENTS.validate_python(event), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot is not None
    return at.Message.model_validate(snapshot.to_dict()).model_dump(mode="json")


def bad(body: dict[str, Any]) -> RouterError:
    with pytest.raises(RouterError) as caught:
        parse_messages(body)
    assert caught.value.status == 400
    return caught.value


# ---------------------------------------------------------------- requests in


def test_parse_messages_maps_every_field() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Be exact.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                        "title": "spec.pdf",
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain doc"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "y"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "found",
                        "is_error": False,
                    },
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
        "tools": [
            {
                "name": "lookup",
                "description": "Look up",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "tool", "name": "lookup"},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "user-7"},
        "service_tier": "auto",
        "output_config": {
            "effort": "max",
            "format": {"type": "json_schema", "schema": {"type": "object"}},
        },
    }
    assert parse_messages(body) == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be exact."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "spec.pdf",
                        },
                    },
                    {"type": "text", "text": "plain doc"},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":"y"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "found"},
            {"role": "user", "content": [{"type": "text", "text": "Go on."}]},
        ],
        "max_tokens": 512,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\nHuman:"],
        "user": "user-7",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look up",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "reasoning_effort": "xhigh",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
        },
    }


def test_tool_results_with_errors_and_images() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ"}}
    chat = parse_messages(
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                        {"type": "tool_use", "id": "b", "name": "f", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "a",
                            "content": "disk full",
                            "is_error": True,
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "b",
                            "content": [{"type": "text", "text": "shot"}, image],
                        },
                        {"type": "text", "text": "what now?"},
                    ],
                },
            ],
        }
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ],
    }
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "Error: disk full"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "shot"}]},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ"}},
                {"type": "text", "text": "what now?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "none"}, "none", None),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: str, parallel: bool | None) -> None:
    chat = parse_messages(
        {
            "model": "c",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": choice,
        }
    )
    assert chat["tool_choice"] == expected
    assert chat.get("parallel_tool_calls") is parallel


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (8000, "medium"), (32000, "high")])
def test_thinking_budget_as_effort(budget: int, effort: str) -> None:
    body = {
        "model": "c",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }
    assert parse_messages(body)["reasoning_effort"] == effort
    body["thinking"] = {"type": "disabled"}
    assert "reasoning_effort" not in parse_messages(body)


def test_stream_asks_for_usage() -> None:
    chat = parse_messages(
        {
            "model": "c",
            "max_tokens": 1,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


OK_MESSAGES = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 1, "messages": OK_MESSAGES}, "model"),
        ({"model": "c", "messages": OK_MESSAGES}, "max_tokens"),
        ({"model": "c", "max_tokens": 0, "messages": OK_MESSAGES}, "max_tokens"),
        ({"model": "c", "max_tokens": 1}, "messages"),
        ({"model": "c", "max_tokens": 1, "messages": []}, "messages"),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "frequency_penalty": 1},
            "frequency_penalty",
        ),
        (
            {"model": "c", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user"}]}, "messages.0.content"),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"text": "x"}]}],
            },
            "messages.0.content.0",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ],
            },
            "messages.0.content.0.source",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"type": "search_result"}]}],
            },
            "messages.0.content.0.type",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"type": "tool_result"}]}],
            },
            "messages.0.content.0.tool_use_id",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}],
                    }
                ],
            },
            "messages.0.content.0.input",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}],
            },
            "messages.0.content.0.type",
        ),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "system": [{"type": "image"}]},
            "system.0",
        ),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "temperature": 1.5},
            "temperature",
        ),
        ({"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "top_k": -1}, "top_k"),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "stop_sequences": "x"},
            "stop_sequences",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": OK_MESSAGES,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools.0.type",
        ),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "tools": [{"name": "f"}]},
            "tools.0.input_schema",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": OK_MESSAGES,
                "tool_choice": {"type": "tool"},
            },
            "tool_choice.name",
        ),
        (
            {
                "model": "c",
                "max_tokens": 1,
                "messages": OK_MESSAGES,
                "thinking": {"type": "enabled"},
            },
            "thinking.budget_tokens",
        ),
        (
            {"model": "c", "max_tokens": 1, "messages": OK_MESSAGES, "metadata": {"user_id": 3}},
            "metadata.user_id",
        ),
    ],
)
def test_bad_requests_get_anthropic_errors(body: dict[str, Any], param: str) -> None:
    error = bad(body)
    assert error.param == param
    rendered = orjson.loads(error_json(error, "anthropic"))
    assert rendered["type"] == "error" and rendered["error"]["type"] == "invalid_request_error"
    assert at.ErrorResponse.model_validate(rendered).error.message == error.message


def test_count_tokens_estimate() -> None:
    body = {
        "model": "c",
        "system": "x" * 40,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "y" * 80},
                    {"type": "image", "source": {"type": "url", "url": "https://i"}},
                ],
            }
        ],
    }
    # (40 + 80) chars / 4 + one image; no max_tokens needed for counting.
    assert count_tokens(body) == {"input_tokens": 30 + 1600}
    at.MessageTokensCount.model_validate(count_tokens(body))
    with_tools = {**body, "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    assert count_tokens(with_tools)["input_tokens"] > count_tokens(body)["input_tokens"]


@settings(max_examples=100, deadline=None)
@given(texts, texts)
def test_the_same_prompt_scores_and_caches_as_chat(system: str, prompt: str) -> None:
    chat = {
        "model": "m",
        "max_tokens": 100,
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    }
    for content in (prompt, [{"type": "text", "text": prompt}]):
        translated = parse_messages(
            {
                "model": "m",
                "max_tokens": 100,
                "temperature": 0,
                "system": system,
                "messages": [{"role": "user", "content": content}],
            }
        )
        assert prompt_text(translated["messages"]) == prompt_text(chat["messages"])
        assert conversation_key(translated["messages"][0]) == conversation_key(chat["messages"][0])
        scope = {"tenant": "t", "upstream": "u", "model": "m"}
        assert scope_for(**scope, body=translated) == scope_for(**scope, body=chat)


# ---------------------------------------------------------------- answers out


def test_render_message_with_stop_sequence_named_by_vllm() -> None:
    completion = {
        "id": "c",
        "object": "chat.completion",
        "model": "local",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Done"},
                "finish_reason": "stop",
                "stop_reason": "END",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    }
    message = render_message(
        completion, {"model": "c", "stop_sequences": ["END"]}, message_id="msg_x"
    )
    assert message == {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "local",
        "content": [{"type": "text", "text": "Done"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {
            "input_tokens": 2,
            "output_tokens": 3,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 0,
        },
    }
    at.Message.model_validate(message)
    # Not one of the request's sequences (an EOS token id, say): an ordinary end of turn.
    assert render_message(completion, {"model": "c"})["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, reason: str) -> None:
    completion = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}
        ]
    }
    assert render_message(completion, {"model": "c"})["stop_reason"] == reason


def test_broken_tool_arguments_become_an_empty_input_and_ids_are_made() -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": '{"a": '}}
                    ],
                },
            }
        ]
    }
    block = render_message(completion, {"model": "c"})["content"][0]
    assert block["input"] == {} and block["id"].startswith("toolu_")


@settings(max_examples=150, deadline=None)
@given(completions())
def test_stream_reassembled_by_the_sdk_equals_the_plain_render(completion: dict[str, Any]) -> None:
    events = anthropic_events(completion, THINKING)
    assert events[0]["type"] == "message_start" and events[1] == {"type": "ping"}
    assert events[-1] == {"type": "message_stop"} and events[-2]["type"] == "message_delta"
    plain = at.Message.model_validate(
        render_message(completion, THINKING, message_id="msg_1")
    ).model_dump(mode="json")
    assert assemble(events) == plain


@settings(max_examples=100, deadline=None)
@given(completions())
def test_without_thinking_reasoning_is_left_out(completion: dict[str, Any]) -> None:
    request = {"model": "c", "max_tokens": 5, "messages": []}
    message = render_message(completion, request)
    assert all(b["type"] != "thinking" for b in message["content"])
    assert assemble(
        anthropic_events(completion, request, message["id"])
    ) == at.Message.model_validate(message).model_dump(mode="json")


def test_stream_failure_is_an_error_event() -> None:
    translator = AnthropicStream({"model": "c"})
    translator.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    [event] = translator.fail(RouterError.upstream("broke off"))
    assert event == {"type": "error", "error": {"type": "api_error", "message": "broke off"}}


# ---------------------------------------------------------------- anthropic upstream


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """What a Messages body means: system texts, and each turn (same-role turns
    merged) as tool results, then images, then the rest, in order. Images inside a
    tool result count as the user's, after the results (chat cannot hold them in a
    tool message); an error flag reads as the text the model sees."""
    system = body.get("system")
    system_texts = [system] if isinstance(system, str) else [b["text"] for b in system or ()]
    turns: list[tuple[str, list[Any]]] = []
    for message in body["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        results, moved, rest = [], [], []
        for block in blocks:
            if block["type"] == "tool_result":
                inner = block.get("content", "")
                inner = [{"type": "text", "text": inner}] if isinstance(inner, str) else inner
                words = [b["text"] for b in inner if b["type"] == "text" and b["text"]]
                if block.get("is_error"):
                    words = (
                        ["Error: " + words[0]]
                        if isinstance(block.get("content"), str)
                        else ["Error:", *words]
                    )
                results.append(("tool_result", block["tool_use_id"], tuple(words)))
                moved.extend(image(b) for b in inner if b["type"] == "image")
            elif block["type"] == "image":
                rest.append(image(block))
            elif block["type"] == "text":
                rest.append(("text", block["text"]))
            elif block["type"] == "tool_use":
                rest.append(
                    (
                        "tool_use",
                        block["id"],
                        block["name"],
                        json.dumps(block["input"], sort_keys=True),
                    )
                )
        items = results + moved + rest
        if turns and turns[-1][0] == message["role"]:
            turns[-1][1].extend(items)
        else:
            turns.append((message["role"], items))
    meaning = {
        k: body.get(k)
        for k in (
            "model",
            "max_tokens",
            "stop_sequences",
            "temperature",
            "tool_choice",
            "metadata",
            "tools",
        )
    }
    return {"system": system_texts, "turns": turns, **meaning}


def image(block: dict[str, Any]) -> tuple[str, str]:
    source = block["source"]
    if source["type"] == "url":
        return ("image", source["url"])
    return ("image", f"data:{source['media_type']};base64,{source['data']}")


@settings(max_examples=200, deadline=None)
@given(anthropic_requests())
def test_anthropic_to_chat_to_anthropic_keeps_the_meaning(body: dict[str, Any]) -> None:
    back = to_anthropic_request(parse_messages(body), body["model"], max_tokens=1)
    assert normalise(back) == normalise(body)


@settings(max_examples=150, deadline=None)
@given(completions())
def test_chat_answer_to_anthropic_and_back(completion: dict[str, Any]) -> None:
    back = from_anthropic_message(
        render_message(completion, THINKING), created=completion["created"]
    )
    choice, original = back["choices"][0], completion["choices"][0]
    assert choice["finish_reason"] == original["finish_reason"]
    message, before = choice["message"], original["message"]
    assert message["content"] == before["content"]
    assert message.get("reasoning_content") == before.get("reasoning_content")
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or []
    ] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in before.get("tool_calls") or []
    ]
    usage = completion["usage"]
    assert back["usage"] == {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {
            "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        },
    }


@settings(max_examples=150, deadline=None)
@given(completions())
def test_anthropic_stream_to_chat_chunks_assembles_to_the_plain_answer(
    completion: dict[str, Any],
) -> None:
    events = anthropic_events(completion, THINKING)
    translator = ChatFromAnthropicStream(include_usage=True, created=completion["created"])
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks += translator.feed(event)
    assert translator.done and chunks[-1]["choices"] == []
    assembled = assemble_stream([json.dumps(c).encode() for c in chunks] + [b"[DONE]"])
    assert assembled is not None
    plain = from_anthropic_message(
        render_message(completion, THINKING, message_id="msg_1"), created=completion["created"]
    )
    # The stream passes the model's JSON text on as it came; the plain answer is
    # re-serialised from Anthropic's parsed `input`: the same arguments, spaced apart.
    for answer in (assembled, plain):
        for call in answer["choices"][0]["message"].get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    assert assembled == plain


def test_to_anthropic_request_maps_every_field() -> None:
    chat = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Rules."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "See"},
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://i/x.png", "detail": "high"},
                    },
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JV",
                            "filename": "a.pdf",
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "developer", "content": "Late rule."},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 1.7,
        "top_p": 0.5,
        "user": "u",
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "F", "parameters": {"type": "object"}},
            },
            {"type": "function", "function": {"name": "g"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "o", "schema": {"type": "object"}},
        },
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 3,
        "frequency_penalty": 0.5,
        "logprobs": True,
    }
    assert to_anthropic_request(chat, "claude-sonnet") == {
        "model": "claude-sonnet",
        "system": [{"type": "text", "text": "Rules."}, {"type": "text", "text": "Late rule."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "See"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://i/x.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JV"},
                        "title": "a.pdf",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "42"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 1.0,
        "top_p": 0.5,
        "metadata": {"user_id": "u"},
        "tools": [
            {"name": "f", "description": "F", "input_schema": {"type": "object"}},
            {"name": "g", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "output_config": {
            "effort": "medium",
            "format": {"type": "json_schema", "schema": {"type": "object"}},
        },
        "stream": True,
    }


def test_to_anthropic_request_defaults_and_refusals() -> None:
    body = to_anthropic_request(
        {"model": "a", "messages": [{"role": "user", "content": "hi"}]}, "claude", max_tokens=1024
    )
    assert body == {
        "model": "claude",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1024,
    }
    with pytest.raises(RouterError) as caught:
        to_anthropic_request({"messages": [{"role": "user", "content": "x"}], "n": 2}, "claude")
    assert caught.value.param == "n"
    with pytest.raises(RouterError) as caught:
        to_anthropic_request(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "claude",
        )
    assert caught.value.param == "messages[0].content[0].type"
    with pytest.raises(RouterError):
        to_anthropic_request(
            {"messages": [{"role": "function", "content": "x", "name": "f"}]}, "claude"
        )


def test_from_anthropic_message_fields() -> None:
    message = {
        "id": "msg_9",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "redacted_thinking", "data": "x"},
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"k": [1]}},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "###",
        "usage": {
            "input_tokens": 5,
            "output_tokens": 7,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    }
    assert from_anthropic_message(message, created=1) == {
        "id": "msg_9",
        "object": "chat.completion",
        "created": 1,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": "###",
                "message": {
                    "role": "assistant",
                    "content": "ab",
                    "refusal": None,
                    "reasoning_content": "t",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"k":[1]}'},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 125,
            "completion_tokens": 7,
            "total_tokens": 132,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }


def test_anthropic_stream_error_raises() -> None:
    translator = ChatFromAnthropicStream()
    assert translator.feed({"type": "ping"}) == []
    with pytest.raises(RouterError) as caught:
        translator.feed(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        502,
        "overloaded_error",
        "Overloaded",
    )


def test_server_side_tool_block_arriving_whole() -> None:
    translator = ChatFromAnthropicStream()
    translator.feed(
        {
            "type": "message_start",
            "message": {"id": "m", "model": "c", "usage": {"input_tokens": 1, "output_tokens": 0}},
        }
    )
    [chunk] = translator.feed(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        }
    )
    assert chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


@settings(max_examples=80, deadline=None)
@given(completions())
def test_responses_client_routed_to_an_anthropic_upstream(completion: dict[str, Any]) -> None:
    """Responses in -> chat -> Anthropic out, and the Anthropic stream back as
    Responses events: the chain the lead wires for `apis: [anthropic]` targets."""
    from openai.types.responses import ResponseStreamEvent

    from router.formats.responses import ResponsesStream, parse_responses, render_response

    request = {
        "model": "auto",
        "instructions": "sys",
        "input": "hi",
        "stream": True,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }
    upstream_body = to_anthropic_request(parse_responses(request), "claude", max_tokens=256)
    assert upstream_body["system"] == "sys" and upstream_body["stream"] is True
    assert upstream_body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]

    # The Anthropic upstream's stream, as a real one would send this answer.
    upstream_events = anthropic_events(completion, THINKING)
    to_chat = ChatFromAnthropicStream(include_usage=True, created=completion["created"])
    to_responses = ResponsesStream(request, response_id="resp_chain")
    events = to_responses.start()
    for event in upstream_events:
        for chunk in to_chat.feed(event):
            events += to_responses.feed(chunk)
    events += to_responses.finish()
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event)
    plain = from_anthropic_message(
        render_message(completion, THINKING, message_id="msg_1"), created=completion["created"]
    )
    expected = render_response(plain, request, response_id="resp_chain")
    final = events[-1]["response"]
    for response in (final, expected):
        for item in response["output"]:
            if item["type"] == "function_call":
                item["arguments"] = json.loads(item["arguments"])
    assert final == expected
