"""One OpenAI-compatible upstream on one long-lived pooled `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from router.outcomes.metrics import BREAKER_OPEN
from router.policy.model import Upstream
from router.upstreams.breaker import CircuitBreaker
from router.upstreams.transport import make_transport

__all__ = ["UpstreamClient", "UpstreamFailure", "UpstreamReply"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_httpx_log = logging.getLogger("httpx")


class UpstreamFailure(Exception):
    """The upstream gave no usable answer; `kind` is the error class for records."""

    def __init__(
        self,
        upstream: str,
        kind: str,
        detail: str,
        status: int | None = None,
        body: bytes | None = None,
    ) -> None:
        super().__init__(f"{upstream}: {detail}")
        self.upstream = upstream
        self.kind = kind
        self.detail = detail
        self.status = status
        self.body = body


@dataclass(slots=True)
class UpstreamReply:
    """An upstream response whose headers arrived; the body is still to be read."""

    upstream: UpstreamClient
    response: httpx.Response
    started: float
    headers_at: float
    attempts: int

    async def aclose(self) -> None:
        await self.response.aclose()


class UpstreamClient:
    def __init__(self, config: Upstream, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.name = config.name
        gauge = BREAKER_OPEN.labels(config.name)
        self.breaker = CircuitBreaker(
            config.breaker.failures,
            config.breaker.cooldown,
            on_change=lambda opened: gauge.set(1 if opened else 0),
        )
        t = config.timeouts
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)
        self.transport = transport or make_transport(max_connections=config.max_connections)
        # The client owns the transport (aclose) and the cookie jar; `_send` skips its
        # per-request layers (URL merge, auth, redirects, hooks), which cost ~15% of a
        # proxied request's CPU, and does what of them applies to this one POST.
        self.client = httpx.AsyncClient(
            base_url=config.base_url, headers=headers, timeout=timeout, transport=self.transport
        )
        self.url = f"{config.base_url}/chat/completions"
        self._url = httpx.URL(self.url)
        self._headers = httpx.Headers(self.client.headers)
        self._extensions = {"timeout": timeout.as_dict()}
        # userinfo in base_url means auth that only AsyncClient.send applies.
        self._direct = not (self._url.username or self._url.password)
        self._has_cookies = False

    def payload(self, body: dict[str, Any]) -> bytes:
        out = dict(body)
        out["model"] = self.config.model
        return orjson.dumps(out)

    async def open(self, payload: bytes, deadline: float) -> UpstreamReply:
        """Send the request; retry connect errors, 429 and 5xx with backoff.

        Returns once a 2xx status and headers arrived. Nothing has reached the
        client yet at that point, so retrying is still safe.
        """
        config = self.config
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            if not self.breaker.allow():
                raise UpstreamFailure(self.name, "circuit_open", "circuit breaker is open")
            failure: UpstreamFailure
            try:
                budget = min(config.timeouts.first_byte, deadline - time.perf_counter())
                if budget <= 0:
                    raise TimeoutError
                async with asyncio.timeout(budget):
                    response = await self._send(payload)
            except (TimeoutError, httpx.TimeoutException) as exc:
                if _refused(exc):
                    failure = UpstreamFailure(self.name, "connect_error", "connection refused")
                else:
                    failure = UpstreamFailure(
                        self.name, "timeout", "no response before the timeout"
                    )
            except httpx.TransportError as exc:
                failure = UpstreamFailure(self.name, "connect_error", type(exc).__name__)
            else:
                if response.status_code < 400:
                    self.breaker.success()
                    return UpstreamReply(self, response, started, time.perf_counter(), attempt)
                detail, raw = await _error_detail(response)
                status = response.status_code
                if status not in _RETRY_STATUS:
                    # A 4xx other than 429 is the request's fault, not the upstream's:
                    # no retry, no fallback, no breaker count. Hand it to the client.
                    self.breaker.success()
                    raise UpstreamFailure(self.name, "client_error", detail, status, raw)
                failure = UpstreamFailure(self.name, f"http_{status}", detail, status)
            self.breaker.failure()
            if attempt > config.retries or time.perf_counter() >= deadline:
                raise failure
            await asyncio.sleep(config.backoff * (2 ** (attempt - 1)))

    async def send_once(self, payload: bytes) -> httpx.Response:
        """One attempt, body read, outside the breaker and retries (shadow traffic)."""
        response = await self._send(payload)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def _send(self, payload: bytes) -> httpx.Response:
        """`client.send(client.build_request("POST", url, content=payload), stream=True)`."""
        if not self._direct:
            request = self.client.build_request("POST", self.url, content=payload)
            return await self.client.send(request, stream=True)
        cookies = self.client.cookies
        request = httpx.Request(
            "POST",
            self._url,
            headers=self._headers,
            content=payload,
            extensions=self._extensions,
            # Testing the jar itself walks every cookie; a flag set on the first
            # set-cookie keeps the common no-cookie case free.
            cookies=httpx.Cookies(cookies) if self._has_cookies else None,
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        if "set-cookie" in response.headers:
            cookies.extract_cookies(response)
            self._has_cookies = True
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


async def _error_detail(response: httpx.Response) -> tuple[str, bytes]:
    try:
        raw = await response.aread()
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
    """httpx-aiohttp maps a refused connection to ConnectTimeout; tell them apart."""
    cause = exc.__cause__
    if cause is None:
        return False
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return False
    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
        cause, aiohttp.ServerTimeoutError
    )
