"""Per-tenant spend caps per UTC day and calendar month, kept in Redis.

Admission reserves an estimate of the request's cost atomically (one Lua script),
and settlement swaps the reservation for the real cost. A request is admitted
only while spent + reserved is under the cap, so as long as estimates are not
below real costs the cap is overrun by at most one request, however many run
at once and on however many replicas. The estimate uses the prompt's size and
`max_tokens` (or the policy's `estimate_output_tokens`) at the target's prices.

Budgets guard spend, not availability: when Redis cannot be reached the request
is served, and the error is logged and counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter, Gauge
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from router.policy.model import BudgetConfig, Caps

__all__ = ["Admission", "BudgetLedger"]

log = structlog.get_logger("router.budgets")
BUDGET = Counter("router_budget_total", "Budget admissions by outcome.", ["outcome"])
# Only tenants the policy names get a series: tenants from a header are unbounded.
USED = Gauge(
    "router_budget_used_ratio",
    "Spent share of a named tenant's cap (period: day or month), as of its last request.",
    ["tenant", "period"],
    multiprocess_mode="mostrecent",
)

# KEYS: day hash, month hash. ARGV: day cap, month cap (-1 = none), estimate, day ttl, month ttl.
# Hash fields: s = spent, r = reserved. Returns 1 when admitted (and reserved), 0 when over.
_ADMIT = """
local function over(key, cap)
  if cap < 0 then return false end
  local v = redis.call('HMGET', key, 's', 'r')
  return (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) >= cap
end
local est = tonumber(ARGV[3])
if over(KEYS[1], tonumber(ARGV[1])) or over(KEYS[2], tonumber(ARGV[2])) then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'r', est)
redis.call('HINCRBYFLOAT', KEYS[2], 'r', est)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

# KEYS: day hash, month hash. ARGV: reserved estimate to release, real cost to add.
# Returns the day's and the month's spend, as strings (Lua numbers would be truncated).
_SETTLE = """
local spent = {}
for i = 1, 2 do
  redis.call('HINCRBYFLOAT', KEYS[i], 'r', -tonumber(ARGV[1]))
  spent[i] = redis.call('HINCRBYFLOAT', KEYS[i], 's', tonumber(ARGV[2]))
end
return spent
"""


@dataclass(slots=True)
class Admission:
    admitted: bool
    keys: tuple[str, str] | None = None
    reserved: float = 0.0
    tenant: str | None = None
    caps: Caps | None = None


class BudgetLedger:
    def __init__(self, config: BudgetConfig, timeout_s: float = 0.1) -> None:
        self.config = config
        options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        # A tenant's two keys share a hash tag, so the scripts run on one cluster node.
        self.redis: Any = (
            RedisCluster.from_url(config.redis_url, **options)
            if config.redis_cluster
            else aioredis.from_url(config.redis_url, **options)
        )
        self._cluster = config.redis_cluster
        self._ready = False
        self._init_lock = asyncio.Lock()
        self._admit = self.redis.register_script(_ADMIT)
        self._settle = self.redis.register_script(_SETTLE)

    def keys(self, tenant: str, now: dt.datetime | None = None) -> tuple[str, str]:
        now = now or dt.datetime.now(dt.UTC)
        # The hash tag keeps a tenant's keys on one Redis Cluster slot for the script.
        base = f"{self.config.namespace}:budget:{{{tenant}}}"
        return f"{base}:d:{now:%Y%m%d}", f"{base}:m:{now:%Y%m}"

    async def _run(self, script: Any, source: str, keys: list[str], args: list[float]) -> Any:
        if not self._cluster:
            return await script(keys=keys, args=args)
        if not self._ready:
            # Concurrent first calls would each discover the slots; one does it.
            async with self._init_lock:
                if not self._ready:
                    await self.redis.initialize()
                    self._ready = True
        # EVAL, not EVALSHA: on a cluster the script cache is per node.
        return await self.redis.eval(source, len(keys), *keys, *args)

    async def admit(self, tenant: str, caps: Caps, estimate: float) -> Admission:
        keys = self.keys(tenant)
        day = -1.0 if caps.daily_usd is None else caps.daily_usd
        month = -1.0 if caps.monthly_usd is None else caps.monthly_usd
        args = [day, month, estimate, 2 * 86400, 32 * 86400]
        try:
            ok = await self._run(self._admit, _ADMIT, list(keys), args)
        except Exception as exc:  # budgets guard spend, not availability: fail open
            BUDGET.labels("error").inc()
            log.error("budget_unavailable", error=type(exc).__name__)
            return Admission(True)
        BUDGET.labels("admitted" if ok else "over").inc()
        return Admission(bool(ok), keys, estimate if ok else 0.0, tenant, caps)

    async def settle(self, admission: Admission, cost: float) -> None:
        if admission.keys is None:
            return
        try:
            spent = await self._run(
                self._settle, _SETTLE, list(admission.keys), [admission.reserved, cost]
            )
        except Exception as exc:
            BUDGET.labels("error").inc()
            log.error("budget_settle_failed", error=type(exc).__name__)
            return
        tenant, caps = admission.tenant, admission.caps
        if tenant is None or caps is None or tenant not in self.config.tenants:
            return
        for period, cap, value in (
            ("day", caps.daily_usd, spent[0]),
            ("month", caps.monthly_usd, spent[1]),
        ):
            if cap:
                USED.labels(tenant, period).set(float(value) / cap)

    async def spent(self, tenant: str) -> dict[str, float]:
        day, month = self.keys(tenant)
        values = []
        for key in (day, month):
            raw = await self.redis.hget(key, "s")
            values.append(float(raw or 0))
        return {"daily_usd": values[0], "monthly_usd": values[1]}

    async def aclose(self) -> None:
        await self.redis.aclose()
