"""Request ids: 128 random bits from the OS, as 32 hex digits.

One `os.urandom` call (a system call) per request cost more than the rest of
naming it; the bits are read 256 ids at a time instead, from the same source.
"""

from __future__ import annotations

import os

__all__ = ["request_id"]

_BATCH = 256
# Ids not yet handed out. `list.pop` is atomic, so threads (several event loops)
# never share one; two that refill at once only add more.
_unused: list[str] = []


def request_id() -> str:
    try:
        return _unused.pop()
    except IndexError:
        raw = os.urandom(16 * _BATCH).hex()
        _unused.extend(raw[i : i + 32] for i in range(0, len(raw), 32))
        return _unused.pop()
