"""The semantic cache: exact key first, then nearest neighbour behind the guards."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import structlog

from router.cache import metrics
from router.cache.backoff import Backoff
from router.cache.config import CacheConfig
from router.cache.guards import compatible
from router.cache.memory import MemoryStore
from router.cache.redis_store import RedisStore
from router.cache.scope import Scope
from router.cache.sse import has_tool_calls, is_complete
from router.cache.store import Found, Record, Store, Vector
from router.cache.text import normalise

__all__ = ["Lookup", "SecondStage", "SemanticCache", "build_cache", "exact_key"]

log = structlog.get_logger("router.cache")

SecondStage = Callable[[str, str], bool]
T = TypeVar("T")

# Semantic candidates above the threshold checked against the guards, best first.
_CANDIDATES = 8


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of one lookup. `similarity` is 1.0 for an exact hit, the cosine of
    the best candidate for a semantic hit or a guarded miss, None otherwise."""

    status: str  # "hit" | "miss" | "error"
    completion: dict[str, Any] | None = None
    similarity: float | None = None
    kind: str | None = None  # "exact" | "semantic" on a hit
    guarded: bool = False  # a candidate above the threshold was rejected by a guard


MISS = Lookup(status="miss")
ERROR = Lookup(status="error")


def exact_key(prompt: str) -> str:
    return hashlib.sha256(normalise(prompt).encode()).hexdigest()[:24]


def _vector(embedding: Any) -> Vector | None:
    if embedding is None:
        return None
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if vector.size == 0 or not np.isfinite(norm) or norm == 0.0:
        return None
    # Features promise unit vectors; normalising again costs nothing and makes a
    # dot product a cosine even for a caller that forgot.
    return vector / norm


class SemanticCache:
    """One interface over a store. `lookup` and `store` never raise: a failing or slow
    store turns into a miss within the time budget, and is left alone for a while."""

    def __init__(
        self,
        store: Store,
        config: CacheConfig,
        *,
        second_stage: SecondStage | None = None,
    ) -> None:
        self.backend = store
        self.config = config
        self._second_stage = second_stage
        self._backoff = Backoff(config.retry_after_s, config.max_retry_after_s)

    async def _call(
        self, op: str, timeout_ms: float, action: Awaitable[T]
    ) -> tuple[bool, T | None]:
        if not self._backoff.allow():
            metrics.SKIPPED.labels(op).inc()
            if asyncio.iscoroutine(action):
                action.close()
            return False, None
        attempt = self._backoff.attempt()
        try:
            result = await asyncio.wait_for(action, timeout_ms / 1000)
        except Exception as error:  # the cache must never fail a request
            metrics.ERRORS.labels(op).inc()
            retry_in = self._backoff.failure(attempt)
            log.warning(
                "cache.store_failed",
                op=op,
                store=self.backend.name,
                error=repr(error),
                retry_in_s=round(retry_in, 3),
            )
            return False, None
        if self._backoff.failing:
            log.info("cache.store_recovered", store=self.backend.name)
        self._backoff.success()
        return True, result

    def _accept(self, scope: Scope, prompt: str, record: Record) -> str | None:
        """None when `record` may answer `prompt`, else the stage that refused it."""
        if self.config.guard and not compatible(record.prompt, prompt):
            return "guard"
        if self._second_stage is not None:
            try:
                if not self._second_stage(record.prompt, prompt):
                    return "second_stage"
            except Exception as error:
                log.warning("cache.second_stage_failed", error=repr(error))
                return "second_stage"
        return None

    async def lookup(
        self, scope: Scope, prompt: str, embedding: Any, *, similarity: float | None = None
    ) -> Lookup:
        if not self.config.enabled:
            return MISS
        threshold = self.config.similarity if similarity is None else similarity
        started = time.perf_counter()
        try:
            result = await self._lookup(scope, prompt, _vector(embedding), threshold)
        except Exception as error:  # a bug here must not fail a request either
            metrics.ERRORS.labels("lookup").inc()
            log.exception("cache.lookup_bug", error=repr(error))
            result = ERROR
        metrics.LOOKUP_SECONDS.observe(time.perf_counter() - started)
        if result.status == "hit":
            metrics.HITS.labels(result.kind).inc()
        elif result.status == "miss":
            metrics.MISSES.inc()
        return result

    async def _lookup(
        self, scope: Scope, prompt: str, vector: Vector | None, threshold: float
    ) -> Lookup:
        ok, found = await self._call(
            "lookup",
            self.config.lookup_timeout_ms,
            self.backend.find(scope, exact_key(prompt), vector, threshold, _CANDIDATES),
        )
        if not ok or found is None:
            return ERROR
        assert isinstance(found, Found)
        # The digest is in every key already; checking the stored one too means a
        # key collision or a bug in a store still cannot cross a scope.
        guarded = False
        exact = found.exact
        if exact is not None and exact.digest == scope.digest:
            # Normalisation drops case, spacing, courtesy and sentence punctuation;
            # the guards see the texts as written, in case that dropped too much.
            refused = None if exact.prompt == prompt else self._accept(scope, prompt, exact)
            completion = _decode(exact.completion) if refused is None else None
            if completion is not None:
                return Lookup("hit", completion, 1.0, "exact")
            if refused is not None:
                metrics.GUARDED.labels(refused).inc()
                guarded = True
        best: float | None = None
        for record in found.candidates:
            if record.digest != scope.digest or record.similarity < threshold:
                continue
            best = record.similarity if best is None else best
            refused = self._accept(scope, prompt, record)
            if refused is not None:
                metrics.GUARDED.labels(refused).inc()
                guarded = True
                continue
            completion = _decode(record.completion)
            if completion is not None:
                return Lookup("hit", completion, record.similarity, "semantic")
        return Lookup("miss", None, best, None, guarded)

    async def store(
        self, scope: Scope, prompt: str, embedding: Any, completion: Mapping[str, Any]
    ) -> None:
        if not self.config.enabled:
            return
        try:
            if not is_complete(completion, tool_calls=self.config.tool_calls):
                metrics.STORES.labels("incomplete").inc()
                return
            if has_tool_calls(completion):
                # Tool-call arguments come from the exact words ("Paris", not
                # "Rome"): such answers are found by exact key only, never by similarity.
                embedding = None
            blob = json.dumps(completion, separators=(",", ":"), ensure_ascii=False).encode()
            action = self.backend.put(scope, exact_key(prompt), prompt, _vector(embedding), blob)
        except Exception as error:
            metrics.ERRORS.labels("store").inc()
            log.exception("cache.store_bug", error=repr(error))
            return
        ok, _ = await self._call("store", self.config.store_timeout_ms, action)
        metrics.STORES.labels("stored" if ok else "failed").inc()

    async def get_raw(self, scope: Scope, key: str) -> bytes | None:
        """An exact-match entry (no similarity, no guards): embeddings and the like."""
        if not self.config.enabled:
            return None
        ok, found = await self._call(
            "lookup", self.config.lookup_timeout_ms, self.backend.find(scope, key, None, 1.0, 0)
        )
        if not ok or not isinstance(found, Found) or found.exact is None:
            metrics.MISSES.inc()
            return None
        if found.exact.digest != scope.digest:
            metrics.MISSES.inc()
            return None
        metrics.HITS.labels("exact").inc()
        return found.exact.completion

    async def put_raw(self, scope: Scope, key: str, blob: bytes) -> None:
        if not self.config.enabled:
            return
        ok, _ = await self._call(
            "store", self.config.store_timeout_ms, self.backend.put(scope, key, key, None, blob)
        )
        metrics.STORES.labels("stored" if ok else "failed").inc()

    async def stats(self, tenant: str | None = None) -> dict[str, Any]:
        return await self.backend.stats(tenant)

    async def clear(self, tenant: str | None = None) -> int:
        return await self.backend.clear(tenant)

    async def close(self) -> None:
        try:
            await self.backend.close()
        except Exception as error:
            log.warning("cache.close_failed", error=repr(error))


def _decode(blob: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(blob)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def build_cache(config: CacheConfig, *, second_stage: SecondStage | None = None) -> SemanticCache:
    """A cache over Redis when `redis_url` is set, else over the in-memory store.

    Creating it opens no connection: a Redis that is down at start-up is one more
    failure the cache rides out.
    """
    store: Store
    if config.redis_url:
        store = RedisStore(
            config.redis_url,
            namespace=config.namespace,
            ttl_s=config.ttl_s,
            max_entries=config.max_entries,
            timeout_s=config.lookup_timeout_ms / 1000,
            cluster=config.redis_cluster,
            tables=config.lsh_tables,
            bits=config.lsh_bits,
            max_candidates=config.max_candidates,
        )
    else:
        store = MemoryStore(
            ttl_s=config.ttl_s, max_entries=config.max_entries, max_bytes=config.max_bytes
        )
    return SemanticCache(store, config, second_stage=second_stage)
