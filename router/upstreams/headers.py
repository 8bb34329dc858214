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
    verdicts = _verdicts(rules)
    for key, value in raw:
        name = verdicts.get(key, _UNSEEN)
        if name is _UNSEEN:
            name = _verdict(rules, key, verdicts)
        if name is not None:
            out.append((name, value))
    return out


# Per rules: each header name as received -> its lower-case form if it passes, else
# None. An upstream sends the same dozen names on every answer, so they are judged
# once; the table is bounded because names are the upstream's to choose.
_VERDICTS: dict[int, tuple[HeaderRules, dict[bytes, bytes | None]]] = {}
_UNSEEN = b"\0"


def _verdicts(rules: HeaderRules) -> dict[bytes, bytes | None]:
    entry = _VERDICTS.get(id(rules))
    if entry is None or entry[0] is not rules:
        _VERDICTS.clear()  # one policy is live at a time; let old rules go
        entry = _VERDICTS[id(rules)] = (rules, {})
    return entry[1]


def _verdict(rules: HeaderRules, key: bytes, verdicts: dict[bytes, bytes | None]) -> bytes | None:
    name = key.decode("latin-1").lower()
    passes = rules.allows(name) and name not in NEVER_RESPONSE and not name.startswith("x-router-")
    if len(verdicts) < 1024:
        verdicts[key] = name.encode("latin-1") if passes else None
    return name.encode("latin-1") if passes else None


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
    passes = _request_verdicts(rules)
    out: RawHeaders = []
    for name, value in headers.items():
        passed = passes.get(name)
        if passed is None:
            passed = rules.allows(name) and name not in NEVER_REQUEST
            if len(passes) < 1024:
                passes[name] = passed
        if passed:
            out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


# Per rules: each client header name -> whether it passes, judged once (clients send
# the same names on every request), as `_VERDICTS` does for the upstream's.
_REQUEST_VERDICTS: dict[int, tuple[HeaderRules, dict[str, bool]]] = {}


def _request_verdicts(rules: HeaderRules) -> dict[str, bool]:
    entry = _REQUEST_VERDICTS.get(id(rules))
    if entry is None or entry[0] is not rules:
        _REQUEST_VERDICTS.clear()  # one policy is live at a time; let old rules go
        entry = _REQUEST_VERDICTS[id(rules)] = (rules, {})
    return entry[1]


# The body is relayed byte for byte, so its type and length stay; cookies and
# hop-by-hop headers do not.
_PASSTHROUGH_NEVER = NEVER_RESPONSE - {"content-type", "content-length"}
