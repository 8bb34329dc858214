"""The request flow, readable top to bottom.

    Router.chat
     └─ _serve             the request is in flight until its record is written
         ├─ _guarded       parse -> decide -> respond; a RouterError is answered here
         │   ├─ _parse     authenticate, read and validate the body (router.ingress)
         │   ├─ _decide    score once (router.scoring), decide() (router.policy),
         │   │             admit against the tenant's budget (router.budgets)
         │   └─ _respond   the cache step (router.caching); on a miss _forward:
         │                 each target in order (router.upstreams), the first answer
         │                 relayed as it arrives (router.exchange)
         └─ _finish        metrics, budget settlement, shadow, the decision record

`Router` holds the request flow only; what outlives a request (policy, pools,
scorer, sink, cache, ledger) is its `Runtime` (`router.runtime`). Each step
returns what the next needs, or None once the request has been answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from starlette.types import Message, Receive, Scope, Send

from router import tracing
from router.budgets import Admission
from router.caching import lookup, serve_hit
from router.conversations import recall, remember
from router.errors import ClientGone, RouterError, clip
from router.exchange import Exchange
from router.features import Features
from router.formats.anthropic import parse_messages_deferred
from router.formats.dialect import CHAT, Output, anthropic_output, responses_output
from router.formats.errors import Dialect
from router.formats.responses import parse_responses_deferred
from router.forwarding import forward
from router.ids import request_id
from router.ingress.auth import tenant_for
from router.ingress.body import read_body
from router.ingress.request import ChatRequest, chat_request, json_object, parse_chat_request
from router.outcomes.metrics import SCORING_ERRORS, count_request, observe_overhead
from router.outcomes.record import DecisionRecord
from router.outcomes.sinks import Sink
from router.outcomes.spend import note_cache_hit
from router.policy.decide import Decision, RequestFacts, decide
from router.policy.model import Policy, ScoringConfig
from router.responses import (
    headers_of,
    record_headers,
    send_error,
)
from router.runtime import PolicySource, Runtime, Scorer
from router.scoring.text import prompt_text
from router.upstreams.client import UpstreamClient
from router.upstreams.headers import forwarded_request_headers
from router.upstreams.pool import TransportFactory
from router.upstreams.shadow import ShadowResult

__all__ = ["PolicySource", "Router"]

log = structlog.get_logger("router")

_INTERNAL = RouterError(500, "Internal router error.", type_="api_error", code="internal_error")


@dataclass(slots=True)
class Call:
    """One request's state from its first byte to its record."""

    policy: Policy
    headers: dict[str, str]
    record: DecisionRecord
    respond: Send
    t0: float = field(default_factory=time.perf_counter)
    dialect: Dialect = "chat"  # the client's API: errors and answers are written in it
    out: Output = CHAT
    started: bool = False  # an error answer has started (see `answered`)
    ex: Exchange | None = None  # set once decided: it sends the answer from then on
    admission: Admission | None = None
    shadow: tuple[UpstreamClient, dict[str, Any]] | None = None
    # The request holds what its chat translation cannot carry: this 400 answers it
    # unless a target takes it in the client's own API.
    deferred: RouterError | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.respond(message)

    @property
    def answered(self) -> bool:
        """The response has started: an error can no longer be sent."""
        return self.started or (self.ex is not None and self.ex.answered)


class Router:
    def __init__(
        self,
        policy: PolicySource = None,
        *,
        transport_factory: TransportFactory | None = None,
        sink: Sink | None = None,
        scorer_factory: Callable[[ScoringConfig], Scorer] | None = None,
        watch: bool = True,
        runtime: Runtime | None = None,
    ) -> None:
        self.runtime = runtime or Runtime(
            policy,
            transport_factory=transport_factory,
            sink=sink,
            scorer_factory=scorer_factory,
            watch=watch,
        )

    # -- endpoints -----------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve(scope, receive, send, "chat")

    async def responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        """OpenAI's Responses API, translated to chat completions and back."""
        await self._serve(scope, receive, send, "responses")

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Anthropic's Messages API, translated to chat completions and back."""
        await self._serve(scope, receive, send, "anthropic")

    # -- the flow ------------------------------------------------------------------

    async def _serve(self, scope: Scope, receive: Receive, send: Send, dialect: Dialect) -> None:
        runtime = self.runtime
        if not runtime.started:
            await runtime.startup()
        runtime.in_flight += 1
        record = DecisionRecord(
            request_id=request_id(),
            ts=time.time(),
            tenant="",
            model="",
            stream=False,
        )
        if dialect != "chat":
            record.dialect = dialect
        call = Call(runtime.policy, headers_of(scope), record, send, dialect=dialect)
        try:
            with tracing.request_span(record, call.headers):
                await self._guarded(call, receive)
                await self._finish(call)
        finally:
            runtime.in_flight -= 1

    async def _guarded(self, call: Call, receive: Receive) -> None:
        """parse -> decide -> respond, and what ends a request early: a `RouterError`
        (answered here), the client leaving, a cancel, a bug.

        One coroutine with nested `try`s rather than one per level: each layer of
        coroutines costs every request its frames."""
        record, ledger = call.record, self.runtime.ledger
        try:
            try:
                request = await self._parse(call, receive)
                decision = await self._decide(call, request)
                await self._respond(call, request, decision, receive)
            except RouterError as exc:
                record.status, record.error = exc.status, exc.code or exc.type
                await send_error(
                    call.send, exc, record.request_id, record_headers(record), call.dialect
                )
        except ClientGone:
            record.status, record.error = 499, "client_disconnected"
        except asyncio.CancelledError:
            if call.admission is not None and ledger is not None:  # no leaked reservation
                ledger.settle_soon(call.admission, record.cost_usd or 0.0)
            raise
        except Exception as exc:
            # A bug must still answer in the OpenAI format and leave a record.
            log.exception("internal_error", request_id=record.request_id)
            record.status, record.error = 500, type(exc).__name__
            if not call.answered:
                await send_error(call.respond, _INTERNAL, record.request_id, dialect=call.dialect)

    async def _parse(self, call: Call, receive: Receive) -> ChatRequest:
        policy, record, headers = call.policy, call.record, call.headers
        record.tenant = tenant_for(policy.auth, headers)
        limits = policy.limits
        body = await read_body(receive, headers, policy.max_body_bytes, limits.body_timeout_s)
        request = await self._request_of(call, body)
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
        return request

    async def _request_of(self, call: Call, raw: bytes) -> ChatRequest:
        """The chat request a body amounts to, in whichever dialect the client wrote it;
        a translated request also sets how its answer is written back (`call.out`)."""
        depth = call.policy.limits.max_json_depth
        if call.dialect == "chat":
            return parse_chat_request(raw, depth)
        body = json_object(raw, depth)
        record = call.record
        if call.dialect == "anthropic":
            chat, call.deferred = parse_messages_deferred(body)
            call.out = anthropic_output(body, "msg_" + record.request_id)
            return chat_request(chat)
        store = self.runtime.responses_store
        history = await recall(store, record.tenant, body)
        # What only the Responses API can do is refused only if a target would have
        # to translate it (`Exchange.deferred`): an upstream speaking it takes it as is.
        chat, call.deferred = parse_responses_deferred(body, history)
        on_final = remember(store, record.tenant, body, history)
        call.out = responses_output(body, "resp_" + record.request_id, on_final, history)
        return chat_request(chat)

    async def _decide(self, call: Call, request: ChatRequest) -> tuple[Decision, Features | None]:
        policy, record = call.policy, call.record
        features = None
        if policy.scoring.enabled:
            with tracing.scoring_span(record):
                features = await self._score(request, record)
        facts = RequestFacts(
            request_id=record.request_id,
            tenant=record.tenant,
            model=request.model,
            prompt_chars=request.prompt_chars,
            conversation=record.conversation or "",  # hashed once, in _parse
            headers=call.headers,
        )
        decision = decide(policy, facts, features)
        if policy.budgets is not None and not decision.reject:
            call.admission, decision = await _admit(
                self.runtime, policy, facts, features, decision, request
            )
            if call.admission.keys is not None:  # the tenant has caps
                record.budget = "ok" if call.admission.admitted else "exceeded"
        _note_decision(record, decision)
        if decision.reject:
            raise RouterError(
                429,
                f"Tenant '{clip(record.tenant)}' has reached its spending cap.",
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        self.runtime.remember(record.request_id, record.tenant)
        return decision, features

    async def _respond(
        self,
        call: Call,
        request: ChatRequest,
        decided: tuple[Decision, Features | None],
        receive: Receive,
    ) -> None:
        runtime, policy = self.runtime, call.policy
        decision, features = decided
        # A request its translation cannot carry whole is neither copied to a shadow
        # nor answered from, or stored in, the cache: both would see another question.
        whole = call.deferred is None
        shadow = runtime.pool.clients.get(decision.shadow) if decision.shadow else None
        if shadow is not None and whole:
            call.shadow = (shadow, request.body)
        # The exchange sends to the client itself (one coroutine less per message);
        # `call.answered` asks it whether the answer has started.
        ex = call.ex = Exchange(
            policy,
            request,
            decision,
            call.record,
            call.t0,
            call.respond,
            out=call.out,
            forward=forwarded_request_headers(policy.headers.request, call.headers),
            deferred=call.deferred,
        )
        cache = runtime.cache if whole else None
        if cache is None and runtime.cache is not None and decision.cache:
            call.record.cache = "bypass"
        cached = target = None
        if cache is not None and decision.cache:
            target = runtime.pool.clients.get(decision.target)
            model = target.config.model if target is not None else None
            with tracing.cache_span(call.record):
                cached = await lookup(cache, policy.cache, ex, features, call.headers, model)
        if cached is None:
            await forward(runtime.pool, ex, receive)
            return
        await serve_hit(ex, cached)
        note_cache_hit(cached, target.config.price if target else None, policy)

    async def _finish(self, call: Call) -> None:
        """Count the request, settle its budget, start its shadow, write its record."""
        runtime, record = self.runtime, call.record
        record.latency_ms = round((time.perf_counter() - call.t0) * 1000, 3)
        if record.overhead_ms is not None:
            observe_overhead(record.overhead_ms / 1000)
        count_request(record.rule or "-", record.route or "-", record.status, call.dialect)
        if call.admission is not None and runtime.ledger is not None:
            await runtime.ledger.settle(call.admission, record.cost_usd or 0.0)
        # The shadow starts only now, after the client has its answer, so that it
        # never competes with the request it copies.
        task = None
        if call.shadow is not None and runtime.shadow is not None:
            task = runtime.shadow.start(*call.shadow)
        if task is None:
            runtime.sink.emit(record.to_dict())
            return
        # The record waits for the shadow answer, so that one line holds both.
        with_answer, sink = call.policy.record.prompts, runtime.sink

        def emit(task: asyncio.Task[ShadowResult]) -> None:
            if not task.cancelled() and task.exception() is None:
                record.shadow_result = task.result().to_dict(with_answer)
            sink.emit(record.to_dict())

        task.add_done_callback(emit)

    # -- steps ---------------------------------------------------------------------

    async def _score(self, request: ChatRequest, record: DecisionRecord) -> Features:
        scorer = self.runtime.scorer
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


# -- helpers ---------------------------------------------------------------------------


async def _admit(
    runtime: Runtime,
    policy: Policy,
    facts: RequestFacts,
    features: Features | None,
    decision: Decision,
    request: ChatRequest,
) -> tuple[Admission, Decision]:
    """Reserve the request's estimated cost; over the cap, decide again as over budget."""
    budgets, ledger = policy.budgets, runtime.ledger
    assert budgets is not None
    caps = budgets.caps_for(facts.tenant)
    client = runtime.pool.clients.get(decision.target)
    if caps is None or ledger is None or client is None:
        return Admission(True), decision
    body = request.body
    out_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(out_tokens, int):
        out_tokens = budgets.estimate_output_tokens
    n = body.get("n") if isinstance(body.get("n"), int) else 1
    estimate = client.config.price.cost(facts.prompt_tokens, out_tokens * int(n or 1))
    admission = await ledger.admit(facts.tenant, caps, estimate, facts.request_id)
    if admission.admitted:
        return admission, decision
    return admission, decide(policy, replace(facts, over_budget=True), features)


def _note_decision(record: DecisionRecord, decision: Decision) -> None:
    record.rule, record.reason = decision.rule, decision.reason
    record.targets = [decision.target, *decision.fallbacks]  # decision.targets, as a list
    record.rollout, record.shadow = decision.rollout, decision.shadow
