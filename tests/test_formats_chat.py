"""The chat format's helpers (router/formats/openai_chat.py) and the error renderers.

The helpers gather functions spread over ingress, cache, scoring and replay; each
must keep the exact behaviour of the one it replaces (the conversation key picks
live rollout samples, the cache text keys stored answers), so they are compared
with the originals on arbitrary JSON.
"""

from __future__ import annotations

import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import RouterError, error_body
from router.formats import openai_chat as chat
from router.formats.errors import anthropic_error_type, error_event, error_json, sse_event
from router.ingress.request import ChatRequest
from router.replay.facts import conversation_key as replay_key
from router.upstreams.sse import event_data
from router.upstreams.usage import parse_json

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
parts = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["text", "image_url", "refusal", "input_text"]),
            "text": st.text(max_size=8) | st.integers(),
        }
    ),
    st.fixed_dictionaries({"text": st.text(max_size=8)}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries({"url": st.text(max_size=5)}),
        }
    ),
    st.text(max_size=5),
    scalars,
)
contents = st.one_of(scalars, st.text(max_size=20), st.lists(parts, max_size=4))
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(
            ["system", "developer", "user", "assistant", "tool", "function", "bad"]
        )
    },
    optional={"content": contents},
)


# The three text readings of message content differ on purpose, and these cases pin
# each one (they were checked equal, over generated content, to the functions they
# replaced when those were merged here).
TEXT_CASES = [
    ("plain", "plain", "plain", "plain"),
    ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb", "a\nb", "a\nb"),
    ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}], "a", "a", None),
    ([{"text": "untyped"}], "untyped", "untyped", None),
    (["bare"], "", "bare", None),
    ([{"type": "input_text", "text": "x"}], "x", "", None),
    ([{"type": "text", "text": 3}], "", "", None),
    (None, "", "", None),
    (7, "", "", None),
    ([], "", "", ""),
]


@pytest.mark.parametrize("content,message,scoring,cache", TEXT_CASES)
def test_text_readings(content: object, message: str, scoring: str, cache: str | None) -> None:
    assert chat.content_text(content) == message
    assert chat.message_text({"content": content}) == message
    assert chat.scoring_text(content) == scoring
    assert chat.cache_text(content) == cache


@pytest.mark.parametrize(
    "message,outcome",
    [
        ({"role": "user", "content": "hey"}, 3),
        ({"role": "user", "content": [{"type": "text", "text": "ab"}, {"type": "image_url"}]}, 2),
        ({"role": "assistant"}, 0),
        ("nope", (400, "'messages[1]' must be an object.", "messages[1]")),
        ({"role": "bad"}, (400, "'messages[1].role' must be one of assistant, developer, function, system, tool, user.", "messages[1].role")),
        ({"role": "user"}, (400, "'messages[1].content' is required.", "messages[1].content")),
        ({"role": "user", "content": [1]}, (400, "'messages[1].content[0]' must be an object with a 'type'.", "messages[1].content[0]")),
        ({"role": "user", "content": 5}, (400, "'messages[1].content' must be a string or an array of content parts.", "messages[1].content")),
    ],
)
def test_check_message(message: object, outcome: object) -> None:
    try:
        got: object = chat.check_message(message, 1)
    except RouterError as exc:
        got = (exc.status, exc.message, exc.param)
    assert got == outcome


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=3))
def test_conversation_key_matches_live_and_replay(conversation: list[dict[str, object]]) -> None:
    live = ChatRequest(
        body={}, model="m", messages=conversation, stream=False, include_usage=False, prompt_chars=0
    )
    key = chat.conversation_key(conversation[0])
    assert key == live.conversation_key
    assert (key, True) == replay_key({"request_id": "r", "messages": conversation})
    text = chat.content_text(conversation[0].get("content"))
    assert key == hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@pytest.mark.parametrize("raw", [b'{"a": 1}', b"[1]", b"nope", b'"s"', b"{}", b"[DONE]"])
def test_parse_object_matches_the_other_parsers(raw: bytes) -> None:
    assert chat.parse_object(raw) == parse_json(raw)
    assert chat.parse_object(raw) == event_data(raw)


def test_json_object_raises_the_same_400s() -> None:
    assert chat.json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(RouterError, match="not valid JSON"):
        chat.json_object(b"{")
    with pytest.raises(RouterError, match="must be a JSON object"):
        chat.json_object(b"[]")


def test_parse_arguments() -> None:
    assert chat.parse_arguments('{"a": [1]}') == {"a": [1]}
    assert chat.parse_arguments("") == {}
    assert chat.parse_arguments("  ") == {}
    assert chat.parse_arguments({"b": 2}) == {"b": 2}
    assert chat.parse_arguments('{"a": ') is None
    assert chat.parse_arguments("[1]") is None
    assert chat.parse_arguments(None) is None


def test_ids_carry_the_dialect_prefix_and_differ() -> None:
    a, b = chat.new_id("resp_"), chat.new_id("resp_")
    assert a.startswith("resp_") and a != b and len(a) == 5 + 32


def test_tool_results_hold_images_until_the_run_ends() -> None:
    results = chat.ToolResults()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    first = results.message("c1", [{"type": "text", "text": "ok"}, image])
    second = results.message("c2", [image])
    third = results.message("c3", "plain")
    assert first == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": [{"type": "text", "text": "ok"}],
    }
    assert second["content"] == ""
    assert third["content"] == "plain"
    assert results.flush() == [{"role": "user", "content": [image, image]}]
    assert results.flush() == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (504, "timeout_error"),
        (422, "invalid_request_error"),
        (502, "api_error"),
        (503, "api_error"),
    ],
)
def test_anthropic_error_types(status: int, kind: str) -> None:
    from anthropic.types import ErrorResponse

    assert anthropic_error_type(status) == kind
    body = orjson.loads(error_json(RouterError(status, "boom"), "anthropic"))
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}
    if status != 413:  # documented by Anthropic, missing from the SDK's union of types
        ErrorResponse.model_validate(body)


def test_openai_error_body_is_the_existing_one() -> None:
    exc = RouterError.bad_request("bad", "input")
    assert (
        error_json(exc, "chat")
        == exc.body()
        == error_body("bad", "invalid_request_error", "invalid_request", "input")
    )
    assert error_json(exc, "responses") == exc.body()


def test_stream_error_events_as_each_sdk_reads_them() -> None:
    from openai.types.responses import ResponseErrorEvent

    exc = RouterError.upstream("cloud: the stream broke off.", "stream_cut")
    chat_event = error_event(exc, "chat")
    assert chat_event == b"data: " + error_body(exc.message, "api_error", "stream_cut") + b"\n\n"

    responses_event = error_event(exc, "responses", sequence_number=7)
    head, data = responses_event.split(b"\n", 1)
    assert head == b"event: error"
    parsed = orjson.loads(data.removeprefix(b"data: "))
    assert ResponseErrorEvent.model_validate(parsed).sequence_number == 7

    anthropic_event = error_event(exc, "anthropic")
    assert anthropic_event.startswith(b"event: error\ndata: ")
    assert orjson.loads(anthropic_event.split(b"data: ", 1)[1])["error"]["type"] == "api_error"


def test_sse_event_framing() -> None:
    assert sse_event(None, {"a": 1}) == b'data: {"a":1}\n\n'
    assert sse_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
