"""What a cache store does. The stores know keys and vectors, not guards or policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from router.cache.scope import Scope

__all__ = ["Found", "Record", "Store", "Vector"]

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Record:
    """One stored answer as a store returns it."""

    digest: str  # the scope digest stored with the entry, checked again by the cache
    prompt: str
    completion: bytes  # the chat.completion JSON
    similarity: float


@dataclass(frozen=True, slots=True)
class Found:
    """An exact match, or semantic candidates above the threshold, best first."""

    exact: Record | None = None
    candidates: tuple[Record, ...] = ()


class Store(Protocol):
    name: str

    async def find(
        self, scope: Scope, key: str, vector: Vector | None, similarity: float, limit: int
    ) -> Found: ...

    async def put(
        self, scope: Scope, key: str, prompt: str, vector: Vector | None, completion: bytes
    ) -> None: ...

    async def stats(self, tenant: str | None) -> dict[str, Any]: ...

    async def clear(self, tenant: str | None) -> int: ...

    async def close(self) -> None: ...
