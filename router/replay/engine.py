"""The replay itself: one `decide()` per record and policy, then numpy for everything else.

Every routing decision comes from the live router's own `decide()`, so replay
equals live. What is vectorised is the arithmetic around it: prices, quality,
shares, and the threshold sweep, which needs only two extra `decide()` calls
per record (the swept rule forced to hold, and the rule removed) to price any
number of thresholds.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router.evaluation.metrics import QUANTILES, Curve, apgr, cpt
from router.features import Features
from router.policy.decide import CHARS_PER_TOKEN, Decision, RequestFacts, decide
from router.policy.model import Policy, Route
from router.replay.facts import facts_of, features_of
from router.replay.labels import Labels, labels_of

__all__ = [
    "DEFAULT_TOKENS_OUT",
    "PolicyRun",
    "Prepared",
    "Replay",
    "ReplayResult",
    "SweepRule",
    "prepare",
    "replay",
    "swept_rule",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Tick = Callable[[int], None]

#: Answer length assumed for a record without `tokens_out` when no record has one.
DEFAULT_TOKENS_OUT = 256
_OPS = ("lt", "lte", "gt", "gte")


@dataclass
class Prepared:
    """Per-record inputs, shared by every policy replayed on the same records."""

    ids: list[str]
    facts: list[RequestFacts]
    features: list[Features]
    scores: FloatArray  # nan where the record has no score
    tokens_in: FloatArray
    tokens_out: FloatArray
    tokens_estimated: int
    conversation_exact: int
    groups: list[str]
    labels: list[Labels]
    recorded_target: list[str | None]
    recorded_cost: FloatArray

    def __len__(self) -> int:
        return len(self.ids)


def prepare(
    records: Sequence[Mapping[str, Any]],
    *,
    default_tenant: str = "default",
    default_model: str = "auto",
    tokens_out: float | None = None,
) -> Prepared:
    n = len(records)
    facts: list[RequestFacts] = []
    features: list[Features] = []
    scores = np.full(n, np.nan)
    t_in = np.full(n, np.nan)
    t_out = np.full(n, np.nan)
    cost = np.full(n, np.nan)
    exact = 0
    groups: list[str] = []
    labels: list[Labels] = []
    recorded: list[str | None] = []
    for i, record in enumerate(records):
        f, is_exact = facts_of(record, default_tenant, default_model)
        facts.append(f)
        exact += is_exact
        feat = features_of(record)
        features.append(feat)
        if feat.score is not None:
            scores[i] = feat.score
        if isinstance(v := record.get("tokens_in"), int):
            t_in[i] = v
        if isinstance(v := record.get("tokens_out"), int):
            t_out[i] = v
        if isinstance(v := record.get("cost_usd"), int | float):
            cost[i] = v
        groups.append(str(record.get("group") or "all"))
        labels.append(labels_of(record))
        targets = record.get("targets")
        recorded.append(
            str(targets[0]) if isinstance(targets, list) and targets else record.get("route")
        )
    missing = np.isnan(t_in) | np.isnan(t_out)
    chars = np.asarray([f.prompt_chars for f in facts], dtype=np.float64)
    t_in = np.where(np.isnan(t_in), np.ceil(chars / CHARS_PER_TOKEN), t_in)
    if tokens_out is None:
        known = t_out[~np.isnan(t_out)]
        tokens_out = float(known.mean()) if known.size else DEFAULT_TOKENS_OUT
    t_out = np.where(np.isnan(t_out), tokens_out, t_out)
    return Prepared(
        ids=[f.request_id for f in facts],
        facts=facts,
        features=features,
        scores=scores,
        tokens_in=t_in,
        tokens_out=t_out,
        tokens_estimated=int(missing.sum()),
        conversation_exact=exact,
        groups=groups,
        labels=labels,
        recorded_target=recorded,
        recorded_cost=cost,
    )


@dataclass
class PolicyRun:
    """The decisions of one policy on every record, as indices into `Replay.names`."""

    policy: Policy
    target: IntArray
    rules: list[str]
    rollout_in: int
    rollout_out: int
    shadow: IntArray  # -1 where no shadow copy is sent
    on_classifier_error: int


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


@dataclass
class ReplayResult:
    report: dict[str, Any]
    changes: list[dict[str, Any]] = field(default_factory=list)


class Replay:
    """Replays one candidate policy (and optionally a baseline) over prepared records."""

    def __init__(
        self,
        prepared: Prepared,
        candidate: Policy,
        baseline: Policy | None = None,
        *,
        strong: str | None = None,
        weak: str | None = None,
        sweep_rule: str | None = None,
        tick: Tick | None = None,
    ) -> None:
        self.p = prepared
        self.candidate = candidate
        self.baseline = baseline
        names = set(candidate.upstreams)
        if baseline is not None:
            names |= set(baseline.upstreams)
        names |= {t for t in prepared.recorded_target if t}
        for lab in prepared.labels:
            names |= set(lab.quality)
        self.names = sorted(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        ranked = sorted(
            candidate.upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)
        )
        self.strong = strong or ranked[-1].name
        self.weak = weak or ranked[0].name
        self.sweep = swept_rule(candidate, sweep_rule)
        self._tick = tick
        self._done = 0
        n, u = len(prepared), len(self.names)
        self.quality = np.full((n, u), np.nan)
        for i, lab in enumerate(prepared.labels):
            for name, q in lab.quality.items():
                self.quality[i, self.index[name]] = q

    # -- decisions -----------------------------------------------------------------

    def _decide_all(self, policy: Policy, subset: IntArray | None = None) -> list[Decision]:
        facts_all: Sequence[RequestFacts] = self.p.facts
        feats: Sequence[Features | None] = (
            self.p.features if policy.scoring.enabled else [None] * len(self.p)
        )
        if subset is not None:
            facts_all = [facts_all[i] for i in subset.tolist()]
            feats = [feats[i] for i in subset.tolist()]
        out: list[Decision] = []
        append = out.append
        tick, step = self._tick, 4096
        for start in range(0, len(facts_all), step):
            chunk = slice(start, start + step)
            for facts, features in zip(facts_all[chunk], feats[chunk], strict=True):
                append(decide(policy, facts, features))
            self._done += len(out) - start
            if tick is not None:
                tick(self._done)
        return out

    def run_policy(self, policy: Policy, subset: IntArray | None = None) -> PolicyRun:
        decisions = self._decide_all(policy, subset)
        index = self.index
        target = np.fromiter((index.get(d.target, -1) for d in decisions), np.int64, len(decisions))
        shadow = np.fromiter(
            (index[d.shadow] if d.shadow else -1 for d in decisions), np.int64, len(decisions)
        )
        rollout = Counter(d.rollout for d in decisions)
        rules = [d.rule for d in decisions]
        return PolicyRun(
            policy=policy,
            target=target,
            rules=rules,
            rollout_in=rollout.get("in", 0),
            rollout_out=rollout.get("out", 0),
            shadow=shadow,
            on_classifier_error=sum(r == "on_classifier_error" for r in rules),
        )

    def recorded_run(self) -> IntArray:
        return np.asarray(
            [self.index[t] if t else -1 for t in self.p.recorded_target], dtype=np.int64
        )

    # -- arithmetic ----------------------------------------------------------------

    def prices(self, policy: Policy) -> tuple[FloatArray, FloatArray]:
        p_in = np.zeros(len(self.names))
        p_out = np.zeros(len(self.names))
        for name, up in policy.upstreams.items():
            p_in[self.index[name]] = up.price.input
            p_out[self.index[name]] = up.price.output
        return p_in, p_out

    def costs(self, target: IntArray, policy: Policy) -> FloatArray:
        p_in, p_out = self.prices(policy)
        safe = np.where(target >= 0, target, 0)
        cost = (self.p.tokens_in * p_in[safe] + self.p.tokens_out * p_out[safe]) / 1e6
        return np.where(target >= 0, cost, 0.0)

    def chosen_quality(self, target: IntArray) -> FloatArray:
        safe = np.where(target >= 0, target, 0)
        q = self.quality[np.arange(len(target)), safe]
        return np.where(target >= 0, q, np.nan)

    def paired_mask(self) -> BoolArray:
        """Records with a quality for every upstream of the candidate policy."""
        cols = [self.index[name] for name in self.candidate.upstreams]
        mask: BoolArray = ~np.isnan(self.quality[:, cols]).any(axis=1)
        return mask

    def summary(self, target: IntArray, policy: Policy) -> dict[str, Any]:
        n = len(target)
        cost = self.costs(target, policy)
        q = self.chosen_quality(target)
        covered = ~np.isnan(q)
        paired = self.paired_mask()
        counts = np.bincount(target[target >= 0], minlength=len(self.names))
        return {
            "requests": n,
            "share": {name: float(counts[i]) / max(n, 1) for i, name in enumerate(self.names)},
            "count": {name: int(counts[i]) for i, name in enumerate(self.names)},
            "cost_usd": float(cost.sum()),
            "cost_per_1k_usd": float(cost.mean() * 1000) if n else 0.0,
            "quality": float(q[covered].mean()) if covered.any() else None,
            "quality_coverage": float(covered.mean()) if n else 0.0,
            "quality_paired": float(q[paired].mean()) if paired.any() else None,
            "paired_records": int(paired.sum()),
        }

    def oracle(self) -> dict[str, Any] | None:
        """The best any router could do on the records rated for every upstream."""
        paired = self.paired_mask()
        if not paired.any():
            return None
        cols = np.asarray([self.index[name] for name in sorted(self.candidate.upstreams)])
        q = self.quality[np.ix_(paired, cols)]
        p_in, p_out = self.prices(self.candidate)
        cost = (
            self.p.tokens_in[paired, None] * p_in[cols][None]
            + self.p.tokens_out[paired, None] * p_out[cols][None]
        ) / 1e6
        best = q.max(axis=1, keepdims=True)
        # Among the upstreams that reach the best quality, take the cheapest.
        pick = np.where(q >= best, cost, np.inf).argmin(axis=1)
        chosen = cols[pick]
        counts = np.bincount(chosen, minlength=len(self.names))
        return {
            "records": int(paired.sum()),
            "quality": float(best.mean()),
            "cost_usd": float(cost[np.arange(len(pick)), pick].sum()),
            "share": {
                name: float(counts[self.index[name]]) / len(pick)
                for name in sorted(self.candidate.upstreams)
            },
        }

    # -- threshold sweep -----------------------------------------------------------

    def sweep_targets(self, actual: PolicyRun) -> tuple[IntArray, IntArray, BoolArray] | None:
        """Targets with the swept rule's score test forced true (a) and false (b).

        One of the two is the actual decision, so each record needs one more
        `decide()`: where the swept rule matched, `a` is the actual target and
        `b` comes from the policy without the rule; elsewhere removing the rule
        changes nothing, so `b` is actual and `a` comes from the rule with its
        score test dropped.
        """
        if self.sweep is None:
            return None
        rule = self.sweep
        forced = dataclasses.replace(
            rule.route, match=dataclasses.replace(rule.route.match, score=None)
        )
        matched = np.asarray([r == rule.route.name for r in actual.rules], dtype=np.bool_)
        a = actual.target.copy()
        b = actual.target.copy()
        if (~matched).any():
            idx = np.flatnonzero(~matched)
            policy = _replace_route(self.candidate, rule.index, forced)
            a[idx] = self.run_policy(policy, idx).target
        if matched.any():
            idx = np.flatnonzero(matched)
            b[idx] = self.run_policy(_replace_route(self.candidate, rule.index, None), idx).target
        scored = ~np.isnan(self.p.scores)
        # Self-check: at the policy's own threshold the sweep must give the live decisions.
        again = np.where(scored & rule.holds(self.p.scores, rule.value), a, b)
        again = np.where(scored, again, actual.target)
        if not np.array_equal(again, actual.target):
            raise AssertionError("sweep decisions disagree with decide() at the policy threshold")
        return a, b, scored

    def targets_at(
        self, ab: tuple[IntArray, IntArray, BoolArray], actual: IntArray, threshold: float
    ) -> IntArray:
        a, b, scored = ab
        assert self.sweep is not None
        holds = self.sweep.holds(self.p.scores, threshold)
        return np.where(scored, np.where(holds, a, b), actual)

    def sweep_points(
        self, ab: tuple[IntArray, IntArray, BoolArray], actual: IntArray, points: int = 21
    ) -> dict[str, Any] | None:
        if self.sweep is None:
            return None
        scored = ab[2]
        s = self.p.scores[scored]
        thresholds = sorted(
            {float(t) for t in np.quantile(s, np.linspace(0, 1, points))} | {self.sweep.value}
            if s.size
            else {self.sweep.value}
        )
        table = self.candidate.quantiles
        rows = []
        for t in thresholds:
            target = self.targets_at(ab, actual, t)
            row = self.summary(target, self.candidate)
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
        score = self.sweep.route.match.score
        return {
            "rule": self.sweep.route.name,
            "op": self.sweep.op,
            "current": self.sweep.value,
            "current_top_percent": 100.0 * float((s >= self.sweep.value).mean())
            if s.size
            else None,
            "written": {"top_percent": score.top_percent, "bottom_percent": score.bottom_percent}
            if score is not None
            else None,
            "quantiles": table.source if table is not None else None,
            "points": rows,
        }

    def eval_metrics(
        self, ab: tuple[IntArray, IntArray, BoolArray], actual: IntArray
    ) -> dict[str, Any]:
        """APGR and CPT per group, with thresholds at the 11 score quantiles like `router eval`.

        The curve comes from the sweep (so from `decide()`), not from the scores
        directly; only the metrics on it are `router.evaluation`'s.
        """
        if self.sweep is None:
            return {}
        rule = self.sweep
        s_col, w_col = self.index[self.strong], self.index[self.weak]
        scored = ab[2]
        usable = scored & ~np.isnan(self.quality[:, s_col]) & ~np.isnan(self.quality[:, w_col])
        groups = np.asarray(self.p.groups, dtype=object)
        out: dict[str, Any] = {}
        for group in dict.fromkeys(self.p.groups):
            mask = usable & (groups == group)
            if mask.sum() < 2:
                continue
            s = self.p.scores[mask]
            edges = np.quantile(s, QUANTILES)
            xs, ys = np.empty(edges.size), np.empty(edges.size)
            for k, q in enumerate(edges):
                top = k == edges.size - 1
                # router eval: score >= q goes strong, and nothing at the top edge.
                if rule.op in ("lt", "gte"):
                    t = float(np.nextafter(q, np.inf)) if top else float(q)
                else:
                    t = float(q) if top else float(np.nextafter(q, -np.inf))
                target = self.targets_at(ab, actual, t)[mask]
                xs[k] = 100.0 * float((target == s_col).mean())
                ys[k] = float(np.nanmean(self.quality[mask][np.arange(mask.sum()), target]))
            order = np.argsort(xs, kind="stable")
            curve = Curve(
                x=xs[order],
                y=ys[order],
                weak=float(self.quality[mask, w_col].mean()),
                strong=float(self.quality[mask, s_col].mean()),
                ties_broken=bool(np.unique(edges).size < edges.size),
            )
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

    # -- the whole report ----------------------------------------------------------

    def run(self, change_sample: int = 50) -> ReplayResult:
        cand = self.run_policy(self.candidate)
        if self.baseline is not None:
            base_target = self.run_policy(self.baseline).target
            base_policy = self.baseline
            base_kind = "baseline policy"
        else:
            base_target = self.recorded_run()
            base_policy = self.candidate
            base_kind = "recorded decisions"
        changed = np.flatnonzero(cand.target != base_target)
        pairs: Counter[str] = Counter()
        changes: list[dict[str, Any]] = []
        for i in changed.tolist():
            before = self.names[base_target[i]] if base_target[i] >= 0 else None
            after = self.names[cand.target[i]]
            pairs[f"{before}->{after}"] += 1
            changes.append(
                {
                    "request_id": self.p.ids[i],
                    "before": before,
                    "after": after,
                    "rule": cand.rules[i],
                    "score": None if math.isnan(self.p.scores[i]) else float(self.p.scores[i]),
                }
            )
        ab = self.sweep_targets(cand)
        candidate_summary = self.summary(cand.target, self.candidate)
        shadow_cost = self.costs(cand.shadow, self.candidate)
        candidate_summary.update(
            rules=dict(Counter(cand.rules)),
            rollout={"in": cand.rollout_in, "out": cand.rollout_out},
            shadow_requests=int((cand.shadow >= 0).sum()),
            shadow_cost_usd=float(shadow_cost.sum()),
            on_classifier_error=cand.on_classifier_error,
        )
        baseline_summary = self.summary(base_target, base_policy)
        recorded_cost = self.p.recorded_cost
        baseline_summary["recorded_cost_usd"] = (
            float(np.nansum(recorded_cost)) if not np.isnan(recorded_cost).all() else None
        )
        labels = self.p.labels
        n = len(self.p)
        scores = self.p.scores[~np.isnan(self.p.scores)]
        lo, hi = (0.0, 1.0)
        if scores.size and (scores.min() < 0 or scores.max() > 1):
            lo, hi = float(scores.min()), float(scores.max())
        counts, edges = np.histogram(scores, bins=20, range=(lo, hi))
        groups = dict.fromkeys(self.p.groups)
        per_group: dict[str, Any] = {}
        if len(groups) > 1:
            g_arr = np.asarray(self.p.groups, dtype=object)
            for g in groups:
                m = g_arr == g
                per_group[g] = {
                    "requests": int(m.sum()),
                    "share": {
                        name: float((cand.target[m] == i).mean())
                        for i, name in enumerate(self.names)
                    },
                }
        report: dict[str, Any] = {
            "records": n,
            "upstreams": self.names,
            "strong": self.strong,
            "weak": self.weak,
            "compared_with": base_kind,
            "candidate": candidate_summary,
            "baseline": baseline_summary,
            "changes": {
                "count": len(changes),
                "share": len(changes) / max(n, 1),
                "by_pair": dict(pairs),
                "sample": changes[:change_sample],
            },
            "labels": {
                "labelled_records": sum(lab.labelled for lab in labels),
                "coverage": sum(lab.labelled for lab in labels) / max(n, 1),
                "paired_records": int(self.paired_mask().sum()),
                "by_source": dict(Counter(lab.source for lab in labels)),
                "feedback_entries": sum(lab.feedback for lab in labels),
                "shadow_pairs": sum(lab.shadow_pair for lab in labels),
            },
            "oracle": self.oracle(),
            "inputs": {
                "scored_records": int(scores.size),
                "tokens_estimated": self.p.tokens_estimated,
                "conversation_exact": self.p.conversation_exact,
            },
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "per_group": per_group,
            "sweep": self.sweep_points(ab, cand.target) if ab is not None else None,
            "eval": self.eval_metrics(ab, cand.target) if ab is not None else {},
        }
        return ReplayResult(report=report, changes=changes)


def replay(
    records: Sequence[Mapping[str, Any]],
    candidate: Policy,
    baseline: Policy | None = None,
    **options: Any,
) -> ReplayResult:
    """Prepare `records` and replay `candidate` (against `baseline`) in one call."""
    prepared = prepare(records, default_tenant=candidate.auth.default_tenant)
    return Replay(prepared, candidate, baseline, **options).run()
