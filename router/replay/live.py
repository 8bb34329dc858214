"""`router replay --live`: re-send recorded prompts to a real OpenAI-compatible endpoint.

The target is a staging router or an upstream. Sending is paced by a token
bucket (`rate` per second) and bounded by `concurrency` requests in flight, so a
replay can never turn into a load test by accident. Each answer becomes one
JSON line of outcomes; `x-router-*` headers are read when the target is a router.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np

from router.policy.model import Policy
from router.replay.progress import Progress

__all__ = ["LiveOptions", "TokenBucket", "replay_live", "run_live"]


@dataclass(frozen=True)
class LiveOptions:
    target_url: str
    rate: float = 10.0
    concurrency: int = 8
    api_key: str | None = None
    timeout: float = 120.0
    limit: int | None = None
    model: str | None = None  # override the recorded model name (e.g. to hit an upstream)


class TokenBucket:
    """Hands out one token every 1/rate seconds, with no burst.

    Slots are reserved under a lock and slept on outside it, so callers are
    released in order at an even pace however many are waiting.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def _messages(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        return messages
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return None


def _header_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def _send(
    client: httpx.AsyncClient,
    record: Mapping[str, Any],
    messages: list[dict[str, Any]],
    options: LiveOptions,
    policy: Policy | None,
) -> dict[str, Any]:
    body = {
        "model": options.model or record.get("model") or "auto",
        "messages": messages,
        "stream": False,
    }
    out: dict[str, Any] = {
        "source_request_id": record.get("request_id"),
        "ts": time.time(),
        "status": 0,
        "error": None,
    }
    t0 = time.perf_counter()
    try:
        response = await client.post("/chat/completions", json=body)
    except httpx.HTTPError as exc:
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        out["error"] = type(exc).__name__
        return out
    out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    out["status"] = response.status_code
    headers = response.headers
    out["request_id"] = headers.get("x-router-request-id")
    out["route"] = headers.get("x-router-route") or None
    out["rule"] = headers.get("x-router-rule")
    out["score"] = _header_float(headers.get("x-router-score"))
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        out["error"] = "not_json"
        return out
    if response.status_code >= 400:
        err = data.get("error")
        out["error"] = (err.get("code") or err.get("type")) if isinstance(err, dict) else "error"
        return out
    _read_answer(out, data, policy)
    return out


def _read_answer(out: dict[str, Any], data: dict[str, Any], policy: Policy | None) -> None:
    """Tokens, answer text and, when the policy prices the route, cost of a 2xx completion."""
    raw_usage = data.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    out["tokens_in"] = usage.get("prompt_tokens")
    out["tokens_out"] = usage.get("completion_tokens")
    choices = data.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    out["answer"] = message.get("content") if isinstance(message, dict) else None
    route = out["route"]
    if (
        policy is not None
        and route in policy.upstreams
        and isinstance(out["tokens_in"], int)
        and isinstance(out["tokens_out"], int)
    ):
        price = policy.upstreams[route].price
        out["cost_usd"] = round(price.cost(out["tokens_in"], out["tokens_out"]), 8)


async def run_live(
    records: Sequence[Mapping[str, Any]],
    options: LiveOptions,
    sink: IO[str],
    policy: Policy | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Send every record that has a prompt; write one outcome line each; return a summary."""
    todo = [(r, m) for r in records if (m := _messages(r)) is not None]
    if options.limit is not None:
        todo = todo[: options.limit]
    skipped = len(records) - len(todo)
    bucket = TokenBucket(options.rate)
    headers = {"authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    limits = httpx.Limits(max_connections=options.concurrency)
    outcomes: list[dict[str, Any]] = []
    progress = Progress("live replay", len(todo), min_total=50)
    items: Iterator[tuple[Mapping[str, Any], list[dict[str, Any]]]] = iter(todo)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=options.target_url.rstrip("/"),
        headers=headers,
        timeout=options.timeout,
        limits=limits,
        transport=transport,
    ) as client:

        async def worker() -> None:
            # Workers share one iterator: at most `concurrency` requests are ever in flight.
            for record, messages in items:
                await bucket.take()
                outcome = await _send(client, record, messages, options, policy)
                outcomes.append(outcome)
                sink.write(json.dumps(outcome) + "\n")
                progress.update(len(outcomes))

        await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
    progress.close()
    elapsed = time.perf_counter() - t0
    return _summary(outcomes, skipped, elapsed)


def _summary(outcomes: list[dict[str, Any]], skipped: int, elapsed: float) -> dict[str, Any]:
    latency = np.asarray([o["latency_ms"] for o in outcomes if o["status"]], dtype=np.float64)
    ok = [o for o in outcomes if 200 <= o["status"] < 300]
    routes = Counter(o.get("route") or "-" for o in ok)
    costs = [o["cost_usd"] for o in ok if isinstance(o.get("cost_usd"), float)]
    return {
        "sent": len(outcomes),
        "ok": len(ok),
        "skipped_without_prompt": skipped,
        "status": dict(Counter(str(o["status"]) for o in outcomes)),
        "errors": dict(Counter(o["error"] for o in outcomes if o["error"])),
        "routes": dict(routes),
        "latency_ms": {
            "p50": float(np.percentile(latency, 50)) if latency.size else None,
            "p95": float(np.percentile(latency, 95)) if latency.size else None,
        },
        "tokens_in": sum(o.get("tokens_in") or 0 for o in ok),
        "tokens_out": sum(o.get("tokens_out") or 0 for o in ok),
        "cost_usd": sum(costs) if costs else None,
        "seconds": round(elapsed, 3),
        "rate": len(outcomes) / elapsed if elapsed > 0 else None,
    }


def replay_live(
    records: Sequence[Mapping[str, Any]],
    options: LiveOptions,
    out: str | Path,
    policy: Policy | None = None,
) -> dict[str, Any]:
    with open(out, "w", encoding="utf-8") as sink:
        return asyncio.run(run_live(records, options, sink, policy))
