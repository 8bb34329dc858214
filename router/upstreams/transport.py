"""The transport seam: which HTTP engine sits under the httpx API.

httpx's own transport (httpcore) is pure Python and was measured well below
aiohttp's C-accelerated engine on a proxy's hot path (see bench/overhead), so
the router defaults to aiohttp under the httpx API. Tests and users can pass any
`httpx.AsyncBaseTransport` (for example `httpx.MockTransport`) instead.
"""

from __future__ import annotations

import os

import httpx

__all__ = ["TRANSPORTS", "make_transport"]

TRANSPORTS = ("aiohttp", "httpx")


def make_transport(
    kind: str | None = None, *, max_connections: int = 256
) -> httpx.AsyncBaseTransport:
    kind = kind or os.environ.get("ROUTER_TRANSPORT", "aiohttp")
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, trust_env=False)
        return transport
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    raise ValueError(f"unknown transport {kind!r}; expected one of {', '.join(TRANSPORTS)}")
