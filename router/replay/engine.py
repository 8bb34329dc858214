"""The replay itself: one `decide()` per record and policy, then numpy for everything else.

Every routing decision comes from the live router's own `decide()`, so replay
equals live. What is vectorised is the arithmetic around it: prices, quality,
shares, and the threshold sweep, which needs only two extra `decide()` calls
per record (the swept rule forced to hold, and the rule removed) to price any
number of thresholds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router.features import Features
from router.policy.decide import CHARS_PER_TOKEN, Decision, RequestFacts, decide
from router.policy.model import Policy
from router.replay.facts import facts_of, features_of
from router.replay.labels import Labels, labels_of
from router.replay.sweep import Sweep, SweepRule, swept_rule

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

    # -- the whole report ----------------------------------------------------------

    def run(self, change_sample: int = 50) -> ReplayResult:
        cand = self.run_policy(self.candidate)
        base_kind, base_target, base_policy = self._baseline_run()
        changes, by_pair = self._changes(cand, base_target)
        sweep = Sweep(self, self.sweep, cand) if self.sweep is not None else None
        n = len(self.p)
        scores = self.p.scores[~np.isnan(self.p.scores)]
        report: dict[str, Any] = {
            "records": n,
            "upstreams": self.names,
            "strong": self.strong,
            "weak": self.weak,
            "compared_with": base_kind,
            "candidate": self._candidate_summary(cand),
            "baseline": self._baseline_summary(base_target, base_policy),
            "changes": {
                "count": len(changes),
                "share": len(changes) / max(n, 1),
                "by_pair": by_pair,
                "sample": changes[:change_sample],
            },
            "labels": _label_counts(self.p.labels, int(self.paired_mask().sum())),
            "oracle": self.oracle(),
            "inputs": {
                "scored_records": int(scores.size),
                "tokens_estimated": self.p.tokens_estimated,
                "conversation_exact": self.p.conversation_exact,
            },
            "histogram": _score_histogram(scores),
            "per_group": _per_group_shares(self.p.groups, self.names, cand.target),
            "sweep": sweep.points() if sweep is not None else None,
            "eval": sweep.eval_metrics() if sweep is not None else {},
        }
        return ReplayResult(report=report, changes=changes)

    def _baseline_run(self) -> tuple[str, IntArray, Policy]:
        """What the candidate is compared with: the baseline policy, else what was recorded."""
        if self.baseline is not None:
            return "baseline policy", self.run_policy(self.baseline).target, self.baseline
        return "recorded decisions", self.recorded_run(), self.candidate

    def _changes(
        self, cand: PolicyRun, base_target: IntArray
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Every record the candidate routes elsewhere, and their count per before->after."""
        pairs: Counter[str] = Counter()
        changes: list[dict[str, Any]] = []
        for i in np.flatnonzero(cand.target != base_target).tolist():
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
        return changes, dict(pairs)

    def _candidate_summary(self, cand: PolicyRun) -> dict[str, Any]:
        out = self.summary(cand.target, self.candidate)
        out.update(
            rules=dict(Counter(cand.rules)),
            rollout={"in": cand.rollout_in, "out": cand.rollout_out},
            shadow_requests=int((cand.shadow >= 0).sum()),
            shadow_cost_usd=float(self.costs(cand.shadow, self.candidate).sum()),
            on_classifier_error=cand.on_classifier_error,
        )
        return out

    def _baseline_summary(self, target: IntArray, policy: Policy) -> dict[str, Any]:
        out = self.summary(target, policy)
        recorded = self.p.recorded_cost
        out["recorded_cost_usd"] = (
            float(np.nansum(recorded)) if not np.isnan(recorded).all() else None
        )
        return out


def _label_counts(labels: Sequence[Labels], paired_records: int) -> dict[str, Any]:
    n = len(labels)
    return {
        "labelled_records": sum(lab.labelled for lab in labels),
        "coverage": sum(lab.labelled for lab in labels) / max(n, 1),
        "paired_records": paired_records,
        "by_source": dict(Counter(lab.source for lab in labels)),
        "feedback_entries": sum(lab.feedback for lab in labels),
        "shadow_pairs": sum(lab.shadow_pair for lab in labels),
    }


def _per_group_shares(groups: list[str], names: list[str], target: IntArray) -> dict[str, Any]:
    """The candidate's shares per record group; empty when there is one group."""
    distinct = dict.fromkeys(groups)
    if len(distinct) <= 1:
        return {}
    g_arr = np.asarray(groups, dtype=object)
    out: dict[str, Any] = {}
    for g in distinct:
        m = g_arr == g
        out[g] = {
            "requests": int(m.sum()),
            "share": {name: float((target[m] == i).mean()) for i, name in enumerate(names)},
        }
    return out


def _score_histogram(scores: FloatArray) -> dict[str, Any]:
    """20 bins over 0..1, or over the scores' own range when they leave it."""
    lo, hi = (0.0, 1.0)
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        lo, hi = float(scores.min()), float(scores.max())
    counts, edges = np.histogram(scores, bins=20, range=(lo, hi))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def replay(
    records: Sequence[Mapping[str, Any]],
    candidate: Policy,
    baseline: Policy | None = None,
    **options: Any,
) -> ReplayResult:
    """Prepare `records` and replay `candidate` (against `baseline`) in one call."""
    prepared = prepare(records, default_tenant=candidate.auth.default_tenant)
    return Replay(prepared, candidate, baseline, **options).run()
