"""A circuit breaker per upstream: closed, open after N failures, half-open probe."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Consecutive failures open the circuit for `cooldown` seconds.

    After the cooldown one request is let through as a probe (half-open); its
    success closes the circuit, its failure opens it again. A probe that never
    reports (its request was cancelled) is abandoned, and a probe older than
    `probe_timeout` is given up on, so the circuit can never stay half-open for good.
    """

    def __init__(
        self,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        probe_timeout: float = 60.0,
    ) -> None:
        # on_change(True) when the circuit opens, on_change(False) when it closes again.
        self.on_change = on_change
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.probe_timeout = probe_timeout
        self.failures = 0
        self.opened_at: float | None = None
        self.probing_since: float | None = None
        # The status of the last failure (429 for a rate limit), for the client's error.
        self.last_status: int | None = None

    @property
    def probing(self) -> bool:
        return self.probing_since is not None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def remaining(self) -> float:
        """Seconds until the next probe may go (0 when one may go now)."""
        if self.opened_at is None:
            return 0.0
        return max(self.opened_at + self.cooldown - self.clock(), 0.0)

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state != "half-open":
            return False
        now = self.clock()
        if self.probing_since is None or now - self.probing_since >= self.probe_timeout:
            self.probing_since = now
            return True
        return False

    def abandon(self) -> None:
        """The probe was cancelled before it could report: let the next request probe."""
        self.probing_since = None

    def success(self) -> None:
        was_open = self.opened_at is not None
        self.failures = 0
        self.opened_at = None
        self.probing_since = None
        self.last_status = None
        if was_open and self.on_change is not None:
            self.on_change(False)

    def failure(self, status: int | None = None) -> None:
        self.failures += 1
        self.last_status = status
        was_open = self.opened_at is not None
        if self.probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self.probing_since = None
        if not was_open and self.opened_at is not None and self.on_change is not None:
            self.on_change(True)
