"""Read a request body from ASGI `receive`, bounded by a byte limit."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Receive

from router.deadlines import Deadline
from router.errors import ClientGone, RouterError

__all__ = ["ClientGone", "read_body"]


def _too_large(limit: int) -> RouterError:
    return RouterError(
        413,
        f"Request body is larger than the limit of {limit} bytes.",
        code="request_too_large",
    )


def _too_slow(timeout_s: float) -> RouterError:
    # connection: close, since the rest of a body that is still trickling in would
    # otherwise be read as the next request on this connection.
    return RouterError(
        408,
        f"The request body did not arrive within {timeout_s:g} s.",
        code="request_timeout",
        headers={"connection": "close"},
    )


async def read_body(
    receive: Receive, headers: Mapping[str, str], limit: int, timeout_s: float | None = None
) -> bytes:
    """The whole body, within `limit` bytes and `timeout_s` seconds (None: no limit)."""
    length = headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _too_large(limit)
        except ValueError:
            raise RouterError.bad_request("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    try:
        with Deadline(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise _too_slow(timeout_s or 0.0) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
