"""Prometheus metrics, module-level like prometheus_client intends."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from router.outcomes.fastmetrics import adder, observer

__all__ = [
    "BREAKER_OPEN",
    "CALLS",
    "FALLBACKS",
    "OVERHEAD",
    "POLICY_RELOADS",
    "REQUESTS",
    "SCORING_ERRORS",
    "UPSTREAM_LATENCY",
    "count_request",
    "observe_overhead",
]

REQUESTS = Counter(
    "router_requests_total",
    "Routed requests (chat, responses, messages) by rule, route, status and client dialect.",
    ["rule", "route", "status", "dialect"],
)
CALLS = Counter(
    "router_calls_total",
    "Pass-through requests (embeddings, completions, other /v1 paths) by endpoint, "
    "upstream and status.",
    ["endpoint", "upstream", "status"],
)
FALLBACKS = Counter(
    "router_fallbacks_total",
    "Upstream attempts that failed over to the next target.",
    ["upstream", "error"],
)
UPSTREAM_LATENCY = Histogram(
    "router_upstream_seconds",
    "Upstream time to response headers.",
    ["upstream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OVERHEAD = Histogram(
    "router_overhead_seconds",
    "Time spent in the router itself, upstream excluded.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)
BREAKER_OPEN = Gauge(
    "router_breaker_open",
    "1 while an upstream's circuit is open.",
    ["upstream"],
    multiprocess_mode="max",
)
POLICY_RELOADS = Counter("router_policy_reloads_total", "Policy reloads by result.", ["result"])
SCORING_ERRORS = Counter("router_scoring_errors_total", "Prompts the classifier failed to score.")

# `OVERHEAD.observe`, in fewer calls (router.outcomes.fastmetrics).
observe_overhead = observer(OVERHEAD)


# `labels()` takes a lock and builds its key on every call; a request only needs
# the child (its `inc`), and the combinations are few (rules x routes x statuses x
# dialects).
_REQUEST_CHILDREN: dict[tuple[str, str, int, str], Callable[[float], None]] = {}


def count_request(rule: str, route: str, status: int, dialect: str) -> None:
    key = (rule, route, status, dialect)
    add = _REQUEST_CHILDREN.get(key)
    if add is None:
        if len(_REQUEST_CHILDREN) > 10_000:  # unbounded rule names cannot grow it forever
            _REQUEST_CHILDREN.clear()
        add = _REQUEST_CHILDREN[key] = adder(REQUESTS.labels(rule, route, str(status), dialect))
    add(1)
