"""A ring buffer of the router's Prometheus counters, read every few seconds.

The status page reads the very counters `/metrics` exposes, so the two never
disagree. A reading is one `array('d')` of values in the order of a shared key
list (new label sets append to it), so an hour of 5-second readings and a day
of 1-minute readings take about a megabyte for a hundred series.

The counters belong to this process only: with several workers each has its own
history, and the page says so.
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

__all__ = ["CounterHistory", "Key", "Reading"]

# (sample name, label values in the metric's label order, `le` last for buckets)
Key = tuple[str, tuple[str, ...]]


@dataclass(slots=True)
class Reading:
    ts: float
    values: array[float]


@dataclass(slots=True)
class _Ring:
    every: float
    size: int
    items: deque[Reading] = field(default_factory=deque)

    def add(self, reading: Reading) -> None:
        if self.items and reading.ts - self.items[-1].ts < self.every * 0.5:
            self.items[-1] = reading  # a reading taken early replaces the last one
            return
        self.items.append(reading)
        while len(self.items) > self.size:
            self.items.popleft()


class CounterHistory:
    """Readings of `metrics` kept at two resolutions: `fine` and `coarse` seconds apart."""

    def __init__(
        self,
        metrics: Iterable[MetricWrapperBase],
        fine: float = 5.0,
        fine_size: int = 720,
        coarse: float = 60.0,
        coarse_size: int = 1440,
    ) -> None:
        self.metrics = tuple(metrics)
        self.keys: list[Key] = []
        self._index: dict[Key, int] = {}
        self._fine = _Ring(fine, fine_size)
        self._coarse = _Ring(coarse, coarse_size)

    @property
    def interval(self) -> float:
        return self._fine.every

    def read(self, now: float) -> Reading:
        """The counters' values right now (not stored)."""
        values = array("d", bytes(8 * len(self.keys)))
        for metric in self.metrics:
            for family in metric.collect():
                for sample in family.samples:
                    if sample.name.endswith(("_created", "_sum")):
                        continue
                    key = (sample.name, tuple(sample.labels.values()))
                    i = self._index.get(key)
                    if i is None:
                        i = self._index[key] = len(self.keys)
                        self.keys.append(key)
                        values.append(0.0)
                    values[i] = sample.value
        return Reading(now, values)

    def sample(self, now: float) -> Reading:
        reading = self.read(now)
        self._fine.add(reading)
        coarse = self._coarse.items
        if not coarse or now - coarse[-1].ts >= self._coarse.every:
            self._coarse.add(reading)
        return reading

    @property
    def oldest(self) -> Reading | None:
        found = [r.items[0] for r in (self._fine, self._coarse) if r.items]
        return min(found, key=lambda r: r.ts) if found else None

    def at(self, ts: float) -> Reading | None:
        """The newest stored reading taken at or before `ts`; else the oldest one.

        Before the first reading the page knows nothing, so a window reaching back
        past it starts at the first reading (the start of this page's history).
        """
        best: Reading | None = None
        for ring in (self._fine, self._coarse):
            items = ring.items
            if not items or items[0].ts > ts:
                continue
            i = bisect.bisect_right(items, ts, key=lambda r: r.ts) - 1
            if best is None or items[i].ts > best.ts:
                best = items[i]
        return best or self.oldest

    def delta(self, later: Reading, earlier: Reading | None) -> dict[Key, float]:
        """Counter increases between two readings, by key (zeros included: histogram
        quantiles need every bucket)."""
        out: dict[Key, float] = {}
        before = earlier.values if earlier is not None else array("d")
        for i, value in enumerate(later.values):
            out[self.keys[i]] = value - (before[i] if i < len(before) else 0.0)
        return out

    def gauges(self, reading: Reading, name: str) -> dict[tuple[str, ...], float]:
        return {
            labels: reading.values[i]
            for i, (key_name, labels) in enumerate(self.keys)
            if key_name == name and i < len(reading.values)
        }
