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

    A failure counts only if its call started after the last counted failure: the
    lookups that were in flight when a store went away all fail together, and they
    are one failure episode, not fifty doublings towards the cap. Callers take a
    token with `attempt()` before calling the store and hand it to `failure()`.
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
        self._episode = 0  # bumped by every counted failure and every success

    @property
    def failing(self) -> bool:
        return self._failures > 0

    def allow(self) -> bool:
        return self._clock() >= self._until

    def attempt(self) -> int:
        """A token for a call about to be made."""
        return self._episode

    def success(self) -> None:
        self._failures = 0
        self._until = 0.0
        self._episode += 1

    def failure(self, attempt: int) -> float:
        """Record the failure of the call that took `attempt`; returns how long the
        store is left alone from now."""
        now = self._clock()
        if attempt != self._episode:  # already counted by a call that ran alongside
            return max(0.0, self._until - now)
        self._failures += 1
        self._episode += 1
        delay = self._initial * 2.0 ** min(self._failures - 1, 63)
        # Jitter, so replicas that lost Redis together do not return together; the
        # cap applies after it, so it is never exceeded.
        delay = min(self._maximum, delay * random.uniform(0.8, 1.2))
        self._until = now + delay
        return delay
