"""Shadow traffic: the same prompt also goes to another upstream, off the client's path.

A shadow call never delays or fails the client's request: it starts as its own
task after the decision, runs under a concurrency bound, and is dropped (and
counted) when too many are pending. It makes one attempt, without retries, and
does not count in the upstream's circuit breaker, so a struggling shadow target
cannot trip the breaker that live traffic relies on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter

from router.formats.anthropic_upstream import from_anthropic_message
from router.upstreams.client import UpstreamClient
from router.upstreams.usage import answer_of, parse_json, usage_of

__all__ = ["ShadowResult", "ShadowRunner"]

SHADOW = Counter(
    "router_shadow_total", "Shadow requests by upstream and outcome.", ["upstream", "outcome"]
)


@dataclass(slots=True)
class ShadowResult:
    upstream: str
    status: int
    latency_ms: float
    error: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    answer: str | None = None

    def to_dict(self, with_answer: bool) -> dict[str, Any]:
        data = {
            "upstream": self.upstream,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
        }
        if with_answer:
            data["answer"] = self.answer
        return data


class ShadowRunner:
    def __init__(self, max_concurrency: int = 8, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self.pending = 0
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[ShadowResult]] = set()
        self._closing = False

    def start(
        self, client: UpstreamClient, body: dict[str, Any]
    ) -> asyncio.Task[ShadowResult] | None:
        """Schedule a shadow call; None when overloaded (the call is dropped and counted)."""
        if self.pending >= self.max_pending:
            SHADOW.labels(client.name, "dropped").inc()
            return None
        self.pending += 1
        shadow_body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        task = asyncio.ensure_future(self._run(client, client.payload(shadow_body)))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[ShadowResult]) -> None:
        self.pending -= 1
        self._tasks.discard(task)

    async def _run(self, client: UpstreamClient, payload: bytes) -> ShadowResult:
        started = time.perf_counter()
        try:
            return await self._call(client, payload, started)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Cut at shutdown: the record waiting on this answer is still written,
            # and says why it has no shadow answer.
            SHADOW.labels(client.name, "error").inc()
            return ShadowResult(client.name, 0, _ms(started), error="shutdown")

    async def _call(self, client: UpstreamClient, payload: bytes, started: float) -> ShadowResult:
        async with self._slots:
            timeouts = client.config.timeouts
            try:
                async with asyncio.timeout(timeouts.total):
                    response = await client.send_once(payload)
            except (TimeoutError, httpx.HTTPError) as exc:
                SHADOW.labels(client.name, "error").inc()
                return ShadowResult(client.name, 0, _ms(started), error=type(exc).__name__)
            result = ShadowResult(client.name, response.status_code, _ms(started))
            data = parse_json(response.content)
            if response.status_code >= 400 or data is None:
                result.error = f"http_{response.status_code}"
                SHADOW.labels(client.name, "error").inc()
                return result
            if client.anthropic:  # a Messages answer, read as chat like a live one
                data = from_anthropic_message(data)
            usage = usage_of(data)
            if usage is not None:
                result.tokens_in, result.tokens_out = usage.tokens_in, usage.tokens_out
                result.cost_usd = usage.cost(client.config.price)
            result.answer = answer_of(data)
            SHADOW.labels(client.name, "ok").inc()
            return result

    async def aclose(self, wait_s: float = 0.0) -> None:
        """Give shadows in flight `wait_s` to answer, then cut the rest. Returns once
        every task is done, so the records waiting on them have been emitted."""
        tasks = list(self._tasks)
        if tasks and wait_s > 0:
            await asyncio.wait(tasks, timeout=wait_s)
        self._closing = True
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
            await asyncio.sleep(0)  # let the tasks' done callbacks (the records) run


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
