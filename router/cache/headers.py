"""The per-request cache switch, read from the request headers."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["cache_mode"]


def cache_mode(headers: Mapping[str, str]) -> str:
    """ "bypass" when the client asks not to be served from or stored in the cache.

    `Cache-Control: no-cache` or `no-store` (HTTP's own words for it) or
    `x-router-cache: bypass`; anything else is "use". Header names are matched
    case-insensitively so a plain dict works as well as Starlette's Headers.
    """
    for name, value in headers.items():
        key = name.lower()
        if key == "cache-control":
            directives = {d.strip().split("=")[0].lower() for d in value.split(",")}
            if directives & {"no-cache", "no-store"}:
                return "bypass"
        elif key == "x-router-cache" and value.strip().lower() == "bypass":
            return "bypass"
    return "use"
