"""Which headers cross the router: an upstream's back to the client, a client's on to the upstream.

Both directions are allow-lists from the policy (`headers:`), with names that may
never pass (credentials, hop-by-hop, cookies, the router's own `x-router-*`)
refused again here, whatever the policy says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from router.policy.model import NEVER_REQUEST, NEVER_RESPONSE, HeaderRules

__all__ = ["forwarded_request_headers", "passed_response_headers", "passthrough_response_headers"]

RawHeaders = list[tuple[bytes, bytes]]


def passed_response_headers(rules: HeaderRules, raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """The upstream response headers that `rules` let back to the client."""
    out: RawHeaders = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if rules.allows(name) and name not in NEVER_RESPONSE and not name.startswith("x-router-"):
            out.append((name.encode("latin-1"), value))
    return out


def passthrough_response_headers(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """A path the router does not interpret gets every header but the unsafe ones."""
    out: RawHeaders = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name in _PASSTHROUGH_NEVER or name.startswith("x-router-"):
            continue
        out.append((name.encode("latin-1"), value))
    return out


def forwarded_request_headers(rules: HeaderRules, headers: Mapping[str, str]) -> RawHeaders:
    """The client request headers that `rules` pass on to the upstream."""
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
        if rules.allows(name) and name not in NEVER_REQUEST
    ]


# The body is relayed byte for byte, so its type and length stay; cookies and
# hop-by-hop headers do not.
_PASSTHROUGH_NEVER = NEVER_RESPONSE - {"content-type", "content-length"}
