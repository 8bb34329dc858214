"""Errors in each dialect the router speaks, as JSON bodies and as SSE events.

Parsers in this package raise `RouterError` whatever the dialect; the edge that
knows which API the client called renders it with `error_json` / `error_event`.
The OpenAI body is `router.errors.error_body`, reused as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from router.errors import RouterError, error_body

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "Dialect",
    "anthropic_error",
    "anthropic_error_type",
    "defer_untranslatable",
    "error_event",
    "error_json",
    "sse_event",
]

Dialect = Literal["chat", "responses", "anthropic"]

# https://docs.anthropic.com/en/api/errors: the type a client switches on, by status.
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """The Anthropic error type for `status`; other 4xx read as a bad request, 5xx as api_error."""
    known = ANTHROPIC_ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def error_json(exc: RouterError, dialect: Dialect) -> bytes:
    """The body of an error answer. Chat and Responses share the OpenAI shape."""
    if dialect == "anthropic":
        return orjson.dumps(anthropic_error(exc.status, exc.message))
    return error_body(exc.message, exc.type, exc.code, exc.param)


def sse_event(event: str | None, data: object) -> bytes:
    """One SSE event. Chat completions streams carry no `event:` line; the others do."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return payload if event is None else b"event: " + event.encode() + b"\n" + payload


def error_event(exc: RouterError, dialect: Dialect, sequence_number: int = 0) -> bytes:
    """An error inside a stream that has already started, in the form each SDK raises on.

    * chat: a bare `data: {"error": ...}` event (the openai SDK raises APIError on it);
    * responses: the typed `error` event (`ResponseErrorEvent`); a stream translator
      follows it with `response.failed` (see `ResponsesStream.fail`);
    * anthropic: `event: error` with the error object (the anthropic SDK raises).
    """
    if dialect == "chat":
        return b"data: " + error_json(exc, "chat") + b"\n\n"
    if dialect == "responses":
        return sse_event(
            "error",
            {
                "type": "error",
                "code": exc.code,
                "message": exc.message,
                "param": exc.param,
                "sequence_number": sequence_number,
            },
        )
    return sse_event("error", anthropic_error(exc.status, exc.message))


Body = Mapping[str, Any]


def defer_untranslatable(
    parse: Callable[[Body], dict[str, Any]],
    translatable: Callable[[Body], dict[str, Any] | None],
    body: Body,
) -> tuple[dict[str, Any], RouterError | None]:
    """`parse(body)`, or, when it refuses what only the client's own API can do, the
    parse of what `translatable` keeps of the body and that refusal (to answer only
    if no target takes the request as is). Malformed input still raises."""
    try:
        return parse(body), None
    except RouterError as refusal:
        kept = translatable(body)
        if kept is None:  # nothing was left out: the request itself is at fault
            raise
        try:
            return parse(kept), refusal
        except RouterError:
            raise refusal from None
