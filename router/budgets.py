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
import os
import time
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter, Gauge
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from router.policy.model import BudgetConfig, Caps

__all__ = ["Admission", "BudgetLedger", "Ticket"]

log = structlog.get_logger("router.budgets")
BUDGET = Counter("router_budget_total", "Budget admissions by outcome.", ["outcome"])
# Only tenants the policy names get a series: tenants from a header are unbounded.
USED = Gauge(
    "router_budget_used_ratio",
    "Spent share of a named tenant's cap (period: day or month), as of its last request.",
    ["tenant", "period"],
    multiprocess_mode="mostrecent",
)

# Each reservation is also kept by itself, so that it can be released however the
# request ends: a ZSET (request id -> expiry time) and a hash (request id -> "estimate|
# day key|month key"). A reservation nobody settled (the reply to the admission was
# lost, the process died) is swept once it expires. All keys of a tenant share a hash
# tag, so the scripts run on one Redis Cluster slot.
_RELEASE = """
local function release(id)
  local v = redis.call('HGET', KEYS[4], id)
  if not v then return end
  local est, day, month = string.match(v, '^([^|]+)|([^|]+)|(.+)$')
  for _, key in ipairs({day, month}) do
    -- a day key that expired meanwhile must not come back without a TTL
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBYFLOAT', key, 'r', -tonumber(est))
    end
  end
  redis.call('HDEL', KEYS[4], id)
end
"""

# KEYS: day hash, month hash, reservation zset, reservation hash.
# ARGV: day cap, month cap (-1 = none), estimate, day ttl, month ttl, request id, now,
#       reservation ttl. Hash fields: s = spent, r = reserved.
# Returns 1 when admitted (and reserved), 0 when over.
_ADMIT = _RELEASE + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[7], 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  release(id)
  redis.call('ZREM', KEYS[3], id)
end
-- Seen already: a retried admission, or one whose request was settled before this
-- (delayed) admission ran. Either way there is nothing (more) to reserve.
if redis.call('ZSCORE', KEYS[3], ARGV[6]) then return 1 end
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
redis.call('ZADD', KEYS[3], tonumber(ARGV[7]) + tonumber(ARGV[8]), ARGV[6])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[3] .. '|' .. KEYS[1] .. '|' .. KEYS[2])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
"""

# KEYS: as _ADMIT. ARGV: real cost, request id, now, reservation ttl, day ttl, month ttl.
# Releases the request's reservation if there is one, and leaves its id behind so that
# an admission still on its way to Redis reserves nothing. Returns the day's and the
# month's spend, as strings (Lua numbers would be truncated), for the used-ratio gauge.
_SETTLE = _RELEASE + """
release(ARGV[2])
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[2])
local cost = tonumber(ARGV[1])
if cost > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 's', cost)
  redis.call('HINCRBYFLOAT', KEYS[2], 's', cost)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {redis.call('HGET', KEYS[1], 's') or '0', redis.call('HGET', KEYS[2], 's') or '0'}
"""
_DAY_TTL, _MONTH_TTL = 2 * 86400, 32 * 86400


@dataclass(frozen=True, slots=True)
class Ticket:
    """What settling a request needs, whether or not its admission got an answer."""

    keys: tuple[str, str, str, str]
    request_id: str
    tenant: str = ""
    caps: Caps | None = None  # for the used-ratio gauge of tenants the policy names


@dataclass(slots=True)
class Admission:
    admitted: bool
    keys: tuple[str, str] | None = None  # set when Redis answered: the tenant has caps
    reserved: float = 0.0
    ticket: Ticket | None = None


class BudgetLedger:
    """Admit and settle requests against their tenant's caps.

    Every call is bounded by `3 * timeout_s` whatever Redis does (redis-py retries
    inside that bound; admission is idempotent per request id, so a retry reserves
    nothing twice). A reservation is released by `settle`, which also runs when the
    request is cancelled, and expires by itself after `reservation_ttl_s` when nothing
    settled it (the process died, Redis was away for the settlement too).
    """

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
        self._bound_s = 3 * timeout_s
        self._settling: set[asyncio.Task[None]] = set()

    def keys(self, tenant: str, now: dt.datetime | None = None) -> tuple[str, str]:
        now = now or dt.datetime.now(dt.UTC)
        # The hash tag keeps a tenant's keys on one Redis Cluster slot for the script.
        base = f"{self.config.namespace}:budget:{{{tenant}}}"
        return f"{base}:d:{now:%Y%m%d}", f"{base}:m:{now:%Y%m}"

    def _ticket(self, tenant: str, request_id: str, caps: Caps | None = None) -> Ticket:
        day, month = self.keys(tenant)
        base = f"{self.config.namespace}:budget:{{{tenant}}}"
        return Ticket((day, month, f"{base}:res", f"{base}:res:v"), request_id, tenant, caps)

    async def _run(self, script: Any, source: str, keys: list[str], args: list[Any]) -> Any:
        async with asyncio.timeout(self._bound_s):
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

    async def admit(
        self, tenant: str, caps: Caps, estimate: float, request_id: str | None = None
    ) -> Admission:
        ticket = self._ticket(tenant, request_id or os.urandom(16).hex(), caps)
        day = -1.0 if caps.daily_usd is None else caps.daily_usd
        month = -1.0 if caps.monthly_usd is None else caps.monthly_usd
        ttl = self.config.reservation_ttl_s
        args = [day, month, estimate, _DAY_TTL, _MONTH_TTL, ticket.request_id, time.time(), ttl]
        try:
            ok = await self._run(self._admit, _ADMIT, list(ticket.keys), args)
        except asyncio.CancelledError:
            # The script may run all the same: release whatever it reserves.
            self.settle_soon(Admission(True, ticket=ticket), 0.0)
            raise
        except Exception as exc:  # budgets guard spend, not availability: fail open
            BUDGET.labels("error").inc()
            log.error("budget_unavailable", error=type(exc).__name__)
            # Redis may still run the script after we gave up: keep the ticket, so
            # that settling releases it (or records the cost if it never ran).
            return Admission(True, ticket=ticket)
        BUDGET.labels("admitted" if ok else "over").inc()
        return Admission(bool(ok), ticket.keys[:2], estimate if ok else 0.0, ticket)

    async def settle(self, admission: Admission, cost: float) -> None:
        """Swap the reservation for the real cost. Shielded: a caller cancelled while
        waiting does not cancel the settlement."""
        task = self.settle_soon(admission, cost)
        if task is not None:
            await asyncio.shield(task)

    def settle_soon(self, admission: Admission, cost: float) -> asyncio.Task[None] | None:
        """Settle in the background (the request's own task is being cancelled)."""
        if admission.ticket is None:
            return None
        task = asyncio.ensure_future(self._settle_now(admission.ticket, cost))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _settle_now(self, ticket: Ticket, cost: float) -> None:
        ttl = self.config.reservation_ttl_s
        args = [cost, ticket.request_id, time.time(), ttl, _DAY_TTL, _MONTH_TTL]
        try:
            spent = await self._run(self._settle, _SETTLE, list(ticket.keys), args)
        except Exception as exc:  # the reservation then expires after reservation_ttl_s
            BUDGET.labels("error").inc()
            log.error("budget_settle_failed", error=type(exc).__name__)
            return
        tenant, caps = ticket.tenant, ticket.caps
        if caps is None or tenant not in self.config.tenants:
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
        if self._settling:  # settlements under way finish first (each is bounded)
            await asyncio.wait(list(self._settling), timeout=2 * self._bound_s + 0.5)
        await self.redis.aclose()
