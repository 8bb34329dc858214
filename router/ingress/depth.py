"""How deep a JSON document nests, measured on its bytes before anything parses it.

orjson parses up to 1,024 levels but serialises only 254, so a body between the two
used to parse, then fail deep inside the router (forwarding, recording) as a 500.
Measuring first lets one limit hold for every later step.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["json_depth_exceeds"]

# A JSON string, escapes included, written as an unrolled loop so that a long string
# costs one linear scan and no backtracking.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEP = np.zeros(256, dtype=np.int32)
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when `raw` opens more than `limit` arrays/objects at once.

    Brackets inside strings do not count. On malformed JSON the answer may be off,
    which does not matter: the parser rejects such a body anyway.
    """
    opened = raw.count(b"[") + raw.count(b"{")
    if opened <= limit:  # the common case: too few brackets to nest that deep at all
        return False
    structure = _STRING.sub(b"", raw) if b'"' in raw else raw
    steps = _STEP[np.frombuffer(structure, dtype=np.uint8)]
    return bool(steps.size) and int(np.cumsum(steps).max()) > limit
