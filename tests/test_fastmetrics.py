"""The request path's metric updates add what prometheus_client's public methods add."""

from __future__ import annotations

import math

import pytest
from prometheus_client import Counter, Histogram

from router.outcomes.fastmetrics import adder, observer

Samples = list[tuple[str, dict[str, str], float]]


def _samples(metric: Counter | Histogram) -> Samples:
    return [
        (s.name, s.labels, s.value)
        for family in metric.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def _same(a: Samples, b: Samples) -> None:
    assert len(a) == len(b)
    for (na, la, va), (nb, lb, vb) in zip(a, b, strict=True):
        assert (na, la) == (nb, lb)
        assert va == vb or (math.isnan(va) and math.isnan(vb))


AMOUNTS = [0.0, 1e-5, 0.0002, 0.00020001, 0.001, 0.05, 0.1, 3.0, 1e9, -1.0, float("nan")]


def test_observer_fills_the_same_buckets_and_sum() -> None:
    buckets = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
    public = Histogram("h_public", "h", ["u"], buckets=buckets, registry=None)
    fast = Histogram("h_fast", "h", ["u"], buckets=buckets, registry=None)
    observe = observer(fast.labels("a"))
    for amount in AMOUNTS:
        public.labels("a").observe(amount)
        observe(amount)
    renamed = [(n.replace("h_fast", "h_public"), lab, v) for n, lab, v in _samples(fast)]
    _same(renamed, _samples(public))


def test_adder_adds_and_refuses_negative_amounts_the_same() -> None:
    public = Counter("c_public", "c", registry=None)
    fast = Counter("c_fast", "c", registry=None)
    add = adder(fast)
    for amount in (1, 0.25, 0, 1e-9):
        public.inc(amount)
        add(amount)
    with pytest.raises(ValueError):
        public.inc(-1)
    with pytest.raises(ValueError):
        add(-1)
    renamed = [(n.replace("c_fast", "c_public"), lab, v) for n, lab, v in _samples(fast)]
    _same(renamed, _samples(public))


def test_without_the_private_attributes_the_public_methods_are_used() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def inc(self, amount: float) -> None:
            self.seen.append(amount)

        def observe(self, amount: float) -> None:
            self.seen.append(-amount)

    plain = Plain()
    adder(plain)(2.0)
    observer(plain)(3.0)
    assert plain.seen == [2.0, -3.0]
