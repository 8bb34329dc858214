"""Turn counter increases over a window into the page's figures."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from router.ui.history import Key

__all__ = ["by_label", "quantile", "quantiles_by"]


def by_label(delta: dict[Key, float], name: str, position: int) -> dict[str, float]:
    """Sum the increases of sample `name` grouped by its label at `position` (non-zero only:
    series of this process that did not move in the window are left out)."""
    out: dict[str, float] = defaultdict(float)
    for (key_name, labels), value in delta.items():
        if key_name == name:
            out[labels[position] if position < len(labels) else ""] += value
    return {k: v for k, v in out.items() if v}


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' `histogram_quantile` over (upper bound, cumulative count) pairs.

    Linear within a bucket; a rank in the +Inf bucket reports the largest finite
    bound, as Prometheus does. None without observations.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def quantiles_by(
    delta: dict[Key, float], name: str, qs: tuple[float, ...]
) -> dict[str, dict[str, float | None]]:
    """Quantiles of histogram `name` (its `_bucket` samples) per first label; "" when none."""
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (key_name, labels), value in delta.items():
        if key_name == f"{name}_bucket":
            group = labels[0] if len(labels) > 1 else ""
            buckets[group].append((float(labels[-1]), value))
    out: dict[str, dict[str, float | None]] = {}
    for group, pairs in buckets.items():
        out[group] = {f"p{round(q * 100)}": quantile(q, pairs) for q in qs}
    return out
