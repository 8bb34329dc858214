"""Request header limits at the ASGI layer.

`router serve` refuses oversized headers while parsing (router.serving); this check
holds the same line when the router runs as middleware in someone else's server.
"""

from __future__ import annotations

from collections.abc import Iterable

from router.errors import RouterError
from router.policy.model import Limits

__all__ = ["header_limit_error", "too_large"]


def too_large(limits: Limits, what: str) -> RouterError:
    return RouterError(
        431,
        f"Request headers are too large: {what} (limits: {limits.max_headers} headers, "
        f"{limits.max_header_bytes} bytes).",
        code="request_header_fields_too_large",
        headers={"connection": "close"},
    )


def header_limit_error(
    headers: Iterable[tuple[bytes, bytes]], limits: Limits
) -> RouterError | None:
    count = size = 0
    for name, value in headers:
        count += 1
        size += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
    if count > limits.max_headers:
        return too_large(limits, f"{count} headers")
    if size > limits.max_header_bytes:
        return too_large(limits, f"{size} bytes")
    return None
