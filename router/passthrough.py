"""The `/v1` paths that are relayed rather than routed by score.

* `POST /v1/embeddings` and `POST /v1/completions` go to the upstream the policy
  names for the request's model (`embeddings: {models: ...}`): a vector index
  needs one embedding model, so no score routing. Embeddings may be answered from
  an exact-match cache (same tenant, upstream, model and body).
* `GET /v1/models/{id}` answers from the policy.
* Any other `/v1/...` path goes as is to the policy's `passthrough:` upstream, or
  gets a 404 that names that setting.

Each call leaves a record with `kind: "call"` and counts in `router_calls_total`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import structlog
from starlette.types import Receive, Scope, Send

from router.cache import Scope as CacheScope
from router.cache import cache_mode
from router.errors import RouterError, clip
from router.ids import request_id
from router.ingress.auth import tenant_for
from router.ingress.body import ClientGone, read_body
from router.ingress.request import json_object
from router.outcomes.metrics import CALLS
from router.outcomes.record import DecisionRecord
from router.policy.model import EndpointConfig, Policy
from router.responses import headers_of, record_headers, send_bytes, send_error, send_json
from router.upstreams.client import UpstreamClient, UpstreamFailure
from router.upstreams.failures import exhausted
from router.upstreams.headers import (
    forwarded_request_headers,
    passed_response_headers,
    passthrough_response_headers,
)

if TYPE_CHECKING:
    from router.runtime import Runtime
    from router.upstreams.transport import UpstreamResponse

__all__ = ["Passthrough"]

log = structlog.get_logger("router")

# Request headers a path the router does not interpret still needs upstream.
_PASSTHROUGH_REQUEST = ("content-type", "accept", "openai-beta")


class Passthrough:
    """Relays for the endpoints that are not chat; shares the router's upstreams and sink."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = _record("embeddings")
        await self._call(record, send, self._by_model("embeddings", scope, receive, send, record))

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = _record("completions")
        await self._call(record, send, self._by_model("completions", scope, receive, send, record))

    async def _call(
        self, record: DecisionRecord, send: Send, work: Coroutine[Any, Any, None]
    ) -> None:
        """Run one call: in flight until its record is written, like a chat request
        (shutdown waits), its error answered in the OpenAI format, its record kept."""
        runtime = self.runtime
        if not runtime.started:
            await runtime.startup()
        runtime.in_flight += 1
        t0 = time.perf_counter()
        try:
            await work
        except RouterError as exc:
            record.status, record.error = exc.status, exc.code or exc.type
            await send_error(send, exc, record.request_id, record_headers(record))
        except ClientGone:
            record.status, record.error = 499, "client_disconnected"
        finally:
            self._finish(record, t0)
            runtime.in_flight -= 1

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`GET /v1/models/{id}`: the policy's public names, chat and pass-through alike."""
        policy = self.runtime.policy
        name = scope["path"][len("/v1/models/") :]
        try:
            tenant_for(policy.auth, headers_of(scope))
            if name not in public_models(policy):
                raise _unknown_model(name, policy)
        except RouterError as exc:
            await send_error(send, exc)
            return
        await send_json(send, 200, _model_card(name))

    async def _by_model(
        self, endpoint: str, scope: Scope, receive: Receive, send: Send, record: DecisionRecord
    ) -> None:
        runtime = self.runtime
        policy = runtime.policy
        config: EndpointConfig = getattr(policy, endpoint)
        headers = headers_of(scope)
        t0 = time.perf_counter()
        record.tenant = tenant_for(policy.auth, headers)
        limits = policy.limits
        raw = await read_body(receive, headers, policy.max_body_bytes, limits.body_timeout_s)
        body = json_object(raw, limits.max_json_depth)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RouterError.bad_request("'model' is required and must be a string.", "model")
        record.model = model
        target = config.models.get(model)
        if target is None:
            raise _unknown_model(model, policy, endpoint)
        upstream, upstream_model = target
        client = runtime.pool.clients.get(upstream)
        if client is None:
            raise RouterError.upstream(f"Upstream '{upstream}' is not running.")
        record.rule, record.targets = endpoint, [upstream]
        record.stream = body.get("stream") is True
        if upstream_model != model:
            raw = orjson.dumps({**body, "model": upstream_model})
        slot = await self._cached(endpoint, config, record, body, client, upstream_model, headers)
        if slot is not None and slot[1] is not None:
            record.route, record.status, record.cache = "cache", 200, "hit"
            await send_bytes(send, 200, slot[1], _call_headers(record))
            return
        await self._relay(endpoint, client, raw, headers, record, t0, send, slot)

    async def _cached(
        self,
        endpoint: str,
        config: EndpointConfig,
        record: DecisionRecord,
        body: dict[str, Any],
        client: UpstreamClient,
        upstream_model: str,
        headers: dict[str, str],
    ) -> tuple[CacheScope, bytes | None] | None:
        """The exact-match cache of embeddings: the same body gets the same vectors."""
        cache = self.runtime.cache
        if endpoint != "embeddings" or not config.cache or cache is None:
            return None
        if cache_mode(headers) != "use":
            record.cache = "bypass"
            return None
        keyed = {k: v for k, v in body.items() if k not in ("model", "user")}
        blob = orjson.dumps(
            {"tenant": record.tenant, "upstream": client.name, "model": upstream_model, **keyed},
            option=orjson.OPT_SORT_KEYS,
        )
        digest = hashlib.sha256(blob).hexdigest()[:32]
        scope = CacheScope(record.tenant, client.name, upstream_model, digest)
        found = await cache.get_raw(scope, "embeddings")
        record.cache = "miss" if found is None else "hit"
        return scope, found

    async def _relay(
        self,
        endpoint: str,
        client: UpstreamClient,
        raw: bytes,
        headers: dict[str, str],
        record: DecisionRecord,
        t0: float,
        send: Send,
        slot: tuple[CacheScope, bytes | None] | None,
    ) -> None:
        policy = self.runtime.policy
        forward = forwarded_request_headers(policy.headers.request, headers)
        deadline = time.perf_counter() + client.config.timeouts.total
        url = client.url_for("/" + endpoint)
        try:
            reply = await client.open(raw, deadline, forward, url=url)
        except UpstreamFailure as failure:
            record.tried.append(client.name)
            if failure.kind == "client_error":
                record.route = client.name
                passed = passed_response_headers(
                    policy.headers.response, failure.headers.raw if failure.headers else ()
                )
                record.status, record.error = failure.status or 400, "upstream_client_error"
                await send_bytes(
                    send,
                    record.status,
                    failure.body or RouterError(record.status, failure.detail).body(),
                    [*_call_headers(record), *passed],
                )
                return
            record.error = failure.kind
            raise exhausted([failure], policy.headers.response) from None
        record.route, record.upstream_model = client.name, client.config.model
        record.ttfb_ms = round((reply.headers_at - t0) * 1000, 3)
        response = reply.response
        passed = passed_response_headers(policy.headers.response, response.headers.raw)
        content_type = response.headers.get("content-type", "application/json").encode()
        start = [(b"content-type", content_type), *_call_headers(record), *passed]
        if record.stream:
            await _stream(send, response, start, client.config.timeouts.total)
            record.status = response.status_code
            return
        body, data = await reply.read_json(deadline)
        record.status = response.status_code
        usage = data.get("usage")
        if isinstance(usage, dict):
            tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
            if isinstance(tin, int) and isinstance(tout, int):
                record.tokens_in, record.tokens_out = tin, tout
                record.cost_usd = round(client.config.price.cost(tin, tout), 8)
        await send_bytes(send, record.status, body, start[1:], content_type)
        if slot is not None and self.runtime.cache is not None:
            await self.runtime.cache.put_raw(slot[0], "embeddings", body)

    async def other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Any other `/v1/...` path: as is to the `passthrough:` upstream, or a clear 404."""
        policy = self.runtime.policy
        method, path = scope["method"], scope["path"]
        if policy.passthrough is None:
            await send_error(
                send,
                RouterError.not_found(
                    f"Unknown endpoint: {method} {clip(path)}. The router serves chat "
                    "completions, embeddings, completions and models; set `passthrough: "
                    "<upstream>` in the policy to pass other /v1 paths to an upstream."
                ),
            )
            return
        record = _record("passthrough")
        record.model = f"{method} {path[:200]}"
        await self._call(record, send, self._other(scope, receive, send, record))

    async def _other(
        self, scope: Scope, receive: Receive, send: Send, record: DecisionRecord
    ) -> None:
        runtime = self.runtime
        policy = runtime.policy
        assert policy.passthrough is not None
        method, path = scope["method"], scope["path"]
        headers = headers_of(scope)
        t0 = time.perf_counter()
        record.tenant = tenant_for(policy.auth, headers)
        raw = await read_body(receive, headers, policy.max_body_bytes, policy.limits.body_timeout_s)
        client = runtime.pool.clients.get(policy.passthrough)
        if client is None:
            raise RouterError.upstream(f"Upstream '{policy.passthrough}' is not running.")
        record.rule, record.targets = "passthrough", [client.name]
        forward = forwarded_request_headers(policy.headers.request, headers)
        forward += [
            (name.encode(), headers[name].encode("latin-1"))
            for name in _PASSTHROUGH_REQUEST
            if name in headers
        ]
        url = client.url_for(path[len("/v1") :], scope.get("query_string", b""))
        await self._pass(client, method, url, raw, forward, record, t0, send)

    async def _pass(
        self,
        client: UpstreamClient,
        method: str,
        url: str,
        raw: bytes,
        forward: list[tuple[bytes, bytes]],
        record: DecisionRecord,
        t0: float,
        send: Send,
    ) -> None:
        # One attempt: the router cannot know whether this path is safe to repeat.
        timeouts = client.config.timeouts
        try:
            response = await client.send_raw(method, url, raw, forward, timeouts.first_byte)
        except (TimeoutError, httpx.HTTPError) as exc:
            record.tried.append(client.name)
            record.error = "upstream_unavailable"
            raise RouterError.upstream(
                f"{client.name}: no answer ({type(exc).__name__})."
            ) from None
        record.route, record.status = client.name, response.status_code
        record.ttfb_ms = round((time.perf_counter() - t0) * 1000, 3)
        start = [*passthrough_response_headers(response.headers.raw), *_call_headers(record)]
        await _stream(send, response, start, timeouts.total, status=response.status_code)

    def _finish(self, record: DecisionRecord, t0: float) -> None:
        record.latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        CALLS.labels(record.endpoint or "", record.route or "-", str(record.status)).inc()
        self.runtime.sink.emit(record.to_dict())


async def _stream(
    send: Send,
    response: UpstreamResponse,
    start: list[tuple[bytes, bytes]],
    total: float,
    status: int | None = None,
) -> None:
    """Relay a body as it arrives; a cut ends the body where it was cut."""
    await send(
        {"type": "http.response.start", "status": status or response.status_code, "headers": start}
    )
    try:
        async with asyncio.timeout(total):
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (TimeoutError, httpx.HTTPError) as exc:
        log.warning("passthrough_cut", error=type(exc).__name__)
    finally:
        await response.aclose()
    await send({"type": "http.response.body", "body": b""})


def _record(endpoint: str) -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id(),
        ts=time.time(),
        tenant="",
        model="",
        stream=False,
        kind="call",
        endpoint=endpoint,
    )


def _call_headers(record: DecisionRecord) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-router-request-id", record.request_id.encode()),
        (b"x-router-route", (record.route or "").encode()),
        (b"x-router-cache", record.cache.encode()),
    ]


def public_models(policy: Policy) -> list[str]:
    """Every model name a client may send: chat first, then embeddings and completions."""
    names = list(policy.models)
    for extra in (policy.embeddings.models, policy.completions.models):
        names.extend(name for name in extra if name not in names)
    return names


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "hybrid-router"}


def model_list(policy: Policy) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(name) for name in public_models(policy)]}


def _unknown_model(name: str, policy: Policy, endpoint: str | None = None) -> RouterError:
    available = list(getattr(policy, endpoint).models) if endpoint else public_models(policy)
    where = f" for /v1/{endpoint}" if endpoint else ""
    return RouterError(
        404,
        f"The model '{clip(name)}' does not exist{where}. "
        f"Available: {', '.join(available) or 'none (see the policy)'}.",
        code="model_not_found",
        param="model",
    )
