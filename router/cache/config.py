"""How the semantic cache is configured."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheConfig"]

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
    # Cache answers that end in tool calls, and agents' tool-result turns, by exact
    # match only (same history, tools, tool_choice and parameters; tool-call ids
    # do not count). Agents repeat themselves: this is where their savings are.
    tool_calls: bool = True
    lookup_timeout_ms: float = 50
    # Stores run after the answer went out, so they may take a little longer.
    store_timeout_ms: float = 250
    namespace: str = "hr"
    # Consecutive failures back off from `retry_after_s` up to `max_retry_after_s`.
    retry_after_s: float = 0.5
    # Small, so that the cache is back within seconds of Redis: while Redis is away
    # this costs one lookup (bounded by lookup_timeout_ms) per interval per worker.
    max_retry_after_s: float = 2.0
    # The lexical guard of semantic hits; see router/cache/guards.py.
    guard: bool = True
    # Random-hyperplane LSH of the Redis store: tables x bits per table. 10 x 20 was
    # measured at p50 1.1 ms and recall 0.99 at cosine 0.95 with 100k entries
    # (bench/cache); more tables buy recall at lower thresholds for latency and memory.
    lsh_tables: int = 10
    lsh_bits: int = 20
    # At most this many candidates come back from Redis for re-ranking.
    max_candidates: int = 512
