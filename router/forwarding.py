"""Forward a decided request: each target in order until one answers, then relay it.

Nothing reaches the client until an upstream's whole plain body, or its first
stream event, is in and checked; until then a failure moves on to the next
target. When none answers, the client gets the one error it can act on
(`router.upstreams.failures.exhausted`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from starlette.types import Receive

from router import tracing
from router.deadlines import call_later
from router.errors import ClientGone, UpstreamFailure
from router.exchange import Exchange, relay_body, relay_stream
from router.ingress.request import ChatRequest
from router.native import native_api, open_native, relay_native_body, relay_native_stream
from router.outcomes.metrics import FALLBACKS
from router.responses import send_raw_error, wait_disconnect
from router.upstreams.client import UpstreamClient
from router.upstreams.failures import exhausted
from router.upstreams.headers import passed_response_headers
from router.upstreams.pool import UpstreamPool
from router.upstreams.sse import EventBuffer

__all__ = ["forward"]

log = structlog.get_logger("router")


# How long a request runs before a watcher starts listening for its client leaving.
# Most answers are in before then, and a watcher task per request cost ~3% of a
# pass-through request's CPU; a client that leaves earlier is noticed at this mark.
_WATCH_AFTER_S = 0.05


async def forward(pool: UpstreamPool, ex: Exchange, receive: Receive) -> None:
    """Try the decision's targets in order, then relay the first that answers.

    A watcher on `receive` cancels this task when the client disconnects, so
    the upstream request stops instead of running on. (The work runs inline:
    a child task per request plus `asyncio.wait` cost ~5% of a request.)
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await wait_disconnect(receive)
        # After the last body message the server reports a disconnect too:
        # that is the normal end, not a client leaving.
        if not ex.finished:
            gone = True
            task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = call_later(_WATCH_AFTER_S, start_watching)
    try:
        await _attempt(pool, ex)
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise ClientGone from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _attempt(pool: UpstreamPool, ex: Exchange) -> None:
    """The targets in order until one answers; the client gets its answer or one error."""
    body, added_usage = _with_usage(ex.request)
    failures: list[UpstreamFailure] = []
    deadline_base = time.perf_counter()
    for name in ex.decision.targets:
        client = pool.clients.get(name)
        if client is None:
            continue
        if ex.deferred is not None and native_api(ex.out, client.config) is None:
            continue  # it would have to translate what cannot be translated
        began = time.perf_counter()
        try:
            with tracing.attempt_span(ex, client):
                await _try(ex, client, body, added_usage, deadline_base)
            return
        except UpstreamFailure as failure:
            ex.upstream_s += time.perf_counter() - began
            if failure.kind == "client_error":
                await _relay_client_error(ex, client, failure)
                return
            failures.append(failure)
            ex.record.tried.append(name)
            FALLBACKS.labels(name, failure.kind).inc()
            log.warning(
                "upstream_failed",
                upstream=name,
                error=failure.kind,
                detail=failure.detail,
                request_id=ex.record.request_id,
            )
    if not failures and ex.deferred is not None:
        raise ex.deferred
    ex.record.error = failures[-1].kind if failures else "no_upstream"
    raise exhausted(failures, ex.policy.headers.response)


async def _try(
    ex: Exchange,
    client: UpstreamClient,
    body: dict[str, Any],
    added_usage: bool,
    deadline_base: float,
) -> None:
    """One target: send, read until nothing can fail unseen, then relay to the client.

    Until the first event (or the whole body) is in, nothing has reached the
    client, so a stall, a cut or garbage raises `UpstreamFailure` and the next
    target is tried.
    """
    record = ex.record
    deadline = deadline_base + client.config.timeouts.total
    began = time.perf_counter()
    # Per attempt: a fallback target may speak the client's API where this one does not.
    api = native_api(ex.out, client.config)
    if api is None:
        reply = await client.open(client.payload(body), deadline, ex.forward)
    else:
        reply = await open_native(ex, client, api, deadline)
    buffer = EventBuffer()
    if ex.request.stream:
        first = await reply.first_events(deadline, buffer)
    else:
        raw, data = await reply.read_json(deadline)
    client.observe_latency(reply.headers_at - reply.started)
    record.route, record.upstream_model = client.name, client.config.model
    record.ttfb_ms = round((reply.headers_at - ex.t0) * 1000, 3)
    upstream_s = ex.upstream_s + time.perf_counter() - began
    if api is not None:
        if ex.request.stream:
            await relay_native_stream(ex, reply, first, buffer, upstream_s, deadline, api)
        else:
            await relay_native_body(ex, reply, raw, data, upstream_s, api)
    elif ex.request.stream:
        await relay_stream(ex, reply, first, buffer, upstream_s, added_usage, deadline)
    else:
        await relay_body(ex, reply, raw, data, upstream_s)


async def _relay_client_error(
    ex: Exchange, client: UpstreamClient, failure: UpstreamFailure
) -> None:
    """An upstream's own 4xx is the request's fault: the client reads it as written."""
    record = ex.record
    record.route, record.upstream_model = client.name, client.config.model
    record.status, record.error = failure.status or 400, "upstream_client_error"
    raw = failure.headers.raw if failure.headers is not None else ()
    passed = passed_response_headers(ex.policy.headers.response, raw)
    # A request sent in the client's own API was refused in that API: pass it on as
    # is. A chat request to an Anthropic upstream was translated: its refusal is not.
    if ex.out.dialect == "chat":
        as_is = not client.anthropic
    else:
        as_is = native_api(ex.out, client.config) is not None
    await send_raw_error(ex.send, failure, record, passed, ex.out.dialect, as_is)


def _with_usage(request: ChatRequest) -> tuple[dict[str, Any], bool]:
    """A stream asks the upstream for usage so that cost can be recorded; the extra
    usage-only chunk is then not relayed (the flag)."""
    body = request.body
    if not request.stream or request.include_usage:
        return body, False
    options = {**(body.get("stream_options") or {}), "include_usage": True}
    return {**body, "stream_options": options}, True
