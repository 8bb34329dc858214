"""A circuit breaker per upstream: closed, open after N failures, half-open probe."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Consecutive failures open the circuit for `cooldown` seconds.

    After the cooldown one request is let through as a probe (half-open); its
    success closes the circuit, its failure opens it again.
    """

    def __init__(
        self,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        # on_change(True) when the circuit opens, on_change(False) when it closes again.
        self.on_change = on_change
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        was_open = self.opened_at is not None
        self.failures = 0
        self.opened_at = None
        self.probing = False
        if was_open and self.on_change is not None:
            self.on_change(False)

    def failure(self) -> None:
        self.failures += 1
        was_open = self.opened_at is not None
        if self.probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self.probing = False
        if not was_open and self.opened_at is not None and self.on_change is not None:
            self.on_change(True)
