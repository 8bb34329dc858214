"""The whole per-request flow, readable top to bottom.

    parse -> authenticate -> score -> decide -> forward (fallbacks) -> relay -> record

`Router` owns the long-lived parts (policy, upstream pools, scorer, record sink)
and is shared by the standalone app and `RouterMiddleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import structlog
from starlette.types import Message, Receive, Scope, Send

from router.budgets import Admission, BudgetLedger
from router.features import Features
from router.ingress.auth import tenant_for
from router.ingress.body import ClientGone, read_body
from router.ingress.errors import RouterError
from router.ingress.feedback import parse_feedback
from router.ingress.request import ChatRequest, parse_chat_request
from router.outcomes.metrics import (
    BREAKER_OPEN,
    FALLBACKS,
    OVERHEAD,
    REQUESTS,
    SCORING_ERRORS,
    UPSTREAM_LATENCY,
)
from router.outcomes.record import DecisionRecord
from router.outcomes.sinks import JsonlSink, NullSink, RedisStreamSink, Sink
from router.policy.decide import Decision, RequestFacts, decide
from router.policy.loader import default_policy_path, load_policy
from router.policy.model import BudgetConfig, Policy, RecordConfig, ScoringConfig
from router.policy.reload import PolicyWatcher
from router.upstreams.client import UpstreamClient, UpstreamFailure, UpstreamReply
from router.upstreams.pool import TransportFactory, UpstreamPool
from router.upstreams.shadow import ShadowResult, ShadowRunner
from router.upstreams.sse import EventBuffer, event_data, payloads
from router.upstreams.usage import Usage, answer_of, parse_json, usage_of

__all__ = ["Router"]

log = structlog.get_logger("router")

PolicySource = Policy | str | Path | None


class _Done(Exception):
    """The response was sent; unwinds to the record step."""


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
        self.sink: Sink = sink or NullSink()
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
        self._budget_config: BudgetConfig | None = None
        # request id -> tenant of recent requests, so feedback can be checked.
        self.recent: OrderedDict[str, str] = OrderedDict()
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
        await self.pool.aclose()
        if self.shadow is not None:
            await self.shadow.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.scorer is not None:
            await self.scorer.close()
        self.sink.close()
        self.started = False

    def _apply_reloaded(self, policy: Policy) -> None:
        self._apply(policy)
        task = asyncio.ensure_future(self._sync_scorer())
        task.add_done_callback(lambda t: t.exception())

    def _apply(self, policy: Policy) -> None:
        """Make `policy` current. Requests in flight keep the policy they started with."""
        self.pool.sync(policy)
        if self._fixed_sink is None and policy.record != self._record_config:
            old = self.sink
            self.sink = _make_sink(policy.record)
            old.close()
        self._record_config = policy.record
        if policy.budgets != self._budget_config:
            old_ledger = self.ledger
            self.ledger = BudgetLedger(policy.budgets) if policy.budgets is not None else None
            if old_ledger is not None:
                task = asyncio.ensure_future(old_ledger.aclose())
                task.add_done_callback(lambda t: t.exception())
            self._budget_config = policy.budgets
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
            await _send_error(send, exc, "")
            return
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "hybrid-router"}
            for name in self.policy.models
        ]
        await _send_json(send, 200, {"object": "list", "data": data}, [])

    async def feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach an outcome (a score or a label) to a request this router served."""
        headers = _headers(scope)
        try:
            tenant = tenant_for(self.policy.auth, headers)
            raw = await read_body(receive, headers, 64 * 1024)
            item = parse_feedback(raw)
            # Another tenant's id reads as unknown: ids must not leak across tenants.
            if self.recent.get(item["request_id"]) != tenant:
                raise RouterError.not_found(
                    f"No recent request with id '{item['request_id']}'.", code="request_not_found"
                )
        except RouterError as exc:
            await _send_error(send, exc, "")
            return
        except ClientGone:
            return
        self.sink.emit({"kind": "feedback", "v": 1, "ts": time.time(), "tenant": tenant, **item})
        reply = {"object": "feedback", "request_id": item["request_id"], "status": "recorded"}
        await _send_json(send, 200, reply, [])

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
        request_id = uuid.uuid4().hex
        headers = _headers(scope)
        record = DecisionRecord(
            request_id=request_id, ts=time.time(), tenant="", model="", stream=False
        )
        admission: Admission | None = None
        shadow_task: asyncio.Task[ShadowResult] | None = None
        try:
            record.tenant = tenant_for(policy.auth, headers)
            body = await read_body(receive, headers, policy.max_body_bytes)
            request = parse_chat_request(body)
            record.model, record.stream = request.model, request.stream
            record.prompt_chars = request.prompt_chars
            if request.model not in policy.models:
                raise RouterError(
                    404,
                    f"The model '{request.model}' does not exist. "
                    f"Available: {', '.join(policy.models)}.",
                    code="model_not_found",
                    param="model",
                )
            if policy.record.prompts:
                record.messages = request.messages
            features = await self._score(policy, request, record)
            facts = RequestFacts(
                request_id=request_id,
                tenant=record.tenant,
                model=request.model,
                prompt_chars=request.prompt_chars,
                conversation=request.conversation_key,
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
            if decision.shadow is not None and self.shadow is not None:
                shadow_client = self.pool.clients.get(decision.shadow)
                if shadow_client is not None:
                    shadow_task = self.shadow.start(shadow_client, request.body)
            await self._forward(scope, receive, tracked, policy, request, decision, record, t0)
        except RouterError as exc:
            record.status, record.error = exc.status, exc.code or exc.type
            await _send_error(tracked, exc, request_id)
        except ClientGone:
            record.status, record.error = 499, "client_disconnected"
        except _Done:
            pass
        except Exception as exc:
            # A bug must still answer in the OpenAI format and leave a record.
            log.exception("internal_error", request_id=request_id)
            record.status, record.error = 500, type(exc).__name__
            if not started.is_set():
                await _send_error(
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

    def _remember(self, request_id: str, tenant: str) -> None:
        self.recent[request_id] = tenant
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
        admission = await self.ledger.admit(facts.tenant, caps, estimate)
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
            from router.scoring import prompt_text

            features = await scorer.score(prompt_text(request.messages))
        if features.error:
            SCORING_ERRORS.inc()
            record.score_error = features.error
        else:
            record.score = None if features.score is None else round(features.score, 6)
        if policy.record.prompts:
            from router.scoring import prompt_text

            record.prompt = prompt_text(request.messages)
        return features

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        policy: Policy,
        request: ChatRequest,
        decision: Decision,
        record: DecisionRecord,
        t0: float,
    ) -> None:
        """Try the decision's targets in order, then relay the first that answers.

        The work runs in a child task so that a client disconnect (seen on
        `receive`) cancels the upstream request instead of letting it run on.
        """
        work = asyncio.ensure_future(self._attempt(send, policy, request, decision, record, t0))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            watch.cancel()
            raise
        if work in done:
            watch.cancel()
            work.result()
            return
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, _Done, RouterError):
            await work
        record.status, record.error = 499, "client_disconnected"
        raise ClientGone

    async def _attempt(
        self,
        send: Send,
        policy: Policy,
        request: ChatRequest,
        decision: Decision,
        record: DecisionRecord,
        t0: float,
    ) -> None:
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
        for name in decision.targets:
            client = self.pool.clients.get(name)
            if client is None:
                continue
            deadline = deadline_base + client.config.timeouts.total
            began = time.perf_counter()
            try:
                reply = await client.open(client.payload(body), deadline)
            except UpstreamFailure as failure:
                upstream_s += time.perf_counter() - began
                _breaker_gauge(client)
                if failure.kind == "client_error":
                    record.route, record.upstream_model = name, client.config.model
                    record.status, record.error = failure.status or 400, "upstream_client_error"
                    await _send_raw_error(send, failure, record)
                    raise _Done from None
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
            upstream_s += reply.headers_at - began
            UPSTREAM_LATENCY.labels(name).observe(reply.headers_at - reply.started)
            record.route, record.upstream_model = name, client.config.model
            record.ttfb_ms = round((reply.headers_at - t0) * 1000, 3)
            if request.stream:
                await self._relay_stream(
                    send,
                    reply,
                    policy,
                    request,
                    decision,
                    record,
                    t0,
                    upstream_s,
                    added_usage,
                    deadline,
                )
            else:
                await self._relay_body(
                    send, reply, policy, decision, record, t0, upstream_s, deadline
                )
            raise _Done
        detail = (
            "; ".join(f"{f.upstream}: {f.detail}" for f in failures) or "no upstream configured"
        )
        record.error = failures[-1].kind if failures else "no_upstream"
        raise RouterError.upstream(f"All upstreams failed ({detail}).")

    def _response_headers(
        self, record: DecisionRecord, decision: Decision, content_type: bytes
    ) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", content_type),
            (b"x-router-request-id", record.request_id.encode()),
            (b"x-router-route", (record.route or "").encode()),
            (b"x-router-rule", decision.rule.encode()),
            (b"x-router-cache", record.cache.encode()),
            (b"x-router-overhead-ms", f"{record.overhead_ms or 0:.3f}".encode()),
        ]
        if record.score is not None:
            headers.append((b"x-router-score", f"{record.score:.4f}".encode()))
        return headers

    async def _relay_body(
        self,
        send: Send,
        reply: UpstreamReply,
        policy: Policy,
        decision: Decision,
        record: DecisionRecord,
        t0: float,
        upstream_s: float,
        deadline: float,
    ) -> None:
        began = time.perf_counter()
        try:
            async with asyncio.timeout(max(deadline - began, 0.001)):
                raw = await reply.response.aread()
        except (TimeoutError, httpx.HTTPError) as exc:
            await reply.aclose()
            raise RouterError.upstream(
                f"{reply.upstream.name}: the answer broke off ({type(exc).__name__})."
            ) from None
        now = time.perf_counter()
        upstream_s += now - began
        record.upstream_ms = round(upstream_s * 1000, 3)
        record.overhead_ms = round(max(now - t0 - upstream_s, 0.0) * 1000, 3)
        data = parse_json(raw)
        if data is not None:
            _note_usage(record, reply.upstream, usage_of(data))
            if policy.record.prompts:
                record.answer = answer_of(data)
        record.status = reply.response.status_code
        content_type = reply.response.headers.get("content-type", "application/json").encode()
        headers = self._response_headers(record, decision, content_type)
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": record.status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def _relay_stream(
        self,
        send: Send,
        reply: UpstreamReply,
        policy: Policy,
        request: ChatRequest,
        decision: Decision,
        record: DecisionRecord,
        t0: float,
        upstream_s: float,
        drop_usage: bool,
        deadline: float,
    ) -> None:
        record.overhead_ms = round(max(time.perf_counter() - t0 - upstream_s, 0.0) * 1000, 3)
        record.status = reply.response.status_code
        content_type = reply.response.headers.get("content-type", "text/event-stream").encode()
        headers = self._response_headers(record, decision, content_type)
        headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": record.status, "headers": headers})
        buffer = EventBuffer()
        keep_text = policy.record.prompts
        parts: list[str] = []
        saw_done = False
        began = time.perf_counter()
        try:
            async with asyncio.timeout(max(deadline - began, 0.001)):
                async for chunk in reply.response.aiter_raw():
                    events = buffer.feed(chunk)
                    if not events:
                        continue
                    if b"[DONE]" in events:
                        saw_done = True
                    if keep_text or b'"prompt_tokens"' in events:
                        events = self._inspect(
                            events, record, reply.upstream, parts, drop_usage, keep_text
                        )
                        if not events:
                            continue
                    await send({"type": "http.response.body", "body": events, "more_body": True})
        except (TimeoutError, httpx.HTTPError) as exc:
            record.error = "stream_cut"
            log.warning(
                "upstream_stream_cut",
                upstream=reply.upstream.name,
                error=type(exc).__name__,
                request_id=record.request_id,
            )
        finally:
            await reply.aclose()
        record.upstream_ms = round((upstream_s + time.perf_counter() - began) * 1000, 3)
        if not saw_done and record.error is None:
            record.error = "stream_cut"
        if record.error == "stream_cut":
            # Tell the client the answer is incomplete rather than ending silently:
            # the OpenAI SDKs raise on an `error` event.
            error = {
                "error": {
                    "message": f"{reply.upstream.name}: the stream broke off.",
                    "type": "api_error",
                    "code": "stream_cut",
                    "param": None,
                }
            }
            tail = b"data: " + json.dumps(error).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": True})
        if keep_text:
            record.answer = "".join(parts)
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _inspect(
        events: bytes,
        record: DecisionRecord,
        upstream: UpstreamClient,
        parts: list[str],
        drop_usage: bool,
        keep_text: bool,
    ) -> bytes:
        kept: list[bytes] = []
        for event in events.split(b"\n\n")[:-1]:
            payload = next(payloads(event), None)
            data = event_data(payload) if payload is not None else None
            if data is not None:
                usage = usage_of(data)
                if usage is not None:
                    _note_usage(record, upstream, usage)
                    if drop_usage and not data.get("choices"):
                        continue
                if keep_text:
                    for choice in data.get("choices") or ():
                        delta = choice.get("delta") if isinstance(choice, dict) else None
                        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                            parts.append(delta["content"])
            kept.append(event + b"\n\n")
        return b"".join(kept)


# -- helpers ---------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _note_decision(record: DecisionRecord, decision: Decision) -> None:
    record.rule, record.reason = decision.rule, decision.reason
    record.targets = list(decision.targets)
    record.rollout, record.shadow = decision.rollout, decision.shadow


def _note_usage(record: DecisionRecord, upstream: UpstreamClient, usage: Usage | None) -> None:
    if usage is None:
        return
    record.tokens_in, record.tokens_out = usage.tokens_in, usage.tokens_out
    if usage.tokens_in is not None and usage.tokens_out is not None:
        record.cost_usd = round(upstream.config.price.cost(usage.tokens_in, usage.tokens_out), 8)


def _breaker_gauge(client: UpstreamClient) -> None:
    BREAKER_OPEN.labels(client.name).set(1 if client.breaker.state == "open" else 0)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_json(
    send: Send, status: int, data: object, headers: list[tuple[bytes, bytes]]
) -> None:
    raw = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


async def _send_error(send: Send, exc: RouterError, request_id: str) -> None:
    raw = exc.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    if request_id:
        headers.append((b"x-router-request-id", request_id.encode()))
    headers.extend((k.encode(), v.encode()) for k, v in exc.headers.items())
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


async def _send_raw_error(send: Send, failure: UpstreamFailure, record: DecisionRecord) -> None:
    """Relay an upstream's own 4xx: the request was at fault, and its message says why."""
    raw = failure.body or b""
    if parse_json(raw) is None:
        raw = RouterError(failure.status or 400, failure.detail).body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"x-router-request-id", record.request_id.encode()),
        (b"x-router-route", failure.upstream.encode()),
    ]
    await send({"type": "http.response.start", "status": failure.status or 400, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def _make_sink(config: RecordConfig) -> Sink:
    if config.sink == "redis":
        return RedisStreamSink(config.redis_url, config.stream, config.maxlen)
    if config.path:
        return JsonlSink(config.path, int(config.rotate_mb * 1024 * 1024), config.keep)
    return NullSink()
