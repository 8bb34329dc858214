"""The embedded store: one process, LRU-bounded by entries and bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from router.cache.scope import Scope
from router.cache.store import Found, Record, Vector

__all__ = ["MemoryStore"]

# Dict, list and object headers of one entry, roughly; keeps the byte bound honest
# for tiny answers.
_OVERHEAD = 256


@dataclass(slots=True)
class _Entry:
    scope: Scope
    key: str
    prompt: str
    completion: bytes
    vector: Vector | None
    expires: float
    size: int


class _Index:
    """The vectors of one scope in one matrix; a removal moves the last row into the gap."""

    def __init__(self, dim: int) -> None:
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}
        self.matrix = np.empty((16, dim), dtype=np.float32)

    def add(self, key: str, vector: Vector) -> None:
        if key in self.rows:
            self.matrix[self.rows[key]] = vector
            return
        n = len(self.keys)
        if n == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.empty_like(self.matrix)])
        self.matrix[n] = vector
        self.rows[key] = n
        self.keys.append(key)

    def remove(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = self.keys.pop()
        if last != key:
            self.matrix[row] = self.matrix[len(self.keys)]
            self.keys[row] = last
            self.rows[last] = row

    def nearest(self, vector: Vector, similarity: float, limit: int) -> list[tuple[str, float]]:
        n = len(self.keys)
        if n == 0 or vector.shape[0] != self.matrix.shape[1]:
            return []
        sims = self.matrix[:n] @ vector
        above = np.flatnonzero(sims >= similarity)
        if len(above) > limit:
            above = above[np.argpartition(-sims[above], limit - 1)[:limit]]
        ranked = sorted(above.tolist(), key=lambda i: -float(sims[i]))
        return [(self.keys[i], float(sims[i])) for i in ranked]


class MemoryStore:
    """Exact keys in a dict, vectors in one numpy matrix per scope, one global LRU.

    A brute-force scan of a scope costs about 0.1 ms at 10k entries, the default
    bound, so there is no approximate index here.
    """

    name = "memory"

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._indexes: dict[str, _Index] = {}
        self._bytes = 0

    def _drop(self, entry: _Entry) -> None:
        del self._entries[(entry.scope.digest, entry.key)]
        self._bytes -= entry.size
        index = self._indexes.get(entry.scope.digest)
        if index is not None:
            index.remove(entry.key)
            if not index.keys:
                del self._indexes[entry.scope.digest]

    def _live(self, digest: str, key: str) -> _Entry | None:
        entry = self._entries.get((digest, key))
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(entry)
            return None
        self._entries.move_to_end((digest, key))
        return entry

    async def find(
        self, scope: Scope, key: str, vector: Vector | None, similarity: float, limit: int
    ) -> Found:
        exact = self._live(scope.digest, key)
        if exact is not None:
            return Found(exact=Record(exact.scope.digest, exact.prompt, exact.completion, 1.0))
        index = self._indexes.get(scope.digest)
        if vector is None or index is None:
            return Found()
        candidates: list[Record] = []
        for found_key, sim in index.nearest(vector, similarity, limit):
            entry = self._live(scope.digest, found_key)
            if entry is not None:
                candidates.append(Record(entry.scope.digest, entry.prompt, entry.completion, sim))
        return Found(candidates=tuple(candidates))

    async def put(
        self, scope: Scope, key: str, prompt: str, vector: Vector | None, completion: bytes
    ) -> None:
        size = len(completion) + 4 * len(prompt) + _OVERHEAD
        if vector is not None:
            size += vector.nbytes
        if size > self._max_bytes:
            return
        old = self._entries.get((scope.digest, key))
        if old is not None:
            self._drop(old)
        entry = _Entry(scope, key, prompt, completion, vector, self._clock() + self._ttl, size)
        self._entries[(scope.digest, key)] = entry
        self._bytes += size
        if vector is not None:
            index = self._indexes.get(scope.digest)
            if index is None or index.matrix.shape[1] != vector.shape[0]:
                index = self._indexes[scope.digest] = _Index(vector.shape[0])
            index.add(key, vector)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries.values())))

    async def stats(self, tenant: str | None) -> dict[str, Any]:
        entries = [e for e in self._entries.values() if tenant is None or e.scope.tenant == tenant]
        return {
            "store": self.name,
            "entries": len(entries),
            "bytes": sum(e.size for e in entries),
            "scopes": len({e.scope.digest for e in entries}),
            "tenants": len({e.scope.tenant for e in entries}),
            "max_entries": self._max_entries,
            "max_bytes": self._max_bytes,
        }

    async def clear(self, tenant: str | None) -> int:
        doomed = [e for e in self._entries.values() if tenant is None or e.scope.tenant == tenant]
        for entry in doomed:
            self._drop(entry)
        return len(doomed)

    async def close(self) -> None:
        return None
