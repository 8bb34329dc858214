"""`router advise`: replay each next step of a migration and recommend one, or say why not.

For every candidate step (`router.replay.steps`) the records are replayed
through the live `decide()` under the current policy and under the step, and
two figures are predicted, each with a bootstrap interval (records resampled
with replacement; the 5th and 95th percentiles of the draws):

* **cost change**: served plus shadow spend, recorded tokens at the policy's
  prices, relative to the current policy's;
* **quality change**: the mean difference in label score between the new and
  the old upstream's answers over the requests the step moves (`moved`), and
  the same spread over all traffic (`per_request`). It rests on the rated
  requests among those the step can move (its reach, see `Step`), and that
  count is the step's *coverage*.

A step that saves money is recommended when its coverage reaches `min_labels`
and the 5% bound of its quality change on moved requests stays above
`-max_drop`; of those, the one saving most. When no saving step has enough
labels the answer is "not enough labels", with what would bring them: a shadow
to start (as a diff), shadow pairs to judge, or more traffic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from router.policy.model import Policy
from router.replay.engine import Prepared, Replay
from router.replay.policyedit import unified_diff
from router.replay.steps import Step, candidate_steps, cheapest, dearest

__all__ = ["AdviceOptions", "advise"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AdviceOptions:
    min_labels: int = 30
    max_drop: float = 0.05  # label-score units per moved request (judge labels: 0..1)
    bootstrap: int = 1000
    seed: int = 0


def _interval(point: float | None, draws: FloatArray) -> dict[str, float | None] | None:
    if point is None:
        return None
    ok = draws[~np.isnan(draws)]
    if ok.size == 0:
        return {"value": point, "low": None, "high": None}
    low, high = np.percentile(ok, [5, 95])
    return {"value": point, "low": float(low), "high": float(high)}


@dataclass
class _Arrays:
    """Per-record inputs of one step's estimate."""

    after: npt.NDArray[np.int64]  # the step's targets
    delta_cost: FloatArray
    base_cost: FloatArray
    moved: BoolArray
    reach: BoolArray  # the requests this kind of step can move
    diff: FloatArray  # quality(new) - quality(old) on the reach; nan elsewhere or unrated


class Advisor:
    def __init__(
        self, prepared: Prepared, policy: Policy, text: str, path: str, options: AdviceOptions
    ) -> None:
        self.p = prepared
        self.policy = policy
        self.text = text
        self.path = path
        self.o = options
        self.engine = Replay(prepared, policy)
        self.current = self.engine.run_policy(policy)
        self.current_cost = self._cost(self.current.target, self.current.shadow, policy)
        self.strong, self.weak = dearest(policy), cheapest(policy)
        self.chosen: Step | None = None

    def _cost(
        self, target: npt.NDArray[np.int64], shadow: npt.NDArray[np.int64], policy: Policy
    ) -> FloatArray:
        served: FloatArray = self.engine.costs(target, policy)
        return served + self.engine.costs(shadow, policy)

    def _quality_diff(
        self, before: npt.NDArray[np.int64], after: npt.NDArray[np.int64]
    ) -> FloatArray:
        q_after = self.engine.chosen_quality(after)
        q_before = self.engine.chosen_quality(before)
        out: FloatArray = np.where(before != after, q_after - q_before, np.nan)
        return out

    def _arrays(self, step: Step) -> _Arrays:
        run = self.engine.run_policy(step.policy)
        cost = self._cost(run.target, run.shadow, step.policy)
        moved = run.target != self.current.target
        if step.reach is None:
            a, b = self.current.target, run.target
        else:
            a = self.engine.run_policy(step.reach[0]).target
            b = self.engine.run_policy(step.reach[1]).target
        return _Arrays(
            run.target, cost - self.current_cost, self.current_cost, moved, a != b,
            self._quality_diff(a, b),
        )  # fmt: skip

    def _draws(self, arrays: _Arrays) -> dict[str, FloatArray]:
        n = len(self.p)
        rng = np.random.default_rng(self.o.seed)  # the same draws for every step
        b = self.o.bootstrap
        out = {k: np.full(b, np.nan) for k in ("relative", "per_1k", "moved", "per_request")}
        rated = ~np.isnan(arrays.diff)
        diff = np.where(rated, arrays.diff, 0.0)
        moved = arrays.moved.astype(np.float64)
        for k in range(b):
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
            base = float(w @ arrays.base_cost)
            change = float(w @ arrays.delta_cost)
            out["relative"][k] = change / base if base else np.nan
            out["per_1k"][k] = change / n * 1000
            labelled = float(w @ rated)
            if labelled:
                mean = float(w @ diff) / labelled
                out["moved"][k] = mean
                out["per_request"][k] = mean * float(w @ moved) / n
        return out

    def estimate(self, step: Step) -> dict[str, Any]:
        arrays = self._arrays(step)
        n = len(self.p)
        base = float(arrays.base_cost.sum())
        change = float(arrays.delta_cost.sum())
        rated = ~np.isnan(arrays.diff)
        reach = int(arrays.reach.sum())
        labelled = int(rated.sum())
        moved = int(arrays.moved.sum())
        draws = self._draws(arrays)
        q_moved = float(arrays.diff[rated].mean()) if labelled else None
        q_req = q_moved * moved / n if q_moved is not None else None
        quality = {
            "moved": _interval(q_moved, draws["moved"]),
            "per_request": _interval(q_req, draws["per_request"]),
        }
        enough = labelled >= self.o.min_labels
        low = (quality["moved"] or {}).get("low")
        safe = bool(enough and low is not None and low >= -self.o.max_drop)
        return {
            "kind": step.kind,
            "title": step.title,
            "route": step.route,
            "moved": moved,
            "moved_share": moved / n if n else 0.0,
            "moved_to": dict(Counter(self.engine.names[t] for t in arrays.after[arrays.moved])),
            "cost_change": {
                "usd": change,
                "per_1k_usd": change / n * 1000 if n else 0.0,
                "relative": _interval(change / base if base else 0.0, draws["relative"]),
                "per_1k_interval": _interval(change / n * 1000 if n else 0.0, draws["per_1k"]),
            },
            "quality_change": quality if step.kind != "start_shadow" else None,
            "coverage": {
                "rated": labelled,
                "reach": reach,
                "share": labelled / reach if reach else 0.0,
                "minimum": self.o.min_labels,
                "enough": enough,
            },
            "safe": safe,
        }

    # -- the answer ------------------------------------------------------------------

    def labels(self) -> dict[str, Any]:
        labs = self.p.labels
        pairs = sum(lab.shadow_pair for lab in labs)
        both = [self.strong in lab.quality and self.weak in lab.quality for lab in labs]
        unrated = sum(lab.shadow_pair and not b for lab, b in zip(labs, both, strict=True))
        return {
            "labelled_records": sum(lab.labelled for lab in labs),
            "rated_pairs": sum(both),
            "shadow_pairs": pairs,
            "unrated_shadow_pairs": unrated,
            "by_source": dict(Counter(lab.source for lab in labs)),
        }

    def advise(self) -> dict[str, Any]:
        steps = candidate_steps(self.text, self.path, self.policy, self._busiest_strong_rule())
        found = [(s, self.estimate(s)) for s in steps]
        labels = self.labels()
        out: dict[str, Any] = {
            "policy": self.path,
            "records": len(self.p),
            "strong": self.strong,
            "weak": self.weak,
            "labels": labels,
            "options": {
                "min_labels": self.o.min_labels,
                "max_drop": self.o.max_drop,
                "bootstrap": self.o.bootstrap,
                "seed": self.o.seed,
            },
            "current": self._current_summary(),
            "candidates": [e for _, e in found],
        }
        verdict, pick, todo = self._verdict(found, labels)
        out["verdict"] = verdict
        out["todo"] = todo
        self.chosen = pick[0] if pick is not None else None
        if pick is not None:
            step, est = pick
            out["recommended"] = est["title"]
            out["recommended_index"] = found.index(pick)
            out["diff"] = unified_diff(self.text, step.text, self.path)
            out["policy_text"] = step.text
        else:
            out["recommended"] = None
            out["diff"] = ""
        return out

    def _busiest_strong_rule(self) -> str | None:
        """The rule sending most requests to the strong upstream: the first one to widen."""
        busiest = Counter(
            rule
            for rule, t in zip(self.current.rules, self.current.target.tolist(), strict=True)
            if t >= 0 and self.engine.names[t] == self.strong
        ).most_common(1)
        return busiest[0][0] if busiest else None

    def _current_summary(self) -> dict[str, Any]:
        n = len(self.p)
        total = float(self.current_cost.sum())
        return {
            "cost_usd": total,
            "cost_per_1k_usd": total / n * 1000 if n else 0.0,
            "share": {
                name: float((self.current.target == i).mean()) if n else 0.0
                for i, name in enumerate(self.engine.names)
            },
        }

    def _verdict(
        self, found: list[tuple[Step, dict[str, Any]]], labels: dict[str, Any]
    ) -> tuple[str, tuple[Step, dict[str, Any]] | None, list[str]]:
        """The verdict, the step to show as a diff (if any), and what to do next."""
        saving = [
            (s, e) for s, e in found if s.kind != "start_shadow" and e["cost_change"]["usd"] < 0
        ]
        safe = [(s, e) for s, e in saving if e["safe"]]
        if safe:
            pick = min(safe, key=lambda se: se[1]["cost_change"]["usd"])
            return (
                "step",
                pick,
                [
                    "apply the diff (--write FILE; the router reloads a changed policy), "
                    "keep the shadow running, then judge the new pairs and ask again"
                ],
            )
        if not saving:
            return (
                "done",
                None,
                [
                    f"no step moves more traffic to {self.weak}: the rollouts are complete "
                    "or the policy has nothing to widen"
                ],
            )
        if any(not e["coverage"]["enough"] for _, e in saving):
            best = max(e["coverage"]["rated"] for _, e in saving)
            shadow = [(s, e) for s, e in found if s.kind == "start_shadow"]
            start = shadow[0] if shadow else None
            return "not_enough_labels", start, [self._labels_todo(start, labels, best)]
        return (
            "hold",
            None,
            [
                f"every step that saves money loses more than {self.o.max_drop:g} label "
                "points on the requests it moves (5% bound): stay, or retrain the "
                "classifier on these labels (`router train`) and ask again"
            ],
        )

    def _labels_todo(
        self, shadow: tuple[Step, dict[str, Any]] | None, labels: dict[str, Any], best: int
    ) -> str:
        """What would bring the missing labels: a shadow, judging, or more traffic."""
        if shadow is not None:
            return (
                f"no shadow runs: start one (the diff below), send traffic, then rate "
                f"the pairs with `router judge`; each step needs {self.o.min_labels} "
                f"rated requests among those it can move"
            )
        if labels["unrated_shadow_pairs"]:
            return (
                f"run `router judge --records ... --policy {self.path} --out "
                f"records/judge.jsonl`: {labels['unrated_shadow_pairs']} shadow pairs "
                "are not rated yet; pass its output to advise after the records"
            )
        return (
            f"the steps need {self.o.min_labels} rated requests among those they "
            f"can move and have at most {best}: keep the shadow running (or raise its "
            "percent), judge the new pairs and ask again"
        )


def advise(
    prepared: Prepared, policy: Policy, text: str, path: str, options: AdviceOptions
) -> tuple[dict[str, Any], Policy | None]:
    """The advice as a dict, and the recommended step's policy (None when there is none)."""
    advisor = Advisor(prepared, policy, text, path, options)
    out = advisor.advise()
    return out, advisor.chosen.policy if advisor.chosen is not None else None
