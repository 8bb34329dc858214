"""The whole per-request flow, readable top to bottom.

    parse -> authenticate -> score -> decide -> forward (fallbacks) -> relay -> record

`Router` owns the long-lived parts (policy, upstream pools, scorer, record sink)
and is shared by the standalone app and `RouterMiddleware`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from starlette.types import Message, Receive, Scope, Send

from router.budgets import Admission, BudgetLedger
from router.cache import (
    CacheConfig,
    SemanticCache,
    build_cache,
    cache_mode,
    cache_prompt,
    scope_for,
    streamable,
)
from router.exchange import (
    BACKGROUND,
    CacheSlot,
    Done,
    Exchange,
    relay_body,
    relay_stream,
    send_cached,
)
from router.features import Features
from router.ingress.auth import tenant_for
from router.ingress.body import ClientGone, read_body
from router.ingress.errors import RouterError, clip
from router.ingress.feedback import parse_feedback
from router.ingress.request import ChatRequest, parse_chat_request
from router.outcomes.metrics import (
    FALLBACKS,
    OVERHEAD,
    REQUESTS,
    SCORING_ERRORS,
    UPSTREAM_LATENCY,
)
from router.outcomes.recent import RecentDecisions, TeeSink
from router.outcomes.record import DecisionRecord
from router.outcomes.sinks import JsonlSink, NullSink, RedisStreamSink, Sink
from router.outcomes.spend import note_cache_hit
from router.passthrough import model_list
from router.policy.decide import Decision, RequestFacts, decide
from router.policy.loader import default_policy_path, load_policy
from router.policy.model import BudgetConfig, Policy, RecordConfig, ScoringConfig
from router.policy.reload import PolicyWatcher
from router.responses import (
    record_headers,
    send_error,
    send_json,
    send_raw_error,
    wait_disconnect,
)
from router.scoring.text import prompt_text
from router.upstreams.client import UpstreamClient, UpstreamFailure
from router.upstreams.failures import exhausted
from router.upstreams.headers import forwarded_request_headers, passed_response_headers
from router.upstreams.pool import TransportFactory, UpstreamPool
from router.upstreams.shadow import ShadowResult, ShadowRunner
from router.upstreams.sse import EventBuffer

__all__ = ["Router"]

log = structlog.get_logger("router")

PolicySource = Policy | str | Path | None


class Router:
    def __init__(
        self,
        policy: PolicySource = None,
        *,
        transport_factory: TransportFactory | None = None,
        sink: Sink | None = None,
        scorer_factory: Callable[[ScoringConfig], Any] | None = None,
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
        self.scorer: Any = None
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
        self.sink.close()
        self.started = False

    def _apply_reloaded(self, policy: Policy) -> None:
        self._apply(policy)
        _in_background(self._sync_scorer())

    def _apply(self, policy: Policy) -> None:
        """Make `policy` current. Requests in flight keep the policy they started with."""
        self.pool.sync(policy)
        if self._fixed_sink is None and policy.record != self._record_config:
            old = self.sink
            self.sink = TeeSink(_make_sink(policy.record), self.decisions.observe)
            # Closing drains the old writer; off the event loop, it may take a while.
            _in_background(asyncio.to_thread(old.close))
        self._record_config = policy.record
        if policy.budgets != self._budget_config:
            if self.ledger is not None:
                _in_background(self.ledger.aclose())
            self.ledger = BudgetLedger(policy.budgets) if policy.budgets is not None else None
            self._budget_config = policy.budgets
        if policy.cache != self._cache_config:
            if self.cache is not None:
                _in_background(self.cache.close())
            self.cache = build_cache(policy.cache) if policy.cache is not None else None
            self._cache_config = policy.cache
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

    # -- endpoints -----------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        try:
            tenant_for(self.policy.auth, headers)
        except RouterError as exc:
            await send_error(send, exc, "")
            return
        await send_json(send, 200, model_list(self.policy), [])

    async def feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach an outcome (a score or a label) to a request this router served."""
        headers = _headers(scope)
        try:
            tenant = tenant_for(self.policy.auth, headers)
            raw = await read_body(receive, headers, 64 * 1024, self.policy.limits.body_timeout_s)
            item = parse_feedback(raw)
            # Another tenant's id reads as unknown: ids must not leak across tenants.
            if await self._tenant_of(item["request_id"]) != _tenant_digest(tenant):
                raise RouterError.not_found(
                    f"No recent request with id '{item['request_id']}'.", code="request_not_found"
                )
        except RouterError as exc:
            await send_error(send, exc, "")
            return
        except ClientGone:
            return
        self.sink.emit({"kind": "feedback", "v": 1, "ts": time.time(), "tenant": tenant, **item})
        reply = {"object": "feedback", "request_id": item["request_id"], "status": "recorded"}
        await send_json(send, 200, reply, [])

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.started:
            await self.startup()
        t0 = time.perf_counter()
        self.in_flight += 1
        try:
            await self._chat(scope, receive, send, t0)
        finally:
            self.in_flight -= 1

    async def _chat(self, scope: Scope, receive: Receive, send: Send, t0: float) -> None:
        started = asyncio.Event()

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        policy = self.policy
        request_id = os.urandom(16).hex()  # uuid4().hex costs 5x more for the same bits
        headers = _headers(scope)
        record = DecisionRecord(
            request_id=request_id, ts=time.time(), tenant="", model="", stream=False
        )
        admission: Admission | None = None
        shadow_client: UpstreamClient | None = None
        shadow_body: dict[str, Any] = {}
        try:
            record.tenant = tenant_for(policy.auth, headers)
            body = await read_body(
                receive, headers, policy.max_body_bytes, policy.limits.body_timeout_s
            )
            request = parse_chat_request(body, policy.limits.max_json_depth)
            record.model, record.stream = request.model, request.stream
            record.prompt_chars = request.prompt_chars
            if request.model not in policy.models:
                raise RouterError(
                    404,
                    f"The model '{clip(request.model)}' does not exist. "
                    f"Available: {', '.join(policy.models)}.",
                    code="model_not_found",
                    param="model",
                )
            if policy.record.prompts:
                record.messages = request.messages
                record.prompt = prompt_text(request.messages)  # what the classifier scores
            record.conversation = request.conversation_key
            if policy.record.headers:
                kept = {h: headers[h] for h in policy.record.headers if h in headers}
                record.headers = kept or None
            features = await self._score(policy, request, record)
            facts = RequestFacts(
                request_id=request_id,
                tenant=record.tenant,
                model=request.model,
                prompt_chars=request.prompt_chars,
                conversation=record.conversation,
                headers=headers,
            )
            decision = decide(policy, facts, features)
            if policy.budgets is not None and not decision.reject:
                admission, decision = await self._admit(policy, facts, features, decision, request)
                if admission.keys is not None:  # the tenant has caps
                    record.budget = "ok" if admission.admitted else "exceeded"
            _note_decision(record, decision)
            if decision.reject:
                raise RouterError(
                    429,
                    f"Tenant '{record.tenant}' has reached its spending cap.",
                    type_="insufficient_quota",
                    code="insufficient_quota",
                )
            self._remember(request_id, record.tenant)
            if decision.shadow is not None:
                shadow_client = self.pool.clients.get(decision.shadow)
                shadow_body = request.body
            ex = Exchange(policy, request, decision, record, t0, tracked)
            ex.forward = forwarded_request_headers(policy.headers.request, headers)
            cached = await self._cache_lookup(ex, features, headers)
            if cached is not None:
                await send_cached(ex, cached)
                target = self.pool.clients.get(decision.target)
                note_cache_hit(cached, target.config.price if target else None, policy)
                raise Done
            await self._forward(ex, receive)
        except RouterError as exc:
            record.status, record.error = exc.status, exc.code or exc.type
            await send_error(tracked, exc, request_id, record_headers(record))
        except ClientGone:
            record.status, record.error = 499, "client_disconnected"
        except Done:
            pass
        except asyncio.CancelledError:
            if admission is not None and self.ledger is not None:  # no reservation leaks
                self.ledger.settle_soon(admission, record.cost_usd or 0.0)
            raise
        except Exception as exc:
            # A bug must still answer in the OpenAI format and leave a record.
            log.exception("internal_error", request_id=request_id)
            record.status, record.error = 500, type(exc).__name__
            if not started.is_set():
                await send_error(
                    send,
                    RouterError(
                        500, "Internal router error.", type_="api_error", code="internal_error"
                    ),
                    request_id,
                )
        record.latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        if record.overhead_ms is not None:
            OVERHEAD.observe(record.overhead_ms / 1000)
        REQUESTS.labels(record.rule or "-", record.route or "-", str(record.status)).inc()
        if admission is not None and self.ledger is not None:
            await self.ledger.settle(admission, record.cost_usd or 0.0)
        # The shadow starts only now, after the client has its answer, so that it
        # never competes with the request it copies.
        shadow_task = None
        if shadow_client is not None and self.shadow is not None:
            shadow_task = self.shadow.start(shadow_client, shadow_body)
        if shadow_task is None:
            self.sink.emit(record.to_dict())
        else:
            # The record waits for the shadow answer, so that one line holds both.
            with_answer = policy.record.prompts
            sink = self.sink

            def emit(task: asyncio.Task[ShadowResult]) -> None:
                if not task.cancelled() and task.exception() is None:
                    record.shadow_result = task.result().to_dict(with_answer)
                sink.emit(record.to_dict())

            shadow_task.add_done_callback(emit)

    # -- steps ---------------------------------------------------------------------

    async def _cache_lookup(
        self, ex: Exchange, features: Features | None, headers: dict[str, str]
    ) -> dict[str, Any] | None:
        """A cached completion; on a miss, `ex.slot` says where the answer will go."""
        request, decision, record = ex.request, ex.decision, ex.record
        cache, config = self.cache, self._cache_config
        if cache is None or config is None or not decision.cache:
            return None
        client = self.pool.clients.get(decision.target)
        prompt = cache_prompt(request.body, config.tool_calls)
        scope = None
        if client is not None and prompt is not None and cache_mode(headers) == "use":
            scope = scope_for(
                tenant=record.tenant,
                upstream=decision.target,
                model=client.config.model,
                body=request.body,
                only_deterministic=config.only_deterministic,
                unset_temperature_is_deterministic=config.unset_temperature_is_deterministic,
                tool_turns=config.tool_calls,
            )
        if scope is None or prompt is None:
            record.cache = "bypass"
            return None
        embedding = None
        if features is not None and not prompt.exact:
            embedding = features.embedding
        found = await cache.lookup(
            scope, prompt.text, embedding, similarity=decision.cache_similarity
        )
        record.cache_similarity = None if found.similarity is None else round(found.similarity, 4)
        completion = found.completion
        # An answer with a field a stream cannot carry is no hit for a stream.
        usable = completion is not None and (not request.stream or streamable(completion))
        if found.status == "hit" and completion is not None and usable:
            record.cache = "hit"
            return completion
        record.cache = "miss" if found.status in ("miss", "hit") else "error"
        ex.slot = CacheSlot(cache, scope, prompt.text, embedding)
        return None

    async def _tenant_of(self, request_id: str) -> bytes | None:
        """Who a request id belongs to (digest): this process's recent ids, then the fleet's."""
        digest = self.recent.get(request_id)
        sink = self.sink.inner
        if digest is None and isinstance(sink, RedisStreamSink):
            try:
                tenant = await asyncio.to_thread(sink.tenant_of, request_id)
            except Exception as exc:  # feedback then reads as unknown; say why in the log
                log.warning("feedback_lookup_failed", error=type(exc).__name__)
                tenant = None
            digest = None if tenant is None else _tenant_digest(tenant)
        return digest

    def _remember(self, request_id: str, tenant: str) -> None:
        self.recent[request_id] = _tenant_digest(tenant)
        if len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    async def _admit(
        self,
        policy: Policy,
        facts: RequestFacts,
        features: Features | None,
        decision: Decision,
        request: ChatRequest,
    ) -> tuple[Admission, Decision]:
        """Reserve the request's estimated cost; over the cap, decide again as over budget."""
        budgets = policy.budgets
        assert budgets is not None
        caps = budgets.caps_for(facts.tenant)
        client = self.pool.clients.get(decision.target)
        if caps is None or self.ledger is None or client is None:
            return Admission(True), decision
        body = request.body
        out_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(out_tokens, int):
            out_tokens = budgets.estimate_output_tokens
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        estimate = client.config.price.cost(facts.prompt_tokens, out_tokens * int(n or 1))
        admission = await self.ledger.admit(facts.tenant, caps, estimate, facts.request_id)
        if admission.admitted:
            return admission, decision
        return admission, decide(policy, replace(facts, over_budget=True), features)

    async def _score(
        self, policy: Policy, request: ChatRequest, record: DecisionRecord
    ) -> Features | None:
        if not policy.scoring.enabled:
            return None
        scorer = self.scorer
        if scorer is None:
            features = Features(error="classifier unavailable")
        else:
            features = await scorer.score(record.prompt or prompt_text(request.messages))
        if features.error:
            SCORING_ERRORS.inc()
            record.score_error = features.error
        else:
            record.score = None if features.score is None else round(features.score, 6)
        return features

    async def _forward(self, ex: Exchange, receive: Receive) -> None:
        """Try the decision's targets in order, then relay the first that answers.

        A watcher on `receive` cancels this task when the client disconnects, so
        the upstream request stops instead of running on. (The work runs inline:
        a child task per request plus `asyncio.wait` cost ~5% of a request.)
        """
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            await wait_disconnect(receive)
            # After the last body message the server reports a disconnect too:
            # that is the normal end, not a client leaving.
            if not ex.finished:
                gone = True
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await self._attempt(ex)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            ex.record.status, ex.record.error = 499, "client_disconnected"
            raise ClientGone from None
        finally:
            watcher.cancel()

    async def _attempt(self, ex: Exchange) -> None:
        request, record = ex.request, ex.record
        deadline_base = time.perf_counter()
        body = request.body
        added_usage = False
        if request.stream and not request.include_usage:
            # Ask for usage so cost can be recorded; the extra chunk is not relayed.
            body = {
                **body,
                "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
            }
            added_usage = True
        failures: list[UpstreamFailure] = []
        upstream_s = 0.0
        for name in ex.decision.targets:
            client = self.pool.clients.get(name)
            if client is None:
                continue
            deadline = deadline_base + client.config.timeouts.total
            began = time.perf_counter()
            buffer = EventBuffer()
            try:
                reply = await client.open(client.payload(body), deadline, ex.forward)
                # Until the first event (or the whole body) is in, nothing has reached
                # the client, so a stall, a cut or garbage still falls back.
                if request.stream:
                    first = await reply.first_events(deadline, buffer)
                else:
                    raw, data = await reply.read_json(deadline)
            except UpstreamFailure as failure:
                upstream_s += time.perf_counter() - began
                if failure.kind == "client_error":
                    record.route, record.upstream_model = name, client.config.model
                    record.status, record.error = failure.status or 400, "upstream_client_error"
                    passed = passed_response_headers(
                        ex.policy.headers.response, failure.headers.raw if failure.headers else ()
                    )
                    await send_raw_error(ex.send, failure, record, passed)
                    raise Done from None
                failures.append(failure)
                record.tried.append(name)
                FALLBACKS.labels(name, failure.kind).inc()
                log.warning(
                    "upstream_failed",
                    upstream=name,
                    error=failure.kind,
                    detail=failure.detail,
                    request_id=record.request_id,
                )
                continue
            UPSTREAM_LATENCY.labels(name).observe(reply.headers_at - reply.started)
            record.route, record.upstream_model = name, client.config.model
            record.ttfb_ms = round((reply.headers_at - ex.t0) * 1000, 3)
            if request.stream:
                upstream_s += time.perf_counter() - began
                await relay_stream(ex, reply, first, buffer, upstream_s, added_usage, deadline)
            else:
                upstream_s += time.perf_counter() - began
                await relay_body(ex, reply, raw, data, upstream_s)
            raise Done
        record.error = failures[-1].kind if failures else "no_upstream"
        raise exhausted(failures, ex.policy.headers.response)


# -- helpers ---------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _tenant_digest(tenant: str) -> bytes:
    return hashlib.blake2b(tenant.encode(), digest_size=8).digest()


def _note_decision(record: DecisionRecord, decision: Decision) -> None:
    record.rule, record.reason = decision.rule, decision.reason
    record.targets = list(decision.targets)
    record.rollout, record.shadow = decision.rollout, decision.shadow


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


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run what a reload set off (closing replaced parts, a new scorer) without waiting."""
    task = asyncio.ensure_future(work)
    BACKGROUND.add(task)
    task.add_done_callback(BACKGROUND.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
