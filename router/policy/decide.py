"""`decide()`: the routing decision, a pure function of policy, request facts and score.

Pure means no clock, no randomness and no I/O: sampling (rollout, shadow) hashes
stable request facts. The live router and `router replay` call this same
function, so a replayed decision is the decision that would have been taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from router.features import Features
from router.policy.model import Match, Policy, Route

__all__ = ["Decision", "RequestFacts", "bucket", "decide"]

# Prompt tokens are estimated, not counted: a tokenizer per upstream model would cost
# more than the routing decision is worth. Four characters a token is the usual
# rule of thumb for English text.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class RequestFacts:
    request_id: str
    tenant: str
    model: str
    prompt_chars: int
    conversation: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # The tenant's spend reached a cap in the policy's `budgets` (looked up before deciding).
    over_budget: bool = False

    @property
    def prompt_tokens(self) -> int:
        return -(-self.prompt_chars // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    target: str
    fallbacks: tuple[str, ...] = ()
    reason: str = ""
    rollout: str | None = None  # "in" or "out" when the route has a rollout
    shadow: str | None = None
    cache: bool = True
    cache_similarity: float | None = None
    reject: bool = False  # answer 429: the tenant is over budget and the policy says reject

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target, *self.fallbacks)


def bucket(*parts: str) -> float:
    """A stable number in [0, 100) for the given key."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1_000_000 / 10_000


def _sticky_value(sticky: str, facts: RequestFacts) -> str:
    if sticky == "tenant":
        return facts.tenant
    if sticky == "request":
        return facts.request_id
    if sticky.startswith("header:"):
        # Without the header, fall back to the conversation so it still stays put.
        return facts.headers.get(sticky[7:]) or facts.conversation
    return facts.conversation


def _matches(match: Match, facts: RequestFacts, features: Features | None) -> bool | None:
    """True/False; None when the rule needs a score that the classifier failed to give."""
    if match.models is not None and facts.model not in match.models:
        return False
    if match.tenants is not None and facts.tenant not in match.tenants:
        return False
    for name, allowed in match.headers:
        value = facts.headers.get(name)
        if value is None or (allowed is not None and value not in allowed):
            return False
    if match.prompt_chars is not None and not match.prompt_chars.contains(facts.prompt_chars):
        return False
    if match.prompt_tokens is not None and not match.prompt_tokens.contains(facts.prompt_tokens):
        return False
    if match.score is not None:
        if features is None or features.score is None:
            return None
        if not match.score.contains(features.score):
            return False
    return True


def _decision(route: Route, facts: RequestFacts, reason: str) -> Decision:
    target, fallbacks = route.target, route.fallbacks
    rollout = None
    if route.rollout is not None:
        # Hash the route name, not the percentage: widening 5% -> 20% keeps the
        # first 5% where they were, so conversations never flip back and forth.
        key = _sticky_value(route.rollout.sticky, facts)
        if bucket("rollout", route.name, key) < route.rollout.percent:
            rollout = "in"
            fallbacks = tuple(t for t in (target, *fallbacks) if t != route.rollout.target)
            target = route.rollout.target
        else:
            rollout = "out"
    shadow = None
    if (
        route.shadow is not None
        and route.shadow.target != target
        and bucket("shadow", route.name, facts.request_id) < route.shadow.percent
    ):
        shadow = route.shadow.target
    if rollout is None and shadow is None:
        return _unsampled(route, reason)
    return Decision(
        rule=route.name,
        target=target,
        fallbacks=fallbacks,
        reason=reason,
        rollout=rollout,
        shadow=shadow,
        cache=route.cache.enabled,
        cache_similarity=route.cache.similarity,
    )


# A decision with nothing sampled (no rollout, no shadow this time) is the same for
# every request its route takes: built once per route instead of once per request
# (a frozen dataclass costs ~1 us to build). Keyed by identity, the route kept
# alive in the entry so that its id cannot be reused; bounded because replay
# sweeps build routes by the thousand.
_UNSAMPLED: dict[int, tuple[Route, str, Decision]] = {}


def _unsampled(route: Route, reason: str) -> Decision:
    entry = _UNSAMPLED.get(id(route))
    if entry is not None and entry[0] is route and entry[1] == reason:
        return entry[2]
    decision = Decision(
        rule=route.name,
        target=route.target,
        fallbacks=route.fallbacks,
        reason=reason,
        cache=route.cache.enabled,
        cache_similarity=route.cache.similarity,
    )
    if len(_UNSAMPLED) >= 1024:
        _UNSAMPLED.clear()
    _UNSAMPLED[id(route)] = (route, reason, decision)
    return decision


def decide(policy: Policy, facts: RequestFacts, features: Features | None = None) -> Decision:
    if facts.over_budget and policy.budgets is not None:
        budgets = policy.budgets
        if budgets.action == "reject" or budgets.target is None:
            return Decision(rule="budget", target="", reason="over budget: rejected", reject=True)
        return Decision(rule="budget", target=budgets.target, reason="over budget: rerouted")
    for route in policy.routes:
        matched = _matches(route.match, facts, features)
        if matched is None:
            why = features.error if features is not None and features.error else "not scored"
            return Decision(
                rule="on_classifier_error",
                target=policy.on_classifier_error,
                fallbacks=tuple(
                    t
                    for t in (policy.default.target, *policy.default.fallbacks)
                    if t != policy.on_classifier_error
                ),
                reason=f"route '{route.name}' needs a score: {why}",
            )
        if matched:
            return _decision(route, facts, "matched")
    return _decision(policy.default, facts, "default")
