"""The JSON the status page polls: figures over a window, live state, last decisions."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from router.ui.history import CounterHistory, Reading
from router.ui.stats import by_label, quantiles_by

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["WINDOWS", "build"]

# Windows the page offers, in seconds.
WINDOWS = (300, 900, 3600, 6 * 3600, 24 * 3600)
_SLOTS = 60  # points of the timeline chart
_QS = (0.5, 0.9, 0.99)
_PREVIEW = 300  # characters of a recorded prompt or answer shown


def _round(value: float, digits: int = 9) -> float:
    return round(value, digits)


def _timeline(history: CounterHistory, now: Reading, window: float) -> dict[str, Any]:
    """Requests per answering route in `_SLOTS` equal slices of the window."""
    step = window / _SLOTS
    start = now.ts - window
    points: list[dict[str, float]] = []
    previous = history.at(start)
    routes: set[str] = set()
    for i in range(1, _SLOTS + 1):
        reading = now if i == _SLOTS else history.at(start + i * step)
        if reading is None:
            points.append({})
            continue
        counts = by_label(history.delta(reading, previous), "router_requests_total", 1)
        counts = {k: v for k, v in counts.items() if v}
        routes.update(counts)
        points.append(counts)
        previous = reading
    return {"start": start, "step": step, "routes": sorted(routes), "points": points}


async def _budgets(runtime: Runtime, tenants_seen: set[str]) -> list[dict[str, Any]]:
    policy, ledger = runtime.policy, runtime.ledger
    if policy.budgets is None or ledger is None:
        return []
    names = sorted(set(policy.budgets.tenants) | tenants_seen)[:50]
    rows: list[dict[str, Any]] = []
    for tenant in names:
        caps = policy.budgets.caps_for(tenant)
        if caps is None:
            continue
        row: dict[str, Any] = {
            "tenant": tenant,
            "daily_cap": caps.daily_usd,
            "monthly_cap": caps.monthly_usd,
        }
        try:
            async with asyncio.timeout(0.5):
                row.update(await ledger.spent(tenant))
        except Exception as exc:  # the page still renders; the row says why
            row["error"] = type(exc).__name__
        rows.append(row)
    return rows


def _routes(runtime: Runtime, delta: dict[Any, float], recent: list[dict[str, Any]]) -> list[Any]:
    policy = runtime.policy
    by_rule = by_label(delta, "router_requests_total", 0)
    shadow = _by_two_labels(delta, "router_shadow_total")
    rollout: dict[str, dict[str, int]] = {}
    for record in recent:
        if record.get("rollout"):
            counts = rollout.setdefault(record.get("rule", ""), {"in": 0, "out": 0})
            counts[record["rollout"]] = counts.get(record["rollout"], 0) + 1
    rows = []
    for route in (*policy.routes, policy.default):
        row: dict[str, Any] = {
            "name": route.name,
            "target": route.target,
            "fallbacks": list(route.fallbacks),
            "requests": by_rule.get(route.name, 0.0),
            "cache": route.cache.enabled and policy.cache is not None,
        }
        if route.rollout is not None:
            row["rollout"] = {
                "percent": route.rollout.percent,
                "target": route.rollout.target,
                "sticky": route.rollout.sticky,
                "recent": rollout.get(route.name, {"in": 0, "out": 0}),
            }
        if route.shadow is not None:
            row["shadow"] = {
                "percent": route.shadow.percent,
                "target": route.shadow.target,
                "outcomes": shadow.get(route.shadow.target, {}),
            }
        rows.append(row)
    return rows


def _by_two_labels(delta: dict[Any, float], name: str) -> dict[str, dict[str, float]]:
    """Increases of a two-label counter as {first label: {second label: value}}."""
    out: dict[str, dict[str, float]] = {}
    for (key_name, labels), value in delta.items():
        if key_name == name and len(labels) >= 2:
            inner = out.setdefault(labels[0], {})
            inner[labels[1]] = inner.get(labels[1], 0.0) + value
    return out


def _decision(record: dict[str, Any], prompts: bool) -> dict[str, Any]:
    keep = (
        "request_id", "ts", "tenant", "model", "stream", "rule", "route", "status", "error",
        "cache", "score", "rollout", "shadow", "latency_ms", "overhead_ms", "tokens_in",
        "tokens_out", "cost_usd", "tried", "budget",
    )  # fmt: skip
    row = {k: record.get(k) for k in keep}
    if prompts:
        for name in ("prompt", "answer"):
            text = record.get(name)
            if isinstance(text, str):
                row[name] = text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"
    return row


def _process(history: CounterHistory, started: float) -> dict[str, Any]:
    workers = int(os.environ.get("ROUTER_WORKERS", "1") or 1)
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    return {
        "pid": os.getpid(),
        "workers": workers,
        "multiprocess": multiprocess,
        "started": started,
        "sample_every_s": history.interval,
        "oldest_reading": history.oldest.ts if history.oldest else None,
    }


async def build(
    runtime: Runtime, history: CounterHistory, window: float, started: float, last: int = 20
) -> dict[str, Any]:
    policy = runtime.policy
    now = history.read(time.time())
    since = history.at(now.ts - window)
    delta = history.delta(now, since)
    answered = by_label(delta, "router_requests_total", 1)
    errors = _server_errors(delta)
    recent = runtime.decisions.latest()
    return {
        "now": now.ts,
        "window_s": window,
        "since": since.ts if since is not None else None,
        "windows": list(WINDOWS),
        "process": _process(history, started),
        "policy": {
            "source": policy.source,
            "loaded_at": policy.loaded_at,
            "demo": policy.demo,
            "records_prompts": policy.record.prompts,
            "cache": policy.cache is not None,
            "scoring": policy.scoring.enabled,
        },
        "totals": {
            "requests": sum(answered.values()),
            "errors": sum(errors.values()),
            "by_route": answered,
            "by_rule": by_label(delta, "router_requests_total", 0),
            "calls": _by_two_labels(delta, "router_calls_total"),
            "scoring_errors": sum(by_label(delta, "router_scoring_errors_total", 0).values()),
        },
        "savings": _savings(delta),
        "cache": _cache(runtime, delta),
        "overhead_s": quantiles_by(delta, "router_overhead_seconds", _QS).get("") or {},
        "upstreams": _upstreams(runtime, delta, answered, errors),
        "routes": _routes(runtime, delta, recent),
        "budgets": await _budgets(runtime, {r.get("tenant", "") for r in recent[:200]}),
        "timeline": _timeline(history, now, window),
        "decisions": [_decision(r, policy.record.prompts) for r in recent[:last]],
    }


def _server_errors(delta: dict[Any, float]) -> dict[str, float]:
    """5xx answers per answering route."""
    errors: dict[str, float] = {}
    for (name, labels), value in delta.items():
        if name == "router_requests_total" and value and labels[2][:1] == "5":
            errors[labels[1]] = errors.get(labels[1], 0.0) + value
    return errors


def _savings(delta: dict[Any, float]) -> dict[str, Any]:
    """Spend against what sending everything to the dearest upstream would have cost."""
    cost = sum(by_label(delta, "router_cost_usd_total", 0).values())
    top = sum(by_label(delta, "router_cost_top_usd_total", 0).values())
    return {
        "cost_usd": _round(cost),
        "all_top_usd": _round(top),
        "saved_usd": _round(top - cost),
        "saved_share": (top - cost) / top if top > 0 else None,
    }


def _cache(runtime: Runtime, delta: dict[Any, float]) -> dict[str, Any]:
    hits_by_kind = by_label(delta, "router_cache_hits_total", 0)
    hits = sum(hits_by_kind.values())
    misses = sum(by_label(delta, "router_cache_misses_total", 0).values())
    return {
        "enabled": runtime.policy.cache is not None,
        "hits": hits,
        "hits_by_kind": hits_by_kind,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "saved_usd": _round(sum(by_label(delta, "router_cache_saved_usd_total", 0).values())),
        "errors": by_label(delta, "router_cache_errors_total", 0),
    }


def _upstreams(
    runtime: Runtime,
    delta: dict[Any, float],
    answered: dict[str, float],
    errors: dict[str, float],
) -> list[dict[str, Any]]:
    failed = by_label(delta, "router_fallbacks_total", 0)
    spend = by_label(delta, "router_cost_usd_total", 0)
    latency = quantiles_by(delta, "router_upstream_seconds", _QS)
    rows = []
    for name, upstream in runtime.policy.upstreams.items():
        client = runtime.pool.clients.get(name)
        attempts = answered.get(name, 0.0) + failed.get(name, 0.0)
        rows.append(
            {
                "name": name,
                "model": upstream.model,
                "price": {"input": upstream.price.input, "output": upstream.price.output},
                "requests": answered.get(name, 0.0),
                "errors": errors.get(name, 0.0),
                "failed_attempts": failed.get(name, 0.0),
                "error_rate": failed.get(name, 0.0) / attempts if attempts else None,
                "latency_s": latency.get(name, {}),
                "cost_usd": _round(spend.get(name, 0.0)),
                "breaker": client.breaker.state if client is not None else "unknown",
            }
        )
    return rows
