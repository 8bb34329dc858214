"""One OpenAI-compatible upstream on one long-lived pooled transport.

There is deliberately no `httpx.AsyncClient` here: a client keeps a cookie jar,
and a jar shared by every request of every tenant sends one tenant's upstream
session cookie on the next tenant's request. Requests go straight to the
transport, with only the headers the router chose.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from router.deadlines import Deadline
from router.errors import RouterError, UpstreamFailure
from router.formats.anthropic_upstream import (
    ChatFromAnthropicStream,
    from_anthropic_message,
    to_anthropic_request,
)
from router.outcomes.fastmetrics import observer
from router.outcomes.metrics import BREAKER_OPEN, UPSTREAM_LATENCY
from router.policy.model import Upstream
from router.upstreams.breaker import CircuitBreaker
from router.upstreams.sse import EventBuffer, event_data, payloads
from router.upstreams.transport import (
    HeaderView,
    Timeouts,
    Transport,
    UpstreamResponse,
    as_transport,
    make_transport,
)
from router.upstreams.usage import parse_json

__all__ = ["UpstreamClient", "UpstreamFailure", "UpstreamReply", "retry_after_of"]


_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Statuses that say the router's own set-up is wrong (its key, its model name, its
# URL), not the client's request: the client is not told its key is invalid, and
# the next target may still answer.
_SETUP_STATUS = frozenset({401, 403, 404, 407})
# A 429 that asks for a longer wait than this is not retried on the same upstream.
_MAX_INLINE_WAIT_S = 1.0
_log = logging.getLogger("router.upstreams")

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class UpstreamReply:
    """An upstream response whose headers arrived; the body is still to be read."""

    upstream: UpstreamClient
    response: UpstreamResponse
    started: float
    headers_at: float
    attempts: int
    _chunks: AsyncIterator[bytes] | None = None
    # An Anthropic upstream's answer, read back as chat (None: it is chat already).
    translate: ChatFromAnthropicStream | None = None

    async def aclose(self) -> None:
        await self.response.aclose()

    async def read_json(self, deadline: float) -> tuple[bytes, dict[str, Any]]:
        """The whole body as a JSON object, or a failure the next target can follow.

        Nothing has reached the client while the body is read, so an upstream that
        stalls, cuts the body or answers 200 with something that is not JSON costs
        a fallback, not the request, and counts against its breaker.
        """
        # A body that stops arriving for `read` seconds has stalled: that is the
        # transport's read timeout; the whole answer is bounded by the deadline.
        try:
            with Deadline(max(deadline - time.perf_counter(), 0.001)):
                raw = await self.response.aread()
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._broken("body_cut", f"the answer broke off ({type(exc).__name__})") from None
        finally:
            await self.aclose()
        data = parse_json(raw)
        if data is None:
            raise self._broken("bad_response", "the answer is not a JSON object")
        if self.translate is not None:
            data = from_anthropic_message(data)
            raw = orjson.dumps(data)
        return raw, data

    async def first_events(self, deadline: float, buffer: EventBuffer) -> bytes:
        """The first complete SSE events, checked, before anything is sent to the client."""
        upstream = self.upstream
        budget = min(upstream.config.timeouts.first_byte, deadline - time.perf_counter())
        chunks = self.chunks()
        try:
            with Deadline(max(budget, 0.001)):
                async for chunk in chunks:
                    events = buffer.feed(chunk)
                    if events:
                        break
                else:
                    # The body ended: whatever is left is the last (unterminated) event.
                    events = buffer.feed(b"\n\n")
        except (TimeoutError, httpx.HTTPError) as exc:
            await self.aclose()
            raise self._broken(
                "stream_cut", f"the stream broke off ({type(exc).__name__})"
            ) from None
        first = next(payloads(events), None)
        data = event_data(first) if first is not None else None
        if first is None or (first != b"[DONE]" and data is None):
            await self.aclose()
            raise self._broken("bad_response", "the stream does not start with an event")
        # A chat or Messages error event has an `error` object; a Responses one is typed.
        if data is not None and ("error" in data or data.get("type") == "error"):
            await self.aclose()
            raise self._broken("stream_error", "the stream starts with an error event")
        return events

    def chunks(self) -> AsyncIterator[bytes]:
        """The raw body; one iterator per reply, so reading can resume after `first_events`.

        From an Anthropic upstream, the body is its Messages events rewritten as chat
        chunk events, so that everything after this reads one format.
        """
        if self._chunks is None:
            raw = self.response.aiter_raw()
            self._chunks = raw if self.translate is None else _as_chat(raw, self.translate)
        return self._chunks

    def _broken(self, kind: str, detail: str) -> UpstreamFailure:
        self.upstream.breaker.failure()
        return UpstreamFailure(self.upstream.name, kind, detail)


class UpstreamClient:
    def __init__(
        self, config: Upstream, transport: Transport | httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        # The metric children, looked up once: `labels()` locks and builds a key.
        self.latency = UPSTREAM_LATENCY.labels(config.name)
        self.observe_latency = observer(self.latency)
        gauge = BREAKER_OPEN.labels(config.name)
        self.breaker = CircuitBreaker(
            config.breaker.failures,
            config.breaker.cooldown,
            on_change=lambda opened: gauge.set(1 if opened else 0),
            probe_timeout=config.timeouts.total,
        )
        t = config.timeouts
        timeouts = Timeouts(connect=t.connect, read=t.read)
        self.transport = (
            as_transport(transport, timeouts)
            if transport is not None
            else make_transport(max_connections=config.max_connections, timeouts=timeouts)
        )
        url = httpx.URL(config.base_url)
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        self.anthropic = config.kind == "anthropic"
        if self.anthropic:
            # Anthropic's own API: its key header and version, chat bodies translated.
            headers["anthropic-version"] = config.anthropic_version
            if config.api_key:
                headers["x-api-key"] = config.api_key
        elif config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        elif url.username or url.password:
            # userinfo in base_url is basic auth; it is sent as a header, never in the URL.
            pair = f"{url.username}:{url.password}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.base = url.copy_with(username=None, password=None)
        path = "/messages" if self.anthropic else "/chat/completions"
        self.url = str(self.base.join(self.base.path.rstrip("/") + path))
        self._headers = tuple(headers.items())

    def payload(self, body: dict[str, Any]) -> bytes:
        if self.anthropic:
            return orjson.dumps(to_anthropic_request(body, self.config.model))
        out = dict(body)
        out["model"] = self.config.model
        return orjson.dumps(out)

    def url_for(self, path: str, query: bytes = b"") -> str:
        """`path` (below the API root, e.g. "/embeddings") on this upstream's base URL."""
        url = self.base.copy_with(path=self.base.path.rstrip("/") + path)
        return str(url.copy_with(query=query) if query else url)

    async def open(
        self,
        payload: bytes,
        deadline: float,
        extra: Headers = (),
        url: str | None = None,
        method: str = "POST",
        *,
        native: bool = False,
    ) -> UpstreamReply:
        """Send the request; retry connect errors, 429 and 5xx with backoff.

        Returns once a 2xx status and headers arrived. Nothing has reached the
        client yet at that point, so retrying is still safe. `native`: the payload
        is in the client's own API, and so is the answer (no reading back as chat).
        """
        started = time.perf_counter()
        attempt = 0
        breaker = self.breaker
        while True:
            attempt += 1
            # A closed circuit (nearly always) lets the request through and probes
            # nothing: known without the breaker's state machine.
            probe = breaker.opened_at is not None and breaker.state == "half-open"
            if breaker.opened_at is not None and not breaker.allow():
                raise UpstreamFailure(
                    self.name,
                    "circuit_open",
                    "circuit breaker is open",
                    status=breaker.last_status,
                    retry_after=breaker.remaining(),
                )
            outcome = await self._once(method, url or self.url, payload, extra, deadline, probe)
            if not isinstance(outcome, UpstreamFailure):
                self.breaker.success()
                reply = UpstreamReply(self, outcome, started, time.perf_counter(), attempt)
                if self.anthropic and not native:
                    reply.translate = ChatFromAnthropicStream(include_usage=_asks_usage(payload))
                return reply
            if outcome.kind == "client_error":
                # The request's fault, not the upstream's: no retry, no fallback,
                # no breaker count. Hand it to the client.
                self.breaker.success()
                raise outcome
            self.breaker.failure(outcome.status)
            wait = self._retry_wait(outcome, attempt, deadline)
            if wait is None:
                raise outcome
            await asyncio.sleep(wait)

    async def _once(
        self,
        method: str,
        url: str,
        payload: bytes,
        extra: Headers,
        deadline: float,
        probe: bool,
    ) -> UpstreamResponse | UpstreamFailure:
        """One attempt: a 2xx response (body unread), or what went wrong."""
        try:
            budget = min(self.config.timeouts.first_byte, deadline - time.perf_counter())
            if budget <= 0:
                raise TimeoutError
            with Deadline(budget):
                response = await self._send(method, url, payload, extra)
        except (TimeoutError, httpx.TimeoutException):
            return UpstreamFailure(self.name, "timeout", "no response before the timeout")
        except httpx.TransportError as exc:
            if _refused(exc):
                return UpstreamFailure(self.name, "connect_error", "connection refused")
            return UpstreamFailure(self.name, "connect_error", type(exc).__name__)
        except BaseException:
            # Cancelled (the client left, or a timeout above us): a probe that never
            # reports would keep the circuit half-open for good.
            if probe:
                self.breaker.abandon()
            raise
        if 200 <= response.status_code < 300:
            return response
        return await self._failure(response)

    def _retry_wait(self, failure: UpstreamFailure, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before trying this upstream again, or None: move on."""
        config = self.config
        wait: float = config.backoff * 2.0 ** (attempt - 1)
        if failure.retry_after is not None:
            wait = max(wait, failure.retry_after)
        if (
            attempt > config.retries
            or failure.kind in ("http_3xx", "upstream_setup")
            or wait > _MAX_INLINE_WAIT_S
            or time.perf_counter() + wait >= deadline
        ):
            return None
        return wait

    async def _failure(self, response: UpstreamResponse) -> UpstreamFailure:
        status = response.status_code
        detail, raw = await _error_detail(response, self.config.api_key)
        if status < 400:
            # A redirect is never followed (it could point anywhere); a 1xx final
            # status is not an answer either.
            return UpstreamFailure(self.name, "http_3xx", f"HTTP {status} (not followed)", status)
        if status in _SETUP_STATUS:
            return UpstreamFailure(self.name, "upstream_setup", detail, status)
        if status in _RETRY_STATUS:
            return UpstreamFailure(
                self.name,
                f"http_{status}",
                detail,
                status,
                headers=response.headers,
                retry_after=retry_after_of(response.headers),
            )
        return UpstreamFailure(self.name, "client_error", detail, status, raw, response.headers)

    async def send_once(self, payload: bytes) -> UpstreamResponse:
        """One attempt, body read, outside the breaker and retries (shadow traffic)."""
        response = await self._send("POST", self.url, payload, ())
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def send_raw(
        self, method: str, url: str, payload: bytes, extra: Headers, first_byte: float
    ) -> UpstreamResponse:
        """One attempt of any request, body not read, outside the breaker (pass-through)."""
        async with asyncio.timeout(first_byte):
            return await self._send(method, url, payload, extra)

    async def _send(
        self, method: str, url: str, payload: bytes, extra: Headers
    ) -> UpstreamResponse:
        headers: Sequence[tuple[str, str]] = self._headers
        if extra:
            headers = [*headers, *((k.decode("latin-1"), v.decode("latin-1")) for k, v in extra)]
        response = await self.transport.send(method, url, headers, payload)
        if _log.isEnabledFor(logging.INFO):
            _log.info('HTTP Request: %s %s "%d"', method, url, response.status_code)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _as_chat(
    raw: AsyncIterator[bytes], translate: ChatFromAnthropicStream
) -> AsyncIterator[bytes]:
    buffer = EventBuffer()
    async for chunk in raw:
        out: list[bytes] = []
        for payload in payloads(buffer.feed(chunk)):
            event = event_data(payload)
            if event is None:
                continue
            try:
                chunks = translate.feed(event)
            except RouterError as exc:  # an `error` event: the chat stream's error event
                out.append(b"data: " + exc.body() + b"\n\n")
                continue
            out.extend(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
            if translate.done:
                out.append(b"data: [DONE]\n\n")
        if out:
            yield b"".join(out)


def _asks_usage(payload: bytes) -> bool:
    # The chat body asked for usage when it was turned into this payload; Anthropic
    # always reports it, so the translated stream carries it whenever it may.
    return b'"stream":true' in payload


def retry_after_of(headers: HeaderView) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def redact(raw: bytes, secret: str | None) -> bytes:
    """An upstream may echo the key it was sent; it never goes further than here."""
    if secret and len(secret) >= 4 and secret.encode() in raw:
        raw = raw.replace(secret.encode(), b"[redacted]")
    return raw


async def _error_detail(response: UpstreamResponse, secret: str | None) -> tuple[str, bytes]:
    try:
        raw = redact(await response.aread(), secret)
    except httpx.HTTPError:
        raw = b""
    finally:
        await response.aclose()
    try:
        message = json.loads(raw)["error"]["message"]
        if isinstance(message, str):
            return f"HTTP {response.status_code}: {message[:300]}", raw
    except (ValueError, KeyError, TypeError):
        pass
    return f"HTTP {response.status_code}", raw


def _refused(exc: BaseException) -> bool:
    """A connection the upstream refused, told apart from other connect errors."""
    cause = exc.__cause__
    if cause is None:
        return False
    if isinstance(cause, ConnectionRefusedError):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return False
    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
        cause, aiohttp.ServerTimeoutError
    )
