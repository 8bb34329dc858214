"""A tee in front of the record sink: the last decisions, and the spend counters.

Every decision record already passes through `Sink.emit`, on the event loop, once
the request is done; looking at it there costs a deque append and two counter
increments, and nothing on the request's own path changes. The status page reads
the deque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from router.outcomes.sinks import Sink
from router.outcomes.spend import note_spend
from router.policy.model import Policy

__all__ = ["RecentDecisions", "TeeSink"]


class RecentDecisions:
    """The last `size` chat decision records of this process (the dicts the sink got)."""

    def __init__(self, policy: Callable[[], Policy], size: int = 50) -> None:
        self._policy = policy
        self.records: deque[dict[str, Any]] = deque(maxlen=size)

    def observe(self, record: dict[str, Any]) -> None:
        # Feedback lines and pass-through calls carry a `kind`; decisions do not.
        if "kind" in record:
            return
        self.records.append(record)
        note_spend(record, self._policy())

    def latest(self, n: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        items = list(self.records)
        items.reverse()
        return items if n is None else items[:n]


class TeeSink:
    """A `Sink` that shows each record to `observe`, then hands it to `inner`."""

    def __init__(self, inner: Sink, observe: Callable[[dict[str, Any]], None]) -> None:
        self.inner = inner
        self._observe = observe

    def emit(self, record: dict[str, Any]) -> None:
        self._observe(record)
        self.inner.emit(record)

    def flush(self, timeout: float = 5.0) -> None:
        self.inner.flush(timeout)

    def close(self) -> None:
        self.inner.close()
