"""One request after its decision: the relay of an upstream answer.

`Exchange` carries what the steps after `decide()` share; `relay_body` and
`relay_stream` pass an upstream's answer to the client (events as they arrive,
never buffered), note usage and cost, and offer complete answers to the cache
slot (`router.caching`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from starlette.types import Message, Send

from router.cache import assemble_stream
from router.deadlines import Deadline
from router.errors import RouterError
from router.formats.dialect import CHAT, Output
from router.ingress.request import ChatRequest
from router.outcomes.record import DecisionRecord
from router.policy.decide import Decision
from router.policy.model import Policy
from router.upstreams.client import UpstreamClient, UpstreamReply
from router.upstreams.headers import passed_response_headers
from router.upstreams.sse import EventBuffer, event_data, payloads, split_events
from router.upstreams.usage import Usage, answer_of, usage_of

__all__ = [
    "Exchange",
    "StreamRelay",
    "note_usage",
    "relay_body",
    "relay_stream",
    "response_headers",
    "run_relay",
    "send_whole",
]

if TYPE_CHECKING:
    from router.caching import CacheSlot

log = structlog.get_logger("router")


@dataclass(slots=True)
class Exchange:
    """One request on its way through: what the steps after `decide()` share."""

    policy: Policy
    request: ChatRequest
    decision: Decision
    record: DecisionRecord
    t0: float
    respond: Send
    slot: CacheSlot | None = None  # set by the cache step on a miss
    answered: bool = False  # the response has started: an error can no longer be sent
    finished: bool = False  # the response has ended
    upstream_s: float = 0.0  # time spent on targets that failed before this one
    out: Output = CHAT  # the client's dialect: how its answer is written
    # Client headers passed on to the upstream (the policy's `headers.request`).
    forward: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Set when the request cannot be translated whole: only targets that speak the
    # client's API can take it, and this is the answer when none does.
    deferred: RouterError | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.answered = True
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self.respond(message)


def response_headers(
    record: DecisionRecord, decision: Decision, content_type: bytes
) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type),
        (b"x-router-request-id", record.request_id.encode()),
        (b"x-router-route", (record.route or "").encode()),
        (b"x-router-rule", decision.rule.encode()),
        # A failing store reads as a miss to the client; the record says "error".
        (b"x-router-cache", b"miss" if record.cache == "error" else record.cache.encode()),
        (b"x-router-overhead-ms", f"{record.overhead_ms or 0:.3f}".encode()),
    ]
    if record.score is not None:
        headers.append((b"x-router-score", f"{record.score:.4f}".encode()))
    return headers


async def relay_body(
    ex: Exchange, reply: UpstreamReply, raw: bytes, data: dict[str, Any], upstream_s: float
) -> None:
    """Send a complete upstream answer (already read and checked) to the client."""
    record = ex.record
    now = time.perf_counter()
    record.upstream_ms = round(upstream_s * 1000, 3)
    record.overhead_ms = round(max(now - ex.t0 - upstream_s, 0.0) * 1000, 3)
    note_usage(record, reply.upstream, usage_of(data))
    if ex.policy.record.prompts:
        record.answer = answer_of(data)
    if ex.slot is not None:
        ex.slot.offer(reply.upstream.name, reply.response.status_code, data)
    record.status = reply.response.status_code
    content_type = reply.response.headers.get("content-type", "application/json").encode()
    if not ex.out.passthrough:
        raw, content_type = ex.out.plain(data), b"application/json"
        await ex.out.final()
    await send_whole(ex, reply, raw, content_type)


async def send_whole(ex: Exchange, reply: UpstreamReply, raw: bytes, content_type: bytes) -> None:
    """A whole answer to the client: the router's headers, the upstream's it lets
    through, and `raw` as the body, with the record's status."""
    headers = response_headers(ex.record, ex.decision, content_type)
    headers += passed_response_headers(ex.policy.headers.response, reply.response.headers.raw)
    headers.append((b"content-length", str(len(raw)).encode()))
    await ex.send({"type": "http.response.start", "status": ex.record.status, "headers": headers})
    await ex.send({"type": "http.response.body", "body": raw})


async def relay_stream(
    ex: Exchange,
    reply: UpstreamReply,
    first: bytes,
    buffer: EventBuffer,
    upstream_s: float,
    drop_usage: bool,
    deadline: float,
) -> None:
    """Pass the stream on event by event; `first` holds the events already read and checked."""
    await run_relay(StreamRelay(ex, reply, buffer, drop_usage), first, upstream_s, deadline)


async def run_relay(relay: StreamRelay, first: bytes, upstream_s: float, deadline: float) -> None:
    """Start, pump and end a stream relay, timing the router's part and the upstream's."""
    record = relay.ex.record
    record.overhead_ms = round(max(time.perf_counter() - relay.ex.t0 - upstream_s, 0.0) * 1000, 3)
    await relay.start()
    began = time.perf_counter()
    await relay.pump(first, deadline)
    record.upstream_ms = round((upstream_s + time.perf_counter() - began) * 1000, 3)
    await relay.end()


class StreamRelay:
    """One upstream stream on its way to the client: what has passed, what is kept."""

    def __init__(
        self, ex: Exchange, reply: UpstreamReply, buffer: EventBuffer, drop_usage: bool
    ) -> None:
        self.ex, self.reply, self.buffer, self.drop_usage = ex, reply, buffer, drop_usage
        self.keep_text = ex.policy.record.prompts
        slot = ex.slot
        wanted = slot is not None and slot.wants(reply.upstream.name, reply.response.status_code)
        # The stream's events, kept for the cache when this answer may be stored.
        self.kept: list[bytes] | None = [] if wanted else None
        self.parts: list[str] = []
        self.saw_done = False

    async def start(self) -> None:
        ex = self.ex
        content_type = b"text/event-stream"
        if ex.out.passthrough:
            content_type = self.upstream_type()
        await self.send_head(content_type)
        if opening := ex.out.start():
            await ex.send({"type": "http.response.body", "body": opening, "more_body": True})

    def upstream_type(self) -> bytes:
        return self.reply.response.headers.get("content-type", "text/event-stream").encode()

    async def send_head(self, content_type: bytes) -> None:
        """The response start: the upstream's status, the router's headers and the
        upstream's it lets through."""
        ex, response = self.ex, self.reply.response
        ex.record.status = response.status_code
        headers = response_headers(ex.record, ex.decision, content_type)
        headers += passed_response_headers(ex.policy.headers.response, response.headers.raw)
        headers.append((b"cache-control", b"no-cache"))
        await ex.send(
            {"type": "http.response.start", "status": ex.record.status, "headers": headers}
        )

    async def forward(self, events: bytes) -> None:
        ex = self.ex
        if b"[DONE]" in events:
            self.saw_done = True
        if self.kept is not None:
            self.kept.append(events)
        if self.keep_text:
            events = inspect_events(
                events, ex.record, self.reply.upstream, self.parts, self.drop_usage, True
            )
        elif _USAGE in events:
            events = note_stream_usage(events, ex.record, self.reply.upstream, self.drop_usage)
        if events and not ex.out.passthrough:
            events = ex.out.events(events)
        if events:
            await ex.send({"type": "http.response.body", "body": events, "more_body": True})

    async def pump(self, first: bytes, deadline: float) -> None:
        """Relay until the upstream ends; a cut or a stall is noted, not raised."""
        record, reply = self.ex.record, self.reply
        try:
            await self.forward(first)
            with Deadline(max(deadline - time.perf_counter(), 0.001)):
                async for chunk in reply.chunks():
                    if events := self.buffer.feed(chunk):
                        await self.forward(events)
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
        rest = self.buffer.pending
        if rest.strip() and record.error is None:
            # An upstream that ends its last event without the blank line: pass it on.
            await self.forward(rest + b"\n\n")

    async def end(self) -> None:
        ex, record, reply = self.ex, self.ex.record, self.reply
        if not self.saw_done and record.error is None:
            record.error = "stream_cut"
        if record.error == "stream_cut":
            # Tell the client the answer is incomplete rather than ending silently:
            # the SDKs raise on an `error` event.
            message = f"{reply.upstream.name}: the stream broke off."
            tail = ex.out.cut(RouterError(502, message, type_="api_error", code="stream_cut"))
            await ex.send({"type": "http.response.body", "body": tail, "more_body": True})
        else:
            await ex.out.final()
        if self.keep_text:
            record.answer = "".join(self.parts)
        await ex.send({"type": "http.response.body", "body": b""})
        if self.kept is not None and record.error is None and ex.slot is not None:
            completion = assemble_stream(list(payloads(b"".join(self.kept))))
            if completion is not None:
                ex.slot.offer(reply.upstream.name, reply.response.status_code, completion)


def inspect_events(
    events: bytes,
    record: DecisionRecord,
    upstream: UpstreamClient,
    parts: list[str],
    drop_usage: bool,
    keep_text: bool,
) -> bytes:
    kept: list[bytes] = []
    for event in split_events(events):
        if not keep_text and b'"prompt_tokens"' not in event:
            # Only usage is wanted: the text chunks pass without being parsed.
            kept.append(event + b"\n\n")
            continue
        data, usage_only = _read_event(event, record, upstream)
        if data is not None:
            if usage_only and drop_usage:
                continue
            if keep_text:
                for choice in data.get("choices") or ():
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                        parts.append(delta["content"])
        kept.append(event + b"\n\n")
    return b"".join(kept)


_USAGE = b'"prompt_tokens"'


def note_stream_usage(
    events: bytes, record: DecisionRecord, upstream: UpstreamClient, drop_usage: bool
) -> bytes:
    """`inspect_events` when only usage is wanted: the events that carry it are found
    by search and read; the text chunks around them pass as they came, unsplit
    (splitting and re-joining every event of a stream cost more than relaying it)."""
    if b"\r" in events:  # as `split_events` does: CRLF and CR line ends become LF
        events = events.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    # What follows the last whole event is not passed on, as in `split_events`.
    limit = _event_start(events, len(events))
    kept: list[bytes] = []
    begin = 0  # the start of what is not yet in `kept`
    at = events.find(_USAGE, 0, limit)
    while at >= 0:
        start = _event_start(events, at)
        end = events.find(b"\n\n", at)
        if _read_event(events[start:end], record, upstream)[1] and drop_usage:
            kept.append(events[begin:start])
            begin = end + 2
        at = events.find(_USAGE, end, limit)
    if not kept:
        return events if limit == len(events) else events[:limit]
    kept.append(events[begin:limit])
    return b"".join(kept)


def _read_event(
    event: bytes, record: DecisionRecord, upstream: UpstreamClient
) -> tuple[dict[str, Any] | None, bool]:
    """One event's data, its usage noted on the record; and whether the event is a
    usage chunk only (no choices), the kind asked for on the client's behalf."""
    payload = next(payloads(event), None)
    data = event_data(payload) if payload is not None else None
    if data is None:
        return None, False
    usage = usage_of(data)
    if usage is None:
        return data, False
    note_usage(record, upstream, usage)
    return data, not data.get("choices")


def _event_start(events: bytes, at: int) -> int:
    """Where the event holding `events[at]` starts, as `bytes.split(b"\\n\\n")` cuts it:
    pairs of newlines from the left, so after an odd run of them the event starts
    with the one left over."""
    pair = events.rfind(b"\n\n", 0, at)
    if pair < 0:
        return 0
    run = pair  # the run of newlines that this pair ends
    while run > 0 and events[run - 1] == 10:
        run -= 1
    return run + (pair + 2 - run) // 2 * 2


def note_usage(record: DecisionRecord, upstream: UpstreamClient, usage: Usage | None) -> None:
    if usage is None:
        return
    record.tokens_in, record.tokens_out = usage.tokens_in, usage.tokens_out
    record.cost_usd = usage.cost(upstream.config.price)
