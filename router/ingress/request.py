"""Parse and validate an OpenAI chat-completions body into a `ChatRequest`.

Validation is deliberately shallow: the router checks what it needs to route and
what would otherwise surface as an upstream 400 or a router traceback. Fields it
does not know are passed through untouched, so new OpenAI parameters keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.errors import RouterError
from router.formats.openai_chat import check_message, conversation_key
from router.ingress.depth import json_depth_exceeds

__all__ = ["ChatRequest", "chat_request", "json_object", "parse_chat_request"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}
_POSITIVE_INTS = ("n", "max_tokens", "max_completion_tokens")
# The checked names in the order they are checked (the first invalid one is reported):
# a body names one or two of them, so only those are looked at.
_CHECKED = (*_NUMBER_RANGES, *_POSITIVE_INTS)
_CHECKED_SET = frozenset(_CHECKED)


# Not frozen: a frozen dataclass sets each field through `object.__setattr__`,
# five times the cost of a plain one, once per request. Nothing changes it once built.
@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    prompt_chars: int

    @property
    def conversation_key(self) -> str:
        """A stable hash of the first message: the same conversation keeps its key."""
        return conversation_key(self.messages[0])


DEFAULT_MAX_DEPTH = 64


def json_object(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong with it."""
    if json_depth_exceeds(raw, max_depth):
        raise RouterError.bad_request(
            f"Request body nests JSON too deep: the limit is {max_depth} levels."
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RouterError.bad_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RouterError.bad_request("Request body must be a JSON object.")
    return body


def _check_numbers(body: dict[str, Any], present: frozenset[str]) -> None:
    names = present if len(present) == 1 else [n for n in _CHECKED if n in present]
    for name in names:
        value = body[name]
        if value is None:
            continue
        span = _NUMBER_RANGES.get(name)
        if span is not None:
            low, high = span
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RouterError.bad_request(f"'{name}' must be a number.", name)
            if not low <= value <= high:
                raise RouterError.bad_request(f"'{name}' must be between {low} and {high}.", name)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RouterError.bad_request(f"'{name}' must be a positive integer.", name)


def parse_chat_request(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> ChatRequest:
    return chat_request(json_object(raw, max_depth))


def chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate a chat-completions body: the client's own, or one translated from
    another dialect (`router.formats`)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RouterError.bad_request("'model' is required and must be a string.", "model")

    messages = body.get("messages")
    if messages is None:
        raise RouterError.bad_request("'messages' is a required property.", "messages")
    if not isinstance(messages, list) or not messages:
        raise RouterError.bad_request("'messages' must be a non-empty array.", "messages")
    chars = 0
    for i, message in enumerate(messages):
        chars += check_message(message, i)

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RouterError.bad_request("'stream' must be a boolean.", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise RouterError.bad_request("'stream_options' must be an object.", "stream_options")
        if not stream:
            raise RouterError.bad_request(
                "'stream_options' is only allowed when 'stream' is true.", "stream_options"
            )
        include_usage = options.get("include_usage") is True

    present = _CHECKED_SET.intersection(body)
    if present:
        _check_numbers(body, present)

    return ChatRequest(
        body=body,
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        prompt_chars=chars,
    )
