"""One OpenAI-compatible upstream on one long-lived pooled `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from router.policy.model import Upstream
from router.upstreams.breaker import CircuitBreaker
from router.upstreams.transport import make_transport

__all__ = ["UpstreamClient", "UpstreamFailure", "UpstreamReply"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


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
        self.breaker = CircuitBreaker(config.breaker.failures, config.breaker.cooldown)
        t = config.timeouts
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self.client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
            transport=transport or make_transport(max_connections=config.max_connections),
        )
        self.url = f"{config.base_url}/chat/completions"

    def payload(self, body: dict[str, Any]) -> bytes:
        out = dict(body)
        out["model"] = self.config.model
        return json.dumps(out, separators=(",", ":")).encode()

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
                request = self.client.build_request("POST", self.url, content=payload)
                async with asyncio.timeout(budget):
                    response = await self.client.send(request, stream=True)
            except (TimeoutError, httpx.TimeoutException):
                failure = UpstreamFailure(self.name, "timeout", "no response before the timeout")
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
