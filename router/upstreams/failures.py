"""The client's error when no target could answer: the status a client can act on."""

from __future__ import annotations

import math
from collections.abc import Sequence

from router.errors import RouterError
from router.policy.model import HeaderRules
from router.upstreams.client import UpstreamFailure
from router.upstreams.headers import passed_response_headers

__all__ = ["exhausted"]


def exhausted(failures: Sequence[UpstreamFailure], rules: HeaderRules) -> RouterError:
    """429 when the targets are rate limited, 503 when their circuits are open, else 502.

    SDKs back off on 429 and 503 by `Retry-After`, so the wait the upstream asked
    for (or the open breaker's remaining time) goes with it; a rate limit also
    keeps the upstream's own `x-ratelimit-*` headers.
    """
    detail = "; ".join(f"{f.upstream}: {f.detail}" for f in failures) or "no upstream configured"
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    headers: dict[str, str] = {}
    if waits:
        headers["retry-after"] = str(max(math.ceil(min(waits)), 1))
    capacity = bool(failures) and all(f.status == 429 or f.kind == "circuit_open" for f in failures)
    if capacity and any(f.status == 429 for f in failures):
        limited = next((f for f in reversed(failures) if f.headers is not None), None)
        if limited is not None and limited.headers is not None:
            for key, value in passed_response_headers(rules, limited.headers.raw):
                headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        return RouterError(
            429,
            f"Rate limited upstream ({detail}).",
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if failures and all(f.kind == "circuit_open" for f in failures):
        return RouterError(
            503,
            f"No upstream is available now ({detail}).",
            type_="api_error",
            code="upstream_unavailable",
            headers=headers,
        )
    return RouterError(
        502, f"All upstreams failed ({detail}).", type_="api_error", code="upstream_unavailable"
    )
