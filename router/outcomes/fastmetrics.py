"""Metric updates on the request path in fewer calls than prometheus_client's own.

`Counter.inc` is four Python calls (an observability check in two, the amount
check, the value's locked add) and `Histogram.observe` five plus a Python walk
over the buckets; a request makes five such updates. Once a child exists, the
observability check holds for good, so the request path keeps each child's value
`inc` (and a histogram's bucket `inc`s, the bucket found by bisection) and calls
those. The same values are added to: what `/metrics` exports is unchanged.

Where a prometheus_client version lacks the attributes used here, the public
methods are used instead.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = ["adder", "observer"]


def adder(child: Any) -> Callable[[float], None]:
    """`child.inc` for a counter without labels or a labelled counter's child."""
    inc = getattr(getattr(child, "_value", None), "inc", None)
    if inc is None:
        public: Callable[[float], None] = child.inc
        return public

    def add(amount: float) -> None:
        if amount < 0:
            child.inc(amount)  # refused, with prometheus_client's own error
        else:
            inc(amount)

    return add


def observer(child: Any) -> Callable[[float], None]:
    """`child.observe` for a histogram without labels or a labelled histogram's child."""
    try:
        bounds = tuple(child._upper_bounds)
        buckets = [bucket.inc for bucket in child._buckets]
        add_sum = child._sum.inc
    except AttributeError:
        public: Callable[[float], None] = child.observe
        return public
    if len(buckets) != len(bounds) or not bounds or bounds[-1] != float("inf"):
        public = child.observe
        return public

    def observe(amount: float) -> None:
        add_sum(amount)
        # The first bucket whose bound is >= amount; the last bound is +Inf. NaN
        # falls in none, as in `Histogram.observe`.
        if amount == amount:
            buckets[bisect_left(bounds, amount)](1)

    return observe
