"""An answer in the client's own API, relayed as the upstream wrote it.

A Responses client on an upstream that lists `responses` in its `apis`, and a
Messages client on one that lists `messages` (an Anthropic upstream does by
default), need no translation: the request goes on as the client wrote it (the
model name and credentials the upstream's; for `previous_response_id`, the
stored conversation spelled out) and the answer, plain or streamed, comes back
byte for byte. Each attempt picks its own wire format (`native_api`), so a
fallback to a chat-only target still gets the translation.

What the router reads on the way past: usage (record, cost, budgets), the answer
as a chat completion where it has a faithful one (the cache, the record's
`answer`), and, for Responses, the final object (the response store).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from router.cache import assemble_stream
from router.errors import RouterError
from router.exchange import (
    Exchange,
    StreamRelay,
    note_usage,
    run_relay,
    send_whole,
)
from router.formats.anthropic_upstream import (
    MessagesEvents,
    chat_chunks,
    from_anthropic_message,
    has_chat_form,
)
from router.formats.dialect import Output, TranslatedOutput
from router.formats.errors import Dialect, sse_event
from router.formats.responses_upstream import (
    ResponsesEvents,
    chat_from_response,
    chat_usage,
    native_request,
    output_text,
)
from router.policy.model import Api, Upstream
from router.upstreams.client import UpstreamClient, UpstreamReply
from router.upstreams.sse import EventBuffer, event_data, payloads, split_events
from router.upstreams.usage import Usage, answer_of, usage_of

__all__ = ["native_api", "open_native", "relay_native_body", "relay_native_stream"]

_API: dict[Dialect, Api] = {"responses": "responses", "anthropic": "messages"}
_PATH: dict[Api, str] = {"responses": "/responses", "messages": "/messages"}


def native_api(out: Output, config: Upstream) -> Api | None:
    """The client's API when this upstream speaks it (sent as is), else None (translated)."""
    api = _API.get(out.dialect)
    if api is None or api not in config.apis:
        return None
    return api


async def open_native(
    ex: Exchange, client: UpstreamClient, api: Api, deadline: float
) -> UpstreamReply:
    out = ex.out
    assert isinstance(out, TranslatedOutput)  # a non-chat dialect always is
    model = client.config.model
    if api == "responses":
        body = native_request(out.request, model, out.history)
    else:
        body = {**out.request, "model": model}
    url = client.url_for(_PATH[api])
    return await client.open(orjson.dumps(body), deadline, ex.forward, url, native=True)


def _read(api: Api, data: dict[str, Any]) -> tuple[Usage | None, str | None, dict[str, Any] | None]:
    """A whole answer's usage, text, and chat completion (only where it is a faithful one)."""
    if api == "responses":
        return (
            usage_of({"usage": chat_usage(data.get("usage"))}),
            output_text(data),
            chat_from_response(data),
        )
    completion = from_anthropic_message(data)
    cacheable = completion if has_chat_form(data) else None
    return usage_of(completion), answer_of(completion), cacheable


async def relay_native_body(
    ex: Exchange,
    reply: UpstreamReply,
    raw: bytes,
    data: dict[str, Any],
    upstream_s: float,
    api: Api,
) -> None:
    """Send a whole answer in the client's API (already read and checked) as it came."""
    record, upstream = ex.record, reply.upstream
    record.upstream_ms = round(upstream_s * 1000, 3)
    record.overhead_ms = round(max(time.perf_counter() - ex.t0 - upstream_s, 0.0) * 1000, 3)
    usage, text, completion = _read(api, data)
    note_usage(record, upstream, usage)
    if ex.policy.record.prompts:
        record.answer = text
    status = record.status = reply.response.status_code
    if ex.slot is not None and completion is not None:
        ex.slot.offer(upstream.name, status, completion)
    if api == "responses":
        await _keep(ex.out, data)
    content_type = reply.response.headers.get("content-type", "application/json").encode()
    await send_whole(ex, reply, raw, content_type)


async def relay_native_stream(
    ex: Exchange,
    reply: UpstreamReply,
    first: bytes,
    buffer: EventBuffer,
    upstream_s: float,
    deadline: float,
    api: Api,
) -> None:
    """Pass a stream in the client's API on event by event, as it came."""
    reader: _Reader = ResponsesEvents() if api == "responses" else MessagesEvents()
    await run_relay(_NativeRelay(ex, reply, buffer, reader), first, upstream_s, deadline)


async def _keep(out: Output, response: dict[str, Any]) -> None:
    """Store a Responses answer for `previous_response_id`, under the upstream's id."""
    if isinstance(out, TranslatedOutput) and isinstance(response.get("id"), str):
        await out.keep(response)


class _Reader(Protocol):
    api: str
    done: bool
    failed: bool

    def reads(self, kind: str | None) -> bool: ...

    def feed(self, event: dict[str, Any]) -> None: ...

    def usage(self) -> dict[str, Any] | None: ...

    def cut(self, error: RouterError, sequence_number: int) -> list[dict[str, Any]]: ...


def _kind(event: bytes) -> str | None:
    """The name on an event's `event:` line (OpenAI and Anthropic both send one)."""
    if not event.startswith(b"event:"):
        return None
    end = event.find(b"\n")
    return event[6:end].strip().decode("latin-1") if end > 0 else None


class _NativeRelay(StreamRelay):
    """The stream passes unchanged; only the events that say how it ends are parsed,
    unless the whole answer is wanted (the cache, or the record's `answer`)."""

    def __init__(
        self, ex: Exchange, reply: UpstreamReply, buffer: EventBuffer, reader: _Reader
    ) -> None:
        super().__init__(ex, reply, buffer, False)
        self.reader = reader
        self.sent = 0  # events passed on: what a Responses cut numbers its events after
        # A Responses stream's last event holds the whole answer; a Messages stream's
        # answer is in all its events, which are then kept (parsed).
        whole = reader.api == "messages" and (self.kept is not None or self.keep_text)
        self.events: list[dict[str, Any]] | None = [] if whole else None
        self.kept = None  # kept parsed (`events`), not as bytes

    async def start(self) -> None:
        await self.send_head(self.upstream_type())  # the upstream's own events: no opening

    async def forward(self, events: bytes) -> None:
        reader, kept = self.reader, self.events
        for event in split_events(events):
            self.sent += 1
            if kept is None and not reader.reads(_kind(event)):
                continue
            payload = next(payloads(event), None)
            data = event_data(payload) if payload is not None else None
            if data is not None:
                reader.feed(data)
                if kept is not None:
                    kept.append(data)
        await self.ex.send({"type": "http.response.body", "body": events, "more_body": True})

    async def end(self) -> None:
        ex, record, reader, upstream = self.ex, self.ex.record, self.reader, self.reply.upstream
        if record.error is None and reader.failed:
            record.error = "stream_error"  # the upstream's own error event, passed on as is
        elif record.error is None and not reader.done:
            record.error = "stream_cut"
        if record.error == "stream_cut":
            message = f"{upstream.name}: the stream broke off."
            error = RouterError(502, message, type_="api_error", code="stream_cut")
            tail = b"".join(sse_event(str(e["type"]), e) for e in reader.cut(error, self.sent))
            await ex.send({"type": "http.response.body", "body": tail, "more_body": True})
        note_usage(record, upstream, usage_of({"usage": reader.usage()}))
        final = reader.response if isinstance(reader, ResponsesEvents) else None
        if final is not None and reader.done and not reader.failed:
            await _keep(ex.out, final)  # before the last bytes: the next turn may follow at once
        await ex.send({"type": "http.response.body", "body": b""})
        completion = self._completion(final)
        if self.keep_text:
            record.answer = output_text(final) if final is not None else answer_of(completion or {})
        if completion is not None and record.error is None and ex.slot is not None:
            ex.slot.offer(upstream.name, self.reply.response.status_code, completion)

    def _completion(self, final: dict[str, Any] | None) -> dict[str, Any] | None:
        if final is not None:
            return chat_from_response(final) if self.ex.slot is not None else None
        if self.events is None:
            return None
        chunks = chat_chunks(self.events)
        return assemble_stream([orjson.dumps(c) for c in chunks]) if chunks else None
