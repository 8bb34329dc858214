"""What answers cost, and what they would have cost on the most expensive upstream.

Three counters, so that `/metrics` (and the status page, which samples the same
counters) can say what routing and the cache saved against sending everything
to the policy's most expensive upstream. They count chat completions only:
pass-through calls (embeddings, ...) have no "all on the strongest model" to
compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from router.outcomes.fastmetrics import adder
from router.policy.model import Policy, Price
from router.upstreams.usage import usage_of

__all__ = ["CACHE_SAVED", "SPEND", "TOP_COST", "note_cache_hit", "note_spend", "top_price"]

SPEND = Counter(
    "router_cost_usd_total",
    "US dollars of chat completions at the answering upstream's prices.",
    ["upstream"],
)
TOP_COST = Counter(
    "router_cost_top_usd_total",
    "US dollars the same chat completions (cache hits included) would have cost on the "
    "policy's most expensive upstream.",
)
CACHE_SAVED = Counter(
    "router_cache_saved_usd_total",
    "US dollars cache hits would have cost on the upstream the policy chose.",
)

_TOP: dict[int, tuple[Policy, Price]] = {}
# `Counter.labels()` takes a lock and builds a key on every call; the children are
# few (one per upstream) and live as long as the process, so keep them (their `inc`,
# router.outcomes.fastmetrics).
_SPEND_BY_UPSTREAM: dict[str, Callable[[float], None]] = {}
_add_top_cost = adder(TOP_COST)


def top_price(policy: Policy) -> Price:
    """The price of the policy's most expensive upstream (the same order as the loader's)."""
    cached = _TOP.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    prices = [u.price for u in policy.upstreams.values()]
    price = max(prices, key=lambda p: p.input + p.output) if prices else Price()
    _TOP.clear()  # one policy is current at a time; keep no stale ones alive
    _TOP[id(policy)] = (policy, price)
    return price


def note_spend(record: dict[str, Any], policy: Policy) -> None:
    """Count an answered chat completion's record (cache hits count in `note_cache_hit`)."""
    route, cost = record.get("route"), record.get("cost_usd")
    if route is None or route == "cache" or cost is None:
        return
    add = _SPEND_BY_UPSTREAM.get(route)
    if add is None:
        add = _SPEND_BY_UPSTREAM[route] = adder(SPEND.labels(route))
    add(cost)
    tokens_in, tokens_out = record.get("tokens_in"), record.get("tokens_out")
    if isinstance(tokens_in, int) and isinstance(tokens_out, int):
        _add_top_cost(top_price(policy).cost(tokens_in, tokens_out))


def note_cache_hit(completion: dict[str, Any], target: Price | None, policy: Policy) -> None:
    """A cached answer was served: its recorded usage at the chosen target's prices."""
    usage = usage_of(completion)
    if usage is None or usage.tokens_in is None or usage.tokens_out is None:
        return
    if target is not None:
        CACHE_SAVED.inc(target.cost(usage.tokens_in, usage.tokens_out))
    TOP_COST.inc(top_price(policy).cost(usage.tokens_in, usage.tokens_out))
