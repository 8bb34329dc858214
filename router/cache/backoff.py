"""When to try a failing store again: exponential backoff with jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Closed until a failure; then open for a delay that doubles on each further one.

    While open, callers skip the store instead of waiting on a dead server; the first
    call after the delay is the probe, and a success closes it again.
    """

    def __init__(
        self,
        initial_s: float,
        maximum_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._initial = initial_s
        self._maximum = maximum_s
        self._clock = clock
        self._failures = 0
        self._until = 0.0

    @property
    def failing(self) -> bool:
        return self._failures > 0

    def allow(self) -> bool:
        return self._clock() >= self._until

    def success(self) -> None:
        self._failures = 0
        self._until = 0.0

    def failure(self) -> float:
        """Record a failure; returns how long the store is left alone."""
        self._failures += 1
        delay: float = min(self._maximum, self._initial * 2.0 ** (self._failures - 1))
        # Jitter, so replicas that lost Redis together do not return together.
        delay *= random.uniform(0.8, 1.2)
        self._until = self._clock() + delay
        return delay
