"""A local correction from a team's labelled records: a kernel over their embeddings.

The frozen encoder's embedding says what a prompt is about far better than how
hard it is, so what a few hundred of a team's labels can teach is mostly local:
"prompts like these need the strong model more (or less) often than the head
thinks". A linear correction (`fit_warm`) cannot carve dozens of such pockets out
of a 384-d embedding from a few labels each; this smooths the labels over
neighbours instead:

    offset(e) = sum_j k(e, e_j) w_j / (shrink + sum_j k(e, e_j)),
    k(a, b) = exp(beta * (cos(a, b) - 1)),   w_j = scale * (t_j - mean t)

with `t_j` record j's target (`kernel_targets`). It is the empirical-Bayes mean
of a neighbourhood's target: with few similar records `shrink` pulls it to 0
(no correction), with many it is their mean. `beta` (bandwidth), `shrink` and
`scale` are chosen by cross-validation on the records themselves
(`choose_correction`), together with how far the linear correction may move,
and the plain linear correction wins unless the records show, by a margin,
that another candidate ranks their own held-out prompts better. Serving cost:
one `[d] x [d, m]` product and two `[m]` dots per prompt, in the ONNX graph
(`router.replay.onnxhead.kernel_head`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "KernelChoice",
    "KernelCorrection",
    "KernelGrid",
    "average_ranks",
    "choose_correction",
    "fold_ids",
    "kernel_offsets",
    "kernel_targets",
    "rank_gain",
]

FloatArray = npt.NDArray[np.float64]
AnyFloat = npt.NDArray[np.floating[Any]]


class _Rated(Protocol):
    @property
    def label(self) -> float: ...

    @property
    def strong_q(self) -> float | None: ...

    @property
    def weak_q(self) -> float | None: ...


@dataclass(frozen=True)
class KernelGrid:
    """What cross-validation picks from.

    A candidate is a linear correction (`fit_warm` at l2 x one of `l2_factors`)
    with or without a kernel (`betas` x `shrinks` x `scales`). The first factor
    without a kernel is the baseline, what `router train --no-kernel` fits; a
    candidate replaces it only if its held-out gain minus `margin` standard
    errors is positive, so a lucky one among the 121 others wins on noise only
    now and then (up to 1 time in 10 on shuffled labels of 100 records): the
    protection for traffic with no local structure to learn. A stiffer linear
    correction (factor 100) is offered because at a few hundred records its 385
    weights mostly fit noise, which the kernel then has to outvote.
    """

    betas: tuple[float, ...] = (2.0, 3.0, 5.0, 8.0)
    shrinks: tuple[float, ...] = (0.3, 1.0, 3.0)
    scales: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
    l2_factors: tuple[float, ...] = (1.0, 100.0)
    folds: int = 5
    repeats: int = 3
    margin: float = 2.0
    max_anchors: int = 4096


@dataclass(frozen=True)
class KernelCorrection:
    anchors: npt.NDArray[np.float32]  # [m, d] unit embeddings of the team's records
    weights: FloatArray  # [m] scale * centred target
    beta: float
    shrink: float

    @classmethod
    def fit(
        cls, embeddings: AnyFloat, targets: FloatArray, beta: float, shrink: float, scale: float
    ) -> KernelCorrection:
        return cls(
            anchors=np.ascontiguousarray(embeddings, dtype=np.float32),
            weights=scale * (targets - targets.mean()),
            beta=beta,
            shrink=shrink,
        )

    def offset(self, embeddings: AnyFloat) -> FloatArray:
        """The logit offset for each row of `embeddings` [n, d] (unit rows)."""
        sims = np.asarray(embeddings, dtype=np.float64) @ self.anchors.T.astype(np.float64)
        return kernel_offsets(sims, self.weights, self.beta, self.shrink)


@dataclass(frozen=True)
class KernelChoice:
    """What cross-validation saw; `params` is None when no kernel was kept."""

    l2_factor: float  # of the linear correction's l2
    params: tuple[float, float, float] | None  # beta, shrink, scale
    gain: float  # held-out rank objective, best candidate (kept or not) minus the baseline
    stderr: float
    records: int

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kept": self.params is not None,
            "l2_factor": self.l2_factor,
            "cv_gain": self.gain,
            "cv_stderr": self.stderr,
            "cv_records": self.records,
        }
        if self.params is not None:
            out.update(beta=self.params[0], shrink=self.params[1], scale=self.params[2])
        return out


def kernel_offsets(sims: FloatArray, weights: FloatArray, beta: float, shrink: float) -> FloatArray:
    """`sum_j k_ij w_j / (shrink + sum_j k_ij)` from cosine similarities `sims` [n, m]."""
    # beta * (cos - 1) <= 0: no overflow, and a far record weighs ~0, not NaN.
    k = np.exp(beta * (sims - 1.0))
    out: FloatArray = (k @ weights) / (shrink + k.sum(axis=1))
    return out


def kernel_targets(examples: Sequence[_Rated]) -> FloatArray:
    """What the kernel smooths: which answer was better, -1 / 0 / +1.

    With both answers rated it is the sign of strong - weak, so "the weak model
    was better" pulls a neighbourhood down, which the 0/1 label cannot say, and
    quality scales (0..1, judge points) do not matter. With one rating it is
    the label (1: strong needed, 0: weak was enough).
    """
    out = np.empty(len(examples))
    for i, ex in enumerate(examples):
        if ex.strong_q is not None and ex.weak_q is not None:
            out[i] = float(np.sign(ex.strong_q - ex.weak_q))
        else:
            out[i] = ex.label
    return out


def fold_ids(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """A seeded, balanced assignment of n records to folds."""
    out: npt.NDArray[np.int64] = np.random.default_rng(seed).permutation(n) % folds
    return out


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    sorted_v = values[order]
    ranks = np.empty(len(values))
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2
    return ranks


def _quantile_ranks(values: FloatArray) -> FloatArray:
    """Ranks scaled into (0, 1), ties sharing their mean rank."""
    out: FloatArray = (average_ranks(values) - 0.5) / len(values)
    return out


def rank_gain(score: FloatArray, centred_target: FloatArray) -> FloatArray:
    """Per-record terms of the rank objective, `t_i * quantile(score_i)`.

    APGR is the area under quality against share routed strong; a prompt at
    score quantile q goes strong at a share ~(1 - q) of the thresholds, so APGR
    is, up to constants, the sum of gain x quantile: this mean. Per-record terms
    give a standard error for the gate.
    """
    out: FloatArray = centred_target * _quantile_ranks(score)
    return out


LinearOOF = Callable[[npt.NDArray[np.int64], float], FloatArray]
Candidate = tuple[float, tuple[float, float, float] | None]  # l2 factor, kernel


def choose_correction(
    embeddings: AnyFloat, targets: FloatArray, linear_oof: LinearOOF, grid: KernelGrid
) -> KernelChoice:
    """Pick the linear stiffness and (beta, shrink, scale) by repeated k-fold CV.

    `linear_oof(folds, l2_factor)` returns, for fold ids [m], the out-of-fold
    logit of the linear correction (refitted without each fold), so a candidate
    is judged as it would serve: that head plus a kernel over the other folds'
    records, on records neither saw.
    """
    m = len(targets)
    emb = np.asarray(embeddings, dtype=np.float64)
    centred = targets - targets.mean()
    terms: dict[Candidate, FloatArray] = {}

    def add(key: Candidate, score: FloatArray) -> None:
        terms[key] = terms.get(key, np.zeros(m)) + rank_gain(score, centred) / grid.repeats

    for repeat in range(grid.repeats):
        folds = fold_ids(m, grid.folds, seed=repeat)
        offsets = _oof_offsets(emb, targets, folds, grid)
        for factor in grid.l2_factors:
            linear = linear_oof(folds, factor)
            add((factor, None), linear)
            for (beta, shrink), off in offsets.items():
                for scale in grid.scales:
                    add((factor, (beta, shrink, scale)), linear + scale * off)
    baseline: Candidate = (grid.l2_factors[0], None)
    best, best_lcb, best_gain, best_se = baseline, -np.inf, 0.0, 0.0
    for key, t in terms.items():
        if key == baseline:
            continue
        diff = t - terms[baseline]
        gain, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(m))
        # Lower confidence bound: a steady gain beats a large noisy one.
        if gain - grid.margin * se > best_lcb:
            best, best_lcb, best_gain, best_se = key, gain - grid.margin * se, gain, se
    # Kept only if it beats the baseline by `margin` standard errors.
    chosen = best if best_lcb > 0 else baseline
    return KernelChoice(
        l2_factor=chosen[0], params=chosen[1], gain=best_gain, stderr=best_se, records=m
    )


def _oof_offsets(
    emb: FloatArray, targets: FloatArray, folds: npt.NDArray[np.int64], grid: KernelGrid
) -> dict[tuple[float, float], FloatArray]:
    """Unscaled kernel offsets of each record from the other folds' records."""
    out = {(b, s): np.zeros(len(targets)) for b in grid.betas for s in grid.shrinks}
    for f in range(grid.folds):
        held, fit = folds == f, folds != f
        centred = targets[fit] - targets[fit].mean()
        sims = emb[held] @ emb[fit].T
        for beta in grid.betas:
            k = np.exp(beta * (sims - 1.0))
            mass, num = k.sum(axis=1), k @ centred
            for shrink in grid.shrinks:
                out[(beta, shrink)][held] = num / (shrink + mass)
    return out
