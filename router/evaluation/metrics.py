"""RouteLLM's routing metrics: the quality/cost curve, APGR and CPT(x%).

The definitions follow the routing data README (shared/data/routing/README.md):
11 quantile thresholds, `score >= threshold` goes to the strong model, nothing
goes strong at the top quantile, trapezoid area for APGR and `numpy.interp` on
the curve for CPT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router.evaluation.data import Benchmark

__all__ = [
    "QUANTILES",
    "Curve",
    "RouterMetrics",
    "apgr",
    "average_curves",
    "bootstrap_apgr",
    "break_ties",
    "cpt",
    "evaluate",
    "quality_cost_curve",
]

FloatArray = npt.NDArray[np.float64]

QUANTILES = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True)
class Curve:
    """Points of a quality/cost curve, sorted by `x`.

    `x` is the % of prompts sent to the strong model, `y` the mean quality.
    `weak` and `strong` are the qualities of always-weak and always-strong.
    """

    x: FloatArray
    y: FloatArray
    weak: float
    strong: float
    ties_broken: bool = False


@dataclass(frozen=True)
class RouterMetrics:
    apgr: float
    cpt50: float
    cpt80: float
    cpt20: float
    curve: Curve

    def as_dict(self) -> dict[str, object]:
        return {
            "apgr": self.apgr,
            "cpt20": self.cpt20,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "ties_broken": self.curve.ties_broken,
            "curve": {"x": self.curve.x.tolist(), "y": self.curve.y.tolist()},
        }


def break_ties(scores: FloatArray, ids: Sequence[str]) -> FloatArray:
    """Ranks of `scores`, with equal scores ordered by a hash of their id.

    On distinct scores the rank gives the same partition at every quantile
    threshold as the scores themselves, so only the tied groups change.
    """
    keys = [hashlib.sha256(i.encode("utf-8")).hexdigest() for i in ids]
    hash_rank = np.argsort(np.argsort(np.asarray(keys)))
    order = np.lexsort((hash_rank, scores))
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(len(scores), dtype=np.float64)
    return ranks


def quality_cost_curve(bench: Benchmark, scores: npt.ArrayLike) -> Curve:
    """The 11-point quality/cost curve of a router that gave `scores`."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(bench),):
        raise ValueError(f"expected {len(bench)} scores, got shape {s.shape}")
    edges = np.quantile(s, QUANTILES)
    tied = np.unique(edges).size < edges.size
    if tied:
        s = break_ties(s, bench.ids)
        edges = np.quantile(s, QUANTILES)
    xs = np.empty(edges.size)
    ys = np.empty(edges.size)
    for k, threshold in enumerate(edges):
        # At the top quantile RouteLLM tests `score > max`: nothing goes strong.
        strong = s > threshold if k == edges.size - 1 else s >= threshold
        xs[k] = 100.0 * strong.mean()
        ys[k] = np.where(strong, bench.strong, bench.weak).mean()
    order = np.argsort(xs, kind="stable")
    return Curve(
        x=xs[order],
        y=ys[order],
        weak=bench.weak_quality,
        strong=bench.strong_quality,
        ties_broken=tied,
    )


def average_curves(curves: Sequence[Curve]) -> Curve:
    """Point-wise mean of curves from the same benchmark."""
    first = curves[0]
    return Curve(
        x=np.mean([c.x for c in curves], axis=0),
        y=np.mean([c.y for c in curves], axis=0),
        weak=first.weak,
        strong=first.strong,
        ties_broken=any(c.ties_broken for c in curves),
    )


def apgr(curve: Curve) -> float:
    """Average performance gap recovered: normalised trapezoid area under the curve."""
    x = curve.x / 100.0
    auc = float(np.sum((x[1:] - x[:-1]) * (curve.y[1:] + curve.y[:-1]) / 2.0))
    return (auc - curve.weak) / (curve.strong - curve.weak)


def cpt(curve: Curve, fraction: float) -> float:
    """% of strong calls needed to recover `fraction` of the weak-to-strong gap."""
    target = curve.weak + fraction * (curve.strong - curve.weak)
    return float(np.interp(target, curve.y, curve.x))


def metrics_of(curve: Curve) -> RouterMetrics:
    return RouterMetrics(
        apgr=apgr(curve),
        cpt20=cpt(curve, 0.2),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        curve=curve,
    )


def evaluate(bench: Benchmark, scores: npt.ArrayLike) -> RouterMetrics:
    """All metrics of one router's `scores` on one benchmark."""
    return metrics_of(quality_cost_curve(bench, scores))


def bootstrap_apgr(
    bench: Benchmark, scores: npt.ArrayLike, samples: int = 200, seed: int = 0
) -> FloatArray:
    """APGR over `samples` resamples of the prompts (with replacement).

    Small benchmarks (MT Bench: 15 dev prompts) swing widely; the spread of
    these values says how much one figure can be trusted.
    """
    s = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty(samples)
    for k in range(samples):
        idx = rng.integers(0, len(bench), size=len(bench))
        sub = Benchmark(
            name=bench.name,
            ids=[f"{bench.ids[i]}#{j}" for j, i in enumerate(idx)],
            prompts=[bench.prompts[i] for i in idx],
            strong=bench.strong[idx],
            weak=bench.weak[idx],
        )
        if sub.strong_quality == sub.weak_quality:
            out[k] = np.nan
            continue
        out[k] = apgr(quality_cost_curve(sub, s[idx]))
    return out
