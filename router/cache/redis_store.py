"""The shared store: entries and an LSH index in plain Redis 7 (no modules).

Keys of one scope share the hash tag `{<scope digest>}`, so they live in one slot
of a Redis Cluster and one script can read them all:

    <ns>:<tenant>:{<digest>}:e:<key>       hash: s digest, p prompt, c answer, v float16 vector
    <ns>:<tenant>:{<digest>}:b<tag>:<t>:<c> set: the keys in bucket <c> of LSH table <t>
    <ns>:<tenant>:{<digest>}:lru           sorted set: key -> last use (unix seconds)

Entries expire by TTL. A bucket expires a TTL after its last write, by which time
all its members have expired too; members that expired earlier are removed when a
lookup meets them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.cache.lsh import hyperplanes
from router.cache.scope import Scope, tenant_key
from router.cache.store import Found, Record, Vector

__all__ = ["RedisStore"]

# Entry keys are fixed-length hex digests (see cache.exact_key), so the keys in a
# reply can be one concatenated string.
_KEY_LEN = 24

# One round trip: the exact entry if there is one (and mark it used), else the keys
# and vectors of the entries in the probed buckets, nearest buckets first. Bucket
# names are built here from one string of probes, and the reply is two blobs rather
# than hundreds of items: both halve the time a client spends encoding and parsing.
# Every key touched shares the scope's hash tag, so this also holds on a cluster.
_FIND = """
local hit = redis.call('HMGET', KEYS[1], 's', 'p', 'c')
if hit[3] then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
  return {1, hit[1], hit[2], hit[3]}
end
local entry, bucket_prefix = ARGV[1], ARGV[5]
local limit, width = tonumber(ARGV[4]), tonumber(ARGV[7])
local seen, keys, vectors, n = {}, {}, {}, 0
for probe in string.gmatch(ARGV[6], '%S+') do
  local bucket = bucket_prefix .. probe
  for _, key in ipairs(redis.call('SMEMBERS', bucket)) do
    if not seen[key] then
      seen[key] = true
      local v = redis.call('HGET', entry .. key, 'v')
      if v and string.len(v) == width then
        n = n + 1
        keys[n] = key
        vectors[n] = v
        if n >= limit then return {0, table.concat(keys), table.concat(vectors)} end
      elseif not v then
        redis.call('SREM', bucket, key)
      end
    end
  end
end
return {0, table.concat(keys), table.concat(vectors)}
"""

# Write the entry, add it to its buckets and the scope's LRU, and evict beyond the
# scope's bound, all atomically so that no replica sees half an entry.
_PUT = """
local ttl = ARGV[6]
redis.call('HSET', KEYS[1], 's', ARGV[2], 'p', ARGV[3], 'c', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'v', ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local now = tonumber(ARGV[7])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ttl) / 1000)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[8])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('UNLINK', ARGV[9] .. old[i]) end
end
return 1
"""


class RedisStore:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        ttl_s: float,
        max_entries: int,
        timeout_s: float,
        cluster: bool = False,
        tables: int = 10,
        bits: int = 20,
        max_candidates: int = 512,
    ) -> None:
        # The cache keeps its own time budget and backoff; redis-py's retries would
        # only stretch a request past that budget.
        options: dict[str, Any] = {
            "socket_timeout": max(timeout_s, 0.05) * 4,
            "socket_connect_timeout": max(timeout_s, 0.05) * 4,
            "retry": Retry(NoBackoff(), 0),
        }
        self.client: Redis | RedisCluster
        if cluster:
            self.client = RedisCluster.from_url(url, **options)
        else:
            self.client = Redis.from_url(url, **options)
        self._namespace = namespace
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max_entries = max_entries
        self._tables, self._bits = tables, bits
        self._max_candidates = max_candidates
        self._find = self.client.register_script(_FIND)
        self._put = self.client.register_script(_PUT)

    def _prefix(self, scope: Scope) -> str:
        return f"{self._namespace}:{scope.tenant_key}:{{{scope.digest}}}"

    async def find(
        self, scope: Scope, key: str, vector: Vector | None, similarity: float, limit: int
    ) -> Found:
        prefix = self._prefix(scope)
        probes, bucket_prefix, width = "", "", 0
        if vector is not None:
            planes = hyperplanes(vector.shape[0], self._tables, self._bits)
            probes = " ".join(f"{t}:{c:x}" for t, c in planes.probes(vector))
            bucket_prefix = f"{prefix}:b{planes.tag}:"
            width = 2 * vector.shape[0]  # float16
        reply = await self._find(
            keys=[f"{prefix}:e:{key}", f"{prefix}:lru"],
            args=[
                f"{prefix}:e:",
                time.time(),
                key,
                self._max_candidates,
                bucket_prefix,
                probes,
                width,
            ],
        )
        if reply[0] == 1:
            return Found(exact=Record(reply[1].decode(), reply[2].decode(), reply[3], 1.0))
        if vector is None or not reply[1]:
            return Found()
        blob_keys: bytes = reply[1]
        keys = [blob_keys[i : i + _KEY_LEN] for i in range(0, len(blob_keys), _KEY_LEN)]
        matrix = np.frombuffer(reply[2], dtype=np.float16).reshape(len(keys), -1)
        sims = matrix.astype(np.float32) @ vector
        ranked = [i for i in np.argsort(-sims)[:limit].tolist() if sims[i] >= similarity]
        if not ranked:
            return Found()
        async with self.client.pipeline(transaction=False) as pipe:
            for i in ranked:
                pipe.hmget(f"{prefix}:e:{keys[i].decode()}", "s", "p", "c")
            rows = await pipe.execute()
        candidates = tuple(
            Record(row[0].decode(), row[1].decode(), row[2], float(sims[i]))
            for i, row in zip(ranked, rows, strict=True)
            if row[2] is not None
        )
        return Found(candidates=candidates)

    async def put(
        self, scope: Scope, key: str, prompt: str, vector: Vector | None, completion: bytes
    ) -> None:
        if len(key) != _KEY_LEN:
            raise ValueError(f"entry keys are {_KEY_LEN} characters")
        prefix = self._prefix(scope)
        buckets: list[str] = []
        packed = b""
        if vector is not None:
            planes = hyperplanes(vector.shape[0], self._tables, self._bits)
            buckets = [
                f"{prefix}:b{planes.tag}:{t}:{c:x}" for t, c in enumerate(planes.codes(vector))
            ]
            packed = vector.astype(np.float16).tobytes()
        await self._put(
            keys=[f"{prefix}:e:{key}", f"{prefix}:lru", *buckets],
            args=[
                key,
                scope.digest,
                prompt,
                completion,
                packed,
                self._ttl_ms,
                time.time(),
                self._max_entries,
                f"{prefix}:e:",
            ],
        )

    def _pattern(self, tenant: str | None) -> str:
        return f"{self._namespace}:{tenant_key(tenant) if tenant is not None else '*'}:*"

    async def stats(self, tenant: str | None) -> dict[str, Any]:
        entries = scopes = keys = 0
        async for name in self.client.scan_iter(match=self._pattern(tenant), count=1000):
            keys += 1
            if b":e:" in name:
                entries += 1
            elif name.endswith(b":lru"):
                scopes += 1
        info = await self.client.info("memory")
        return {
            "store": self.name,
            "entries": entries,
            "scopes": scopes,
            "keys": keys,
            "max_entries_per_scope": self._max_entries,
            "used_memory": info.get("used_memory") if isinstance(info, dict) else None,
        }

    async def clear(self, tenant: str | None) -> int:
        entries = 0
        batch: list[bytes] = []
        async for name in self.client.scan_iter(match=self._pattern(tenant), count=1000):
            entries += b":e:" in name
            batch.append(name)
            if len(batch) >= 500:
                await self._unlink(batch)
                batch = []
        if batch:
            await self._unlink(batch)
        return entries

    async def _unlink(self, names: list[bytes]) -> None:
        # One key per command: a cluster rejects multi-key commands across slots.
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                # execute_command, because a cluster client's unlink() is a multi-key
                # helper that does not queue in a pipeline.
                pipe.execute_command("UNLINK", name)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
