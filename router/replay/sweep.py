"""The threshold sweep: a score rule's decisions at any threshold, priced from `decide()`.

Two extra `decide()` calls per record are enough to price any number of
thresholds: one with the swept rule's score test forced to hold, one with the
rule removed. Which of the two a record gets at a threshold is then a numpy
comparison of its score. `Replay` (router.replay.engine) owns the per-record
arithmetic; this module only asks it for decisions and summaries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router.evaluation.metrics import QUANTILES, Curve, apgr, cpt
from router.policy.model import Policy, Route

if TYPE_CHECKING:
    from router.replay.engine import PolicyRun, Replay

__all__ = ["Sweep", "SweepRule", "swept_rule"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_OPS = ("lt", "lte", "gt", "gte")


@dataclass(frozen=True)
class SweepRule:
    index: int
    route: Route
    op: str
    value: float

    def holds(self, scores: FloatArray, threshold: float) -> BoolArray:
        with np.errstate(invalid="ignore"):
            if self.op == "lt":
                return scores < threshold
            if self.op == "lte":
                return scores <= threshold
            if self.op == "gt":
                return scores > threshold
            return scores >= threshold


def swept_rule(policy: Policy, name: str | None = None) -> SweepRule | None:
    """The score rule to sweep: `name`, else the first route that matches on score."""
    for i, route in enumerate(policy.routes):
        if route.match.score is None or (name is not None and route.name != name):
            continue
        bounds = [(op, getattr(route.match.score, op)) for op in _OPS]
        given = [(op, v) for op, v in bounds if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"route '{route.name}': a sweep needs a score range with one bound, "
                f"not {', '.join(op for op, _ in given)}"
            )
        op, value = given[0]
        return SweepRule(i, route, op, float(value))
    if name is not None:
        raise ValueError(f"no route named '{name}' matches on score")
    return None


def _replace_route(policy: Policy, index: int, route: Route | None) -> Policy:
    routes = list(policy.routes)
    if route is None:
        del routes[index]
    else:
        routes[index] = route
    return dataclasses.replace(policy, routes=tuple(routes))


class Sweep:
    """The candidate's decisions with the swept rule's score test forced true (`a`) and false (`b`).

    One of the two is the actual decision, so each record needs one more
    `decide()`: where the swept rule matched, `a` is the actual target and `b`
    comes from the policy without the rule; elsewhere removing the rule changes
    nothing, so `b` is actual and `a` comes from the rule with its score test
    dropped.
    """

    def __init__(self, replay: Replay, rule: SweepRule, actual: PolicyRun) -> None:
        self.replay = replay
        self.rule = rule
        self.actual = actual.target
        self.scores = replay.p.scores
        self.scored: BoolArray = ~np.isnan(self.scores)
        self.a, self.b = self._forced_targets(actual)
        # Self-check: at the policy's own threshold the sweep must give the live decisions.
        if not np.array_equal(self.targets_at(rule.value), self.actual):
            raise AssertionError("sweep decisions disagree with decide() at the policy threshold")

    def _forced_targets(self, actual: PolicyRun) -> tuple[IntArray, IntArray]:
        rule, candidate = self.rule, self.replay.candidate
        forced = dataclasses.replace(
            rule.route, match=dataclasses.replace(rule.route.match, score=None)
        )
        matched = np.asarray([r == rule.route.name for r in actual.rules], dtype=np.bool_)
        a = actual.target.copy()
        b = actual.target.copy()
        if (~matched).any():
            idx = np.flatnonzero(~matched)
            policy = _replace_route(candidate, rule.index, forced)
            a[idx] = self.replay.run_policy(policy, idx).target
        if matched.any():
            idx = np.flatnonzero(matched)
            b[idx] = self.replay.run_policy(_replace_route(candidate, rule.index, None), idx).target
        return a, b

    def targets_at(self, threshold: float) -> IntArray:
        holds = self.rule.holds(self.scores, threshold)
        return np.where(self.scored, np.where(holds, self.a, self.b), self.actual)

    def points(self, points: int = 21) -> dict[str, Any]:
        """The candidate's summary at thresholds spread over the records' score quantiles."""
        rule, candidate = self.rule, self.replay.candidate
        s = self.scores[self.scored]
        thresholds = sorted(
            {float(t) for t in np.quantile(s, np.linspace(0, 1, points))} | {rule.value}
            if s.size
            else {rule.value}
        )
        table = candidate.quantiles
        rows = []
        for t in thresholds:
            row = self.replay.summary(self.targets_at(t), candidate)
            # The same threshold in the terms a policy author reads: the share of
            # these records scoring at or above it, and of the quantile table's traffic.
            rows.append(
                {
                    "threshold": t,
                    "top_percent": 100.0 * float((s >= t).mean()) if s.size else None,
                    "table_top_percent": table.top_percent(t) if table is not None else None,
                    **row,
                }
            )
        score = rule.route.match.score
        return {
            "rule": rule.route.name,
            "op": rule.op,
            "current": rule.value,
            "current_top_percent": 100.0 * float((s >= rule.value).mean()) if s.size else None,
            "written": {"top_percent": score.top_percent, "bottom_percent": score.bottom_percent}
            if score is not None
            else None,
            "quantiles": table.source if table is not None else None,
            "points": rows,
        }

    def eval_metrics(self) -> dict[str, Any]:
        """APGR and CPT per group, with thresholds at the 11 score quantiles like `router eval`.

        The curve comes from the sweep (so from `decide()`), not from the scores
        directly; only the metrics on it are `router.evaluation`'s.
        """
        replay = self.replay
        s_col, w_col = replay.index[replay.strong], replay.index[replay.weak]
        quality = replay.quality
        usable = self.scored & ~np.isnan(quality[:, s_col]) & ~np.isnan(quality[:, w_col])
        groups = np.asarray(replay.p.groups, dtype=object)
        out: dict[str, Any] = {}
        for group in dict.fromkeys(replay.p.groups):
            mask = usable & (groups == group)
            if mask.sum() < 2:
                continue
            curve = self._curve(mask, s_col, w_col)
            if curve.strong == curve.weak:
                continue
            out[group] = {
                "n": int(mask.sum()),
                "apgr": apgr(curve),
                "cpt20": cpt(curve, 0.2),
                "cpt50": cpt(curve, 0.5),
                "cpt80": cpt(curve, 0.8),
                "ties": curve.ties_broken,
                "weak_quality": curve.weak,
                "strong_quality": curve.strong,
                "curve": {"x": curve.x.tolist(), "y": curve.y.tolist()},
            }
        return out

    def _curve(self, mask: BoolArray, s_col: int, w_col: int) -> Curve:
        """Strong share against quality for the `mask` records, one point per score quantile."""
        quality = self.replay.quality
        edges = np.quantile(self.scores[mask], QUANTILES)
        xs, ys = np.empty(edges.size), np.empty(edges.size)
        for k, q in enumerate(edges):
            target = self.targets_at(self._eval_threshold(float(q), k == edges.size - 1))[mask]
            xs[k] = 100.0 * float((target == s_col).mean())
            ys[k] = float(np.nanmean(quality[mask][np.arange(mask.sum()), target]))
        order = np.argsort(xs, kind="stable")
        return Curve(
            x=xs[order],
            y=ys[order],
            weak=float(quality[mask, w_col].mean()),
            strong=float(quality[mask, s_col].mean()),
            ties_broken=bool(np.unique(edges).size < edges.size),
        )

    def _eval_threshold(self, q: float, top: bool) -> float:
        # router eval: score >= q goes strong, and nothing at the top edge.
        if self.rule.op in ("lt", "gte"):
            return float(np.nextafter(q, np.inf)) if top else q
        return q if top else float(np.nextafter(q, -np.inf))
