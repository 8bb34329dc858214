"""The admin key that guards the operations surface (/metrics, /readyz's details)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["admin_allowed"]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def admin_allowed(admin_key: str | None, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when no key is configured, or the request carries it as
    `Authorization: Bearer <key>` or `x-admin-key: <key>`."""
    if not admin_key:
        return True
    expected = _digest(admin_key)
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                continue
        elif name == b"x-admin-key":
            given = value.decode("latin-1")
        else:
            continue
        # Digests compared in constant time: the comparison does not time the key.
        if hmac.compare_digest(_digest(given.strip()), expected):
            return True
    return False
