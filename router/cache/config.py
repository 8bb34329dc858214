"""How the semantic cache is configured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["CacheConfig", "config_from_mapping"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Settings for one cache. The defaults give the embedded in-memory store.

    `max_entries` and `max_bytes` bound the in-memory store as a whole. In Redis,
    `max_entries` bounds each scope (an LRU per scope); the byte bound there belongs
    to Redis itself (`maxmemory` with an LRU policy), because counting bytes across
    replicas would cost a write to one hot key on every store.
    """

    enabled: bool = True
    redis_url: str | None = None
    # Talk to a Redis Cluster: every key of one scope shares a hash tag, so the
    # scope's scripts run on one node.
    redis_cluster: bool = False
    ttl_s: float = 3600
    max_entries: int = 10_000
    max_bytes: int = 64 * MiB
    similarity: float = 0.95
    only_deterministic: bool = True
    # An unset temperature counts as deterministic only when the policy says so
    # (the upstream's default temperature is usually 1).
    unset_temperature_is_deterministic: bool = False
    lookup_timeout_ms: float = 50
    # Stores run after the answer went out, so they may take a little longer.
    store_timeout_ms: float = 250
    namespace: str = "hr"
    # Consecutive failures back off from `retry_after_s` up to `max_retry_after_s`.
    retry_after_s: float = 0.5
    max_retry_after_s: float = 30.0
    # The lexical guard of semantic hits; see router/cache/guards.py.
    guard: bool = True
    # Random-hyperplane LSH of the Redis store: tables x bits per table. 10 x 20 was
    # measured at p50 1.1 ms and recall 0.99 at cosine 0.95 with 100k entries
    # (bench/cache); more tables buy recall at lower thresholds for latency and memory.
    lsh_tables: int = 10
    lsh_bits: int = 20
    # At most this many candidates come back from Redis for re-ranking.
    max_candidates: int = 512


def config_from_mapping(section: Mapping[str, Any] | None) -> CacheConfig:
    """A CacheConfig from a policy's `cache:` section; unknown keys are an error.

    Numbers are accepted as written (YAML gives int or float); a value of the wrong
    type raises ValueError naming the key.
    """
    if section is None:
        return CacheConfig()
    known = {f.name: f for f in fields(CacheConfig)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"unknown cache setting(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in section.items():
        default = known[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif key == "redis_url":
            ok = value is None or isinstance(value, str)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"cache setting {key!r} has the wrong type: {value!r}")
        values[key] = value
    return CacheConfig(**values)
