"""The next steps a migration can take from a policy, each as an edit of its YAML text.

A step moves traffic from the most expensive upstream ("strong") towards the
cheapest ("weak"), or prepares to measure that move:

* widen a rollout to the next of 5 / 20 / 50 / 100 percent;
* move a score threshold by 10 points of traffic (`top_percent` /
  `bottom_percent`; a raw bound is rewritten in those terms when the policy
  has a quantile table), both ways;
* start a rollout where none moves traffic to the weak upstream: a route for
  the easiest 30 / 50 / 70 / 90% of prompts with a 5% rollout, or a 5%
  rollout of the default route;
* start a shadow where none runs, so that shadow pairs can be judged.

Every step is parsed back into a `Policy`, so a step that would not load is
never offered. A step also names its *reach*: two policies whose differing
decisions are the requests this kind of step can move. A rollout picks its
share by a hash of the sticky key, not by the prompt, so the requests that a
5% -> 20% widening moves are a random sample of the route's requests not yet
moved: their quality is estimated from every rated request of that larger set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from router.policy.loader import PolicyError, parse_policy
from router.policy.model import Policy, Route
from router.replay.policyedit import PolicyEditError, add_key, append_route, find, replace_value

__all__ = ["ROLLOUT_STEPS", "Step", "candidate_steps", "cheapest", "dearest"]

ROLLOUT_STEPS = (5.0, 20.0, 50.0, 100.0)
THRESHOLD_STEP = 10.0
EASY_SHARES = (30.0, 50.0, 70.0, 90.0)
FIRST_ROLLOUT = 5.0
FIRST_SHADOW = 10.0


@dataclass(frozen=True)
class Step:
    kind: str  # widen_rollout | move_threshold | start_rollout | start_shadow
    title: str
    route: str
    text: str  # the whole policy file after the step
    policy: Policy
    reach: tuple[Policy, Policy] | None = None  # None: the requests the step itself moves


def _fmt(value: float) -> str:
    return f"{value:g}"


def dearest(policy: Policy) -> str:
    return max(
        policy.upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)
    ).name


def cheapest(policy: Policy) -> str:
    return min(
        policy.upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)
    ).name


def _routes(policy: Policy) -> Iterator[tuple[tuple[str | int, ...], Route]]:
    for i, route in enumerate(policy.routes):
        yield ("routes", i), route
    yield ("default",), policy.default


class _Builder:
    """Applies edits to the policy text and parses the result like the live router would."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def parse(self, text: str) -> Policy | None:
        try:
            return parse_policy(text, source=self.source)
        except PolicyError:
            return None

    def make(self, edit: Callable[[str], str]) -> tuple[str, Policy] | None:
        try:
            text = edit(self.text)
        except PolicyEditError:
            return None
        policy = self.parse(text)
        return (text, policy) if policy is not None else None


def _percent_at(path: tuple[str | int, ...], value: float) -> Callable[[str], str]:
    return lambda text: replace_value(text, (*path, "rollout", "percent"), _fmt(value))


def _widen(b: _Builder, policy: Policy, weak: str) -> Iterator[Step]:
    for path, route in _routes(policy):
        r = route.rollout
        if r is None or r.target != weak or r.target == route.target or r.percent >= 100:
            continue
        nxt = min(s for s in ROLLOUT_STEPS if s > r.percent)
        made = b.make(_percent_at(path, nxt))
        full = b.make(_percent_at(path, 100.0))
        if made is None or full is None:
            continue
        yield Step(
            "widen_rollout",
            f"widen '{route.name}' rollout {_fmt(r.percent)}% -> {_fmt(nxt)}%",
            route.name,
            made[0],
            made[1],
            reach=(policy, full[1]),
        )


def _threshold(b: _Builder, policy: Policy) -> Iterator[Step]:
    table = policy.quantiles
    for path, route in _routes(policy):
        score = route.match.score
        if score is None:
            continue
        spath = (*path, "match", "score")
        if score.top_percent is not None or score.bottom_percent is not None:
            key = "top_percent" if score.top_percent is not None else "bottom_percent"
            now = score.top_percent if score.top_percent is not None else score.bottom_percent
            assert now is not None
            node_path: tuple[str | int, ...] = (*spath, key)
            rewrite = False
        elif table is not None and find(b.text, spath) is not None:
            # A raw bound, said again in shares of the quantile table's traffic.
            if score.gte is not None or score.gt is not None:
                key, now = "top_percent", table.top_percent(float(score.gte or score.gt or 0))
            elif score.lt is not None or score.lte is not None:
                bound = float(score.lt if score.lt is not None else score.lte or 0)
                key, now = "bottom_percent", 100.0 - table.top_percent(bound)
            else:
                continue
            now = float(round(now))
            node_path, rewrite = spath, True
        else:
            continue
        for delta in (THRESHOLD_STEP, -THRESHOLD_STEP):
            new = min(100.0, max(0.0, now + delta))
            if new == now:
                continue
            value = f"{{{key}: {_fmt(new)}}}" if rewrite else _fmt(new)

            def edit(text: str, value: str = value, at: tuple[str | int, ...] = node_path) -> str:
                return replace_value(text, at, value)

            made = b.make(edit)
            if made is None:
                continue
            reach = None
            r = route.rollout
            if r is not None and r.percent < 100:
                # Under a partial rollout the threshold moves a hash-sampled part
                # of the band between the two thresholds: rate the whole band.
                base = b.make(_percent_at(path, 100.0))
                full = _percent_at(path, 100.0)
                both = b.make(lambda text, full=full, edit=edit: full(edit(text)))  # type: ignore[misc]
                if base is None or both is None:
                    continue
                reach = (base[1], both[1])
            yield Step(
                "move_threshold",
                f"move '{route.name}' threshold {key} {_fmt(now)} -> {_fmt(new)}",
                route.name,
                made[0],
                made[1],
                reach=reach,
            )


def _sticky(policy: Policy) -> str:
    # A header the records keep makes replay exact; otherwise the conversation.
    return f'"header:{policy.record.headers[0]}"' if policy.record.headers else "conversation"


def _start_rollout(b: _Builder, policy: Policy, strong: str, weak: str) -> Iterator[Step]:
    if any(r.rollout is not None and r.rollout.target == weak for _, r in _routes(policy)):
        return
    default = policy.default
    if default.target != strong:
        return
    sticky = _sticky(policy)
    shadow = default.shadow
    name, taken, k = f"easy-{weak}", {r.name for r in policy.routes}, 2
    while name in taken:
        name, k = f"easy-{weak}-{k}", k + 1

    def route_edit(share: float, percent: float) -> Callable[[str], str]:
        fields = [
            f"name: {name}",
            f"match: {{score: {{bottom_percent: {_fmt(share)}}}}}",
            f"target: {strong}",
            f"fallbacks: [{weak}]",
            f"rollout: {{percent: {_fmt(percent)}, target: {weak}, sticky: {sticky}}}",
        ]
        if shadow is not None:
            # Keep rating the pairs of the prompts that stay on the strong upstream.
            fields.append(f"shadow: {{percent: {_fmt(shadow.percent)}, target: {shadow.target}}}")
        return lambda text: append_route(text, fields, "{" + ", ".join(fields) + "}")

    if policy.scoring.enabled:
        for share in EASY_SHARES:
            made = b.make(route_edit(share, FIRST_ROLLOUT))
            full = b.make(route_edit(share, 100.0))
            if made is None or full is None:
                continue
            yield Step(
                "start_rollout",
                f"start a {_fmt(FIRST_ROLLOUT)}% rollout to {weak} of the easiest "
                f"{_fmt(share)}% of prompts",
                name,
                made[0],
                made[1],
                reach=(policy, full[1]),
            )

    def default_edit(percent: float) -> Callable[[str], str]:
        value = f"{{percent: {_fmt(percent)}, target: {weak}, sticky: {sticky}}}"
        return lambda text: add_key(text, ("default",), "rollout", value)

    made = b.make(default_edit(FIRST_ROLLOUT))
    full = b.make(default_edit(100.0))
    if made is not None and full is not None:
        yield Step(
            "start_rollout",
            f"start a {_fmt(FIRST_ROLLOUT)}% rollout to {weak} of the default route",
            "default",
            made[0],
            made[1],
            reach=(policy, full[1]),
        )


def _start_shadow(b: _Builder, policy: Policy, weak: str, busiest: str | None) -> Iterator[Step]:
    if any(r.shadow is not None for _, r in _routes(policy)):
        return
    for path, route in _routes(policy):
        if route.name != busiest or route.target == weak:
            continue
        value = f"{{percent: {_fmt(FIRST_SHADOW)}, target: {weak}}}"
        made = b.make(lambda text, at=path, v=value: add_key(text, at, "shadow", v))  # type: ignore[misc]
        if made is not None:
            yield Step(
                "start_shadow",
                f"start a {_fmt(FIRST_SHADOW)}% shadow of '{route.name}' to {weak}",
                route.name,
                made[0],
                made[1],
            )


def candidate_steps(
    text: str, source: str, policy: Policy, busiest_strong_route: str | None
) -> list[Step]:
    """Every step from `policy` (read from `text`) that loads; the shadow goes on the route
    that sends the most requests to the strong upstream (`busiest_strong_route`)."""
    b = _Builder(text, source)
    strong, weak = dearest(policy), cheapest(policy)
    if strong == weak:
        return []
    return [
        *_widen(b, policy, weak),
        *_threshold(b, policy),
        *_start_rollout(b, policy, strong, weak),
        *_start_shadow(b, policy, weak, busiest_strong_route),
    ]
