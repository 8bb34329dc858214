"""The long-lived parts of a router and their lifecycle.

`Runtime` owns what outlives a request: the policy (and its watcher), the upstream
pools, the scorer, the record sink, the cache, the budget ledger, the shadow runner
and the ids of recent requests. It starts them, swaps them when a reload changes
their section of the policy, says whether they are ready, and closes them. The
request flow (`router.pipeline.Router`) reads them and never manages them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import structlog

from router.budgets import BudgetLedger
from router.cache import CacheConfig, SemanticCache, build_cache
from router.features import Features
from router.outcomes.recent import RecentDecisions, TeeSink
from router.outcomes.sinks import JsonlSink, NullSink, RedisStreamSink, Sink
from router.policy.loader import default_policy_path, load_policy
from router.policy.model import BudgetConfig, Policy, RecordConfig, ScoringConfig
from router.policy.reload import PolicyWatcher
from router.responses_store import ResponseStore, build_response_store
from router.upstreams.pool import TransportFactory, UpstreamPool
from router.upstreams.shadow import ShadowRunner

__all__ = ["BACKGROUND", "PolicySource", "Runtime", "Scorer", "in_background"]

log = structlog.get_logger("router")

PolicySource = Policy | str | Path | None

# Work that outlives the request or reload that started it (cache stores, closing
# replaced parts): kept referenced here so that it is not garbage-collected.
BACKGROUND: set[asyncio.Task[Any]] = set()


class Scorer(Protocol):
    """The routing classifier as the router uses it (`router.scoring.Scorer`)."""

    @property
    def provider(self) -> str | None: ...

    @property
    def model_name(self) -> str | None: ...

    async def start(self) -> None: ...

    async def score(self, text: str) -> Features: ...

    async def close(self) -> None: ...


class Runtime:
    def __init__(
        self,
        policy: PolicySource = None,
        *,
        transport_factory: TransportFactory | None = None,
        sink: Sink | None = None,
        scorer_factory: Callable[[ScoringConfig], Scorer] | None = None,
        watch: bool = True,
    ) -> None:
        if isinstance(policy, Policy):
            self.policy, self.policy_path = policy, None
        else:
            self.policy_path = Path(policy) if policy is not None else default_policy_path()
            self.policy = load_policy(self.policy_path)
        self.pool = UpstreamPool(transport_factory)
        self._fixed_sink = sink
        # Every record passes the tee: the status page's last decisions and spend counters.
        self.decisions = RecentDecisions(lambda: self.policy)
        self.sink: TeeSink = TeeSink(sink or NullSink(), self.decisions.observe)
        self._record_config: RecordConfig | None = None
        self._scorer_factory = scorer_factory
        self.scorer: Scorer | None = None
        self._scoring_config: ScoringConfig | None = None
        self._watch = watch
        self.watch_interval = 1.0
        self.watcher: PolicyWatcher | None = None
        self.started = False
        self.in_flight = 0
        self.shadow: ShadowRunner | None = None
        self.ledger: BudgetLedger | None = None
        self.cache: SemanticCache | None = None
        self._cache_config: CacheConfig | None = None
        self._budget_config: BudgetConfig | None = None
        # Conversations of the Responses API, for previous_response_id.
        self.responses_store: ResponseStore | None = None
        self._responses_config: object = None
        # request id -> digest of the tenant of recent requests, so feedback can be
        # checked; a digest, so memory does not grow with the tenants' lengths.
        self.recent: OrderedDict[str, bytes] = OrderedDict()
        self.recent_limit = 100_000
        self._start_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------

    async def startup(self) -> None:
        async with self._start_lock:
            if self.started:
                return
            self.shadow = ShadowRunner()
            self._apply(self.policy)
            await self._sync_scorer()
            if self.policy_path is not None and self._watch:
                self.watcher = PolicyWatcher(
                    self.policy_path, self._apply_reloaded, self.watch_interval
                )
                self.watcher.start()
            self.started = True
            log.info(
                "router_started",
                policy=self.policy.source,
                upstreams=sorted(self.policy.upstreams),
                demo=self.policy.demo,
                scoring=self.scoring_provider,
            )

    async def shutdown(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        # Shadows first, while their upstream clients are still open: the records
        # waiting on them are written, with a shadow error for those cut off.
        if self.shadow is not None:
            await self.shadow.aclose(self.policy.limits.shutdown_shadow_wait_s)
        await self.pool.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.scorer is not None:
            await self.scorer.close()
        if self.cache is not None:
            await self.cache.close()
        if self.responses_store is not None:
            await self.responses_store.close()
        self.sink.close()
        self.started = False

    def _apply_reloaded(self, policy: Policy) -> None:
        self._apply(policy)
        in_background(self._sync_scorer())

    def _apply(self, policy: Policy) -> None:
        """Make `policy` current. Requests in flight keep the policy they started with."""
        self.pool.sync(policy)
        if self._fixed_sink is None and policy.record != self._record_config:
            old = self.sink
            self.sink = TeeSink(_make_sink(policy.record), self.decisions.observe)
            # Closing drains the old writer; off the event loop, it may take a while.
            in_background(asyncio.to_thread(old.close))
        self._record_config = policy.record
        if policy.budgets != self._budget_config:
            if self.ledger is not None:
                in_background(self.ledger.aclose())
            self.ledger = BudgetLedger(policy.budgets) if policy.budgets is not None else None
            self._budget_config = policy.budgets
        if policy.cache != self._cache_config:
            if self.cache is not None:
                in_background(self.cache.close())
            self.cache = build_cache(policy.cache) if policy.cache is not None else None
            self._cache_config = policy.cache
        config = policy.responses
        if config != self._responses_config:
            if self.responses_store is not None:
                in_background(self.responses_store.close())
            self.responses_store = build_response_store(
                config.store_ttl_s,
                config.max_stored,
                config.redis_url,
                config.redis_cluster,
                config.namespace,
            )
            self._responses_config = config
        self.policy = policy

    async def _sync_scorer(self) -> None:
        config = self.policy.scoring
        if config == self._scoring_config:
            return
        old, self.scorer = self.scorer, None
        if config.enabled and self._scorer_factory is not None:
            try:
                scorer = self._scorer_factory(config)
                await scorer.start()
                self.scorer = scorer
            except Exception as exc:
                # A missing or broken model must not stop the router: requests whose
                # rules need a score take the policy's on_classifier_error route.
                log.error("scorer_unavailable", error=str(exc))
        self._scoring_config = config
        if old is not None:
            await old.close()

    @property
    def scoring_provider(self) -> str | None:
        return getattr(self.scorer, "provider", None)

    def readiness(self, details: bool) -> tuple[int, dict[str, Any]]:
        """What `/readyz` answers: the status code and, with `details`, every part's state."""
        status = "ready" if self.started else "not_ready"
        code = 200 if self.started else 503
        if not details:  # probes need the status only; the rest is for the admin key
            return code, {"status": status}
        policy = self.policy
        # A classifier that failed to load does not make the router unready: requests
        # still route (score rules go to on_classifier_error). /readyz says so instead.
        scoring = "off"
        if policy.scoring.enabled:
            scoring = "ok" if self.scorer is not None else "unavailable"
        return code, {
            "status": status,
            "policy": policy.source,
            "upstreams": {name: client.breaker.state for name, client in self.pool.clients.items()},
            "scoring": {
                "status": scoring,
                "provider": self.scoring_provider,
                "model": getattr(self.scorer, "model_name", None),
            },
            "demo": policy.demo,
        }

    # -- recent request ids (feedback) ----------------------------------------------

    def remember(self, request_id: str, tenant: str) -> None:
        self.recent[request_id] = tenant_digest(tenant)
        if len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    async def tenant_of(self, request_id: str) -> bytes | None:
        """Who a request id belongs to (digest): this process's recent ids, then the fleet's."""
        digest = self.recent.get(request_id)
        sink = self.sink.inner
        if digest is None and isinstance(sink, RedisStreamSink):
            try:
                tenant = await asyncio.to_thread(sink.tenant_of, request_id)
            except Exception as exc:  # feedback then reads as unknown; say why in the log
                log.warning("feedback_lookup_failed", error=type(exc).__name__)
                tenant = None
            digest = None if tenant is None else tenant_digest(tenant)
        return digest


def tenant_digest(tenant: str) -> bytes:
    digest = _DIGESTS.get(tenant)
    if digest is None:
        digest = hashlib.blake2b(tenant.encode(), digest_size=8).digest()
        if len(_DIGESTS) >= 10_000:  # a tenant header can name any number of them
            _DIGESTS.clear()
        _DIGESTS[tenant] = digest
    return digest


# Every request's tenant is hashed (`remember`), and a process serves few tenants.
_DIGESTS: dict[str, bytes] = {}


def _make_sink(config: RecordConfig) -> Sink:
    if config.sink == "redis":
        return RedisStreamSink(
            config.redis_url,
            config.stream,
            config.maxlen,
            cluster=config.redis_cluster,
            max_queue=config.max_queue,
        )
    if config.path:
        return JsonlSink(
            config.path, int(config.rotate_mb * 1024 * 1024), config.keep, config.max_queue
        )
    return NullSink()


def in_background(work: Coroutine[Any, Any, Any]) -> None:
    """Run work that must not hold up its caller, keeping the task referenced."""
    task = asyncio.ensure_future(work)
    BACKGROUND.add(task)
    task.add_done_callback(BACKGROUND.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
