"""Prometheus metrics of the cache, in module scope so every instance shares them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "ERRORS",
    "GUARDED",
    "HITS",
    "LOOKUP_SECONDS",
    "MISSES",
    "SKIPPED",
    "STORES",
]

HITS = Counter("router_cache_hits_total", "Lookups answered from the cache.", ["kind"])
MISSES = Counter("router_cache_misses_total", "Lookups that found no usable entry.")
GUARDED = Counter(
    "router_cache_guarded_total",
    "Semantic candidates above the threshold that a guard rejected (near misses).",
    ["stage"],
)
ERRORS = Counter(
    "router_cache_errors_total",
    "Store operations that failed or ran past their time budget; the request went on.",
    ["op"],
)
SKIPPED = Counter(
    "router_cache_skipped_total",
    "Operations not tried because the store is backing off after failures.",
    ["op"],
)
STORES = Counter("router_cache_stores_total", "Answers offered to the cache.", ["result"])
LOOKUP_SECONDS = Histogram(
    "router_cache_lookup_seconds",
    "Time of one cache lookup, store round trips and guards included.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
