"""Small ASGI responses in the OpenAI format, and the disconnect wait."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.types import Receive, Scope, Send

from router.errors import RouterError, UpstreamFailure
from router.formats.errors import Dialect, error_json
from router.outcomes.record import DecisionRecord
from router.upstreams.usage import parse_json

__all__ = [
    "headers_of",
    "record_headers",
    "send_bytes",
    "send_error",
    "send_json",
    "send_raw_error",
    "wait_disconnect",
]


def headers_of(scope: Scope) -> dict[str, str]:
    """A request's headers by lower-case name (the last of repeated ones)."""
    names = _NAMES
    headers = {}
    for key, value in scope["headers"]:
        name = names.get(key)
        if name is None:
            name = key.decode("latin-1").lower()
            if len(names) < 1024:  # names are the client's to choose: keep the common ones
                names[key] = name
        headers[name] = value.decode("latin-1")
    return headers


# Raw header name -> its decoded lower-case form. Clients send the same few names on
# every request, so each is decoded and lowered once, not once per request.
_NAMES: dict[bytes, str] = {}


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send,
    status: int,
    data: object,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await send_bytes(send, status, orjson.dumps(data), headers)


async def send_error(
    send: Send,
    exc: RouterError,
    request_id: str = "",
    extra: Sequence[tuple[bytes, bytes]] = (),
    dialect: Dialect = "chat",
) -> None:
    """`exc` as an error answer in the client's dialect (OpenAI's format by default)."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    if request_id:
        headers.append((b"x-router-request-id", request_id.encode()))
    headers.extend(extra)
    await send_bytes(send, exc.status, error_json(exc, dialect), headers)


def record_headers(record: DecisionRecord) -> list[tuple[bytes, bytes]]:
    """On an error too, say which rule decided and which upstream answered or refused last."""
    headers: list[tuple[bytes, bytes]] = []
    route = record.route or (record.tried[-1] if record.tried else None)
    if route:
        headers.append((b"x-router-route", route.encode()))
    if record.rule:
        headers.append((b"x-router-rule", record.rule.encode()))
    return headers


async def send_raw_error(
    send: Send,
    failure: UpstreamFailure,
    record: DecisionRecord,
    passed: Sequence[tuple[bytes, bytes]] = (),
    dialect: Dialect = "chat",
    as_is: bool = False,
) -> None:
    """Relay an upstream's own 4xx: the request was at fault, and its message says why.

    A client whose request went to the upstream in its own API (`as_is`) reads the
    upstream's body as written (its key already taken out by `UpstreamClient`); one
    whose request was translated gets the same status and message in its own
    error format.
    """
    raw = failure.body or b""
    data = parse_json(raw)
    status = failure.status or 400
    if data is None or not as_is:
        error = data.get("error") if data is not None else None
        message = error.get("message") if isinstance(error, dict) else None
        raw = error_json(RouterError(status, str(message or failure.detail)), dialect)
    headers = [(b"x-router-request-id", record.request_id.encode()), *record_headers(record)]
    headers.extend(passed)
    await send_bytes(send, status, raw, headers)
