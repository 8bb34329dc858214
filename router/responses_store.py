"""The response store behind `store` and `previous_response_id` (`POST /v1/responses`).

A stored response is the conversation up to and including it, as Responses items
(`formats.responses.stored_items`): the caller puts it under the new response's id
and, when a later request names that id in `previous_response_id`, gets it back
and hands it to `parse_responses` as `history`.

* `MemoryResponseStore`: one process's dict, bounded by a TTL, a count and a
  measured byte size (least recently used first out). The default.
* `RedisResponseStore`: one JSON string per response (`SET ... PX`), shared by
  every worker and replica; Redis Cluster too (one key per command).
* `build_response_store(...)`: the one the `responses:` policy section names.

**Tenant scope.** Every call names the tenant, and a response is found only by the
tenant that stored it: another tenant's id reads as not found (`None`), exactly
like an id never issued, so ids do not leak across tenants. In Redis the key holds
a hash of the tenant (`cache.scope.tenant_key`) and the value the full hash, which
`get` checks again.

**Failure.** `RedisResponseStore` bounds every call by `timeout_s` and raises
`StoreUnavailable` for anything that goes wrong on the way (refused, timed out,
cluster errors); it never raises a redis-py exception. The caller maps it with
`StoreUnavailable.router_error()` to a 503 (`type: api_error`,
`code: response_store_unavailable`): a `previous_response_id` that cannot be read
must not be answered as if the conversation started afresh, and must not be
answered as a 400 either, since the id may well be valid. A failed `put` after
the answer was produced is the caller's choice (log it, or fail a `store: true`
request before it is sent). The memory store never raises it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from router.cache.scope import tenant_key
from router.errors import StoreUnavailable

__all__ = [
    "MemoryResponseStore",
    "RedisResponseStore",
    "ResponseStore",
    "StoreUnavailable",
    "build_response_store",
]

MiB = 1024 * 1024
# Defaults for what the policy section does not name.
DEFAULT_MAX_BYTES = 128 * MiB
DEFAULT_TIMEOUT_S = 0.5
# Ids the router issues are short (`resp_` + hex); anything far longer, or with
# spaces or control characters, cannot be one of them and is not looked up.
MAX_ID_CHARS = 256
# What a failing Redis raises: redis-py's errors (a cluster's "cannot be connected"
# is not one of them), sockets it does not wrap, and asyncio.timeout's TimeoutError.
_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
# Bookkeeping per memory entry beyond its JSON: the key tuple, the entry, the dict slot.
_OVERHEAD = 256


class ResponseStore(Protocol):
    """Conversations by response id, scoped by tenant, expiring after a TTL."""

    name: str

    async def get(self, tenant: str, response_id: str) -> list[dict[str, Any]] | None:
        """The items stored under `response_id` for `tenant`; `None` when absent,
        expired, evicted, or stored by another tenant."""
        ...

    async def put(self, tenant: str, response_id: str, items: list[dict[str, Any]]) -> None:
        """Keep `items` (JSON-serialisable) under `response_id` for `tenant`,
        replacing what was there; the TTL starts now."""
        ...

    async def delete(self, tenant: str, response_id: str) -> bool:
        """Forget `response_id`; True when `tenant` had it."""
        ...

    async def close(self) -> None: ...


def valid_id(response_id: object) -> bool:
    return (
        isinstance(response_id, str)
        and 0 < len(response_id) <= MAX_ID_CHARS
        and response_id.isprintable()
        and not any(c.isspace() for c in response_id)
    )


def _check(response_id: str, items: object) -> None:
    if not valid_id(response_id):
        raise ValueError(f"not a storable response id: {response_id[:MAX_ID_CHARS]!r}")
    if _items(items) is None:
        raise ValueError("stored items must be a list of objects")


def _tenant_digest(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()


def _items(value: object) -> list[dict[str, Any]] | None:
    if isinstance(value, list) and all(isinstance(i, dict) for i in value):
        return value
    return None


# --------------------------------------------------------------------------- memory


@dataclass(slots=True)
class _Entry:
    data: bytes  # the items as JSON: callers get a fresh copy, and the size is measured
    expires: float
    size: int


class MemoryResponseStore:
    """An LRU of JSON blobs keyed by (tenant, id): every operation is O(1) in the
    number of entries (O(size) in the entry, to encode or decode it).

    Bounds: `ttl_s` from the `put` (a `get` does not extend it), `max_stored`
    entries and `max_bytes` of JSON plus a fixed overhead per entry, the least
    recently used going first. An entry larger than `max_bytes` by itself is not
    kept (a later `get` finds nothing). Expired entries are dropped when read and,
    from the cold end of the LRU, on every `put`.
    """

    name = "memory"

    def __init__(
        self,
        ttl_s: float,
        max_stored: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_stored < 1 or max_bytes < 1:
            raise ValueError("ttl_s, max_stored and max_bytes must be positive")
        self._ttl = ttl_s
        self._max_stored = max_stored
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _drop(self, key: tuple[str, str]) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry

    async def get(self, tenant: str, response_id: str) -> list[dict[str, Any]] | None:
        key = (tenant, response_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return _items(orjson.loads(entry.data))

    async def put(self, tenant: str, response_id: str, items: list[dict[str, Any]]) -> None:
        _check(response_id, items)
        data = orjson.dumps(items)
        key = (tenant, response_id)
        size = len(data) + len(tenant) + len(response_id) + _OVERHEAD
        self._drop(key)
        now = self._clock()
        # The cold end first: entries that expired unread leave before live ones.
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest].expires > now:
                break
            self._drop(oldest)
        if size > self._max_bytes:
            return
        self._entries[key] = _Entry(data, now + self._ttl, size)
        self._bytes += size
        while len(self._entries) > self._max_stored or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    async def delete(self, tenant: str, response_id: str) -> bool:
        entry = self._drop((tenant, response_id))
        return entry is not None and entry.expires > self._clock()

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


# --------------------------------------------------------------------------- redis


class RedisResponseStore:
    """One key per stored response: `{namespace}:resp:{tenant_key}:{response_id}`,
    a JSON value `{"t": sha256(tenant), "items": [...]}`, expiring after `ttl_s`
    (`SET ... PX`, so sub-second TTLs work too).

    Every call is bounded by `timeout_s` (`asyncio.timeout`, with the socket
    timeouts a little above it and no redis-py retries, which would only stretch
    the call past the bound) and raises `StoreUnavailable` on any failure. Memory is
    bounded by the TTL and Redis's own `maxmemory` policy, not by a count here.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float,
        namespace: str = "hr",
        cluster: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if ttl_s <= 0 or timeout_s <= 0:
            raise ValueError("ttl_s and timeout_s must be positive")
        options: dict[str, Any] = {
            "socket_timeout": timeout_s * 2,
            "socket_connect_timeout": timeout_s * 2,
            "retry": Retry(NoBackoff(), 0),
        }
        self.client: Redis | RedisCluster
        if cluster:
            self.client = RedisCluster.from_url(url, **options)
        else:
            self.client = Redis.from_url(url, **options)
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._namespace = namespace
        self._timeout = timeout_s

    def key(self, tenant: str, response_id: str) -> str:
        return f"{self._namespace}:resp:{tenant_key(tenant)}:{response_id}"

    async def _call(self, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await self.client.execute_command(*args)
        except _FAILURES as exc:  # cancellation (not an Exception) passes through
            raise StoreUnavailable(f"response store: {type(exc).__name__}: {exc}") from exc

    async def get(self, tenant: str, response_id: str) -> list[dict[str, Any]] | None:
        if not valid_id(response_id):
            return None
        raw = await self._call("GET", self.key(tenant, response_id))
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None  # not written by this store
        # The key holds 64 bits of the tenant's hash; the value holds all of it.
        if not isinstance(value, dict) or value.get("t") != _tenant_digest(tenant):
            return None
        return _items(value.get("items"))

    async def put(self, tenant: str, response_id: str, items: list[dict[str, Any]]) -> None:
        _check(response_id, items)
        data = orjson.dumps({"t": _tenant_digest(tenant), "items": items})
        await self._call("SET", self.key(tenant, response_id), data, "PX", self._ttl_ms)

    async def delete(self, tenant: str, response_id: str) -> bool:
        if not valid_id(response_id):
            return False
        return bool(await self._call("DEL", self.key(tenant, response_id)))

    async def close(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self.client.aclose()
        except _FAILURES:
            pass  # closing a store that is away: nothing left to release


# --------------------------------------------------------------------------- factory


def build_response_store(
    ttl_s: float = 3600,
    max_stored: int = 10_000,
    redis_url: str | None = None,
    redis_cluster: bool = False,
    namespace: str = "hr",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ResponseStore:
    """The store the `responses:` policy section describes: Redis when `redis_url`
    is set (`max_stored` then does not apply), else memory."""
    if redis_url:
        return RedisResponseStore(
            redis_url, ttl_s, namespace=namespace, cluster=redis_cluster, timeout_s=timeout_s
        )
    return MemoryResponseStore(ttl_s, max_stored, max_bytes)
