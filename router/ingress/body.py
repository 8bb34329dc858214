"""Read a request body from ASGI `receive`, bounded by a byte limit."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Receive

from router.ingress.errors import RouterError

__all__ = ["ClientGone", "read_body"]


class ClientGone(Exception):
    """The client disconnected before its request was read."""


def _too_large(limit: int) -> RouterError:
    return RouterError(
        413,
        f"Request body is larger than the limit of {limit} bytes.",
        code="request_too_large",
    )


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    length = headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _too_large(limit)
        except ValueError:
            raise RouterError.bad_request("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
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
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
