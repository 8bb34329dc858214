"""Semantic cache benchmark: false hits, benign hit rate, Redis lookup latency and memory.

    .venv/bin/python -m bench.cache.run [--redis-url URL] [--sizes 1000,10000,100000]

Writes bench/cache/results.json and prints tables. Uses Redis db 14 under a
throwaway namespace and deletes what it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from bench.cache.embed import load_embedder
from bench.cache.sets import Query, build_sets
from router.cache import CacheConfig, Scope, build_cache, scope_for

THRESHOLDS = (0.90, 0.95, 0.98, 0.99)
OUT = Path(__file__).with_name("results.json")


def _scope(tenant: str = "bench") -> Scope:
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0}
    scope = scope_for(tenant=tenant, upstream="local", model="m", body=body)
    assert scope is not None
    return scope


def _answer(index: int) -> dict[str, Any]:
    message = {"role": "assistant", "content": str(index)}
    return {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ---------------------------------------------------------------- quality


async def quality(config: CacheConfig, per_kind: int) -> dict[str, Any]:
    sets = build_sets(per_kind=per_kind)
    description, embed = load_embedder()
    print(f"embeddings: {description}")
    started = time.perf_counter()
    stored_vectors = embed(sets.stored)
    queries = sets.near_misses + sets.benign
    query_vectors = embed([q.prompt for q in queries])
    embed_s = time.perf_counter() - started

    cache = build_cache(config)
    scope = _scope()
    for i, (prompt, vector) in enumerate(zip(sets.stored, stored_vectors, strict=True)):
        await cache.store(scope, prompt, vector, _answer(i))

    # What a plain cosine cache would do: the nearest stored prompt, no exact key, no guard.
    sims = query_vectors @ stored_vectors.T
    nearest = sims.argmax(axis=1)
    best = sims.max(axis=1)

    results: dict[str, Any] = {"embeddings": description, "embed_seconds": round(embed_s, 1)}
    rows: dict[str, dict[str, Any]] = {}
    for threshold in THRESHOLDS:
        outcome: list[tuple[Query, str, int | None, bool]] = []
        for query, vector in zip(queries, query_vectors, strict=True):
            found = await cache.lookup(scope, query.prompt, vector, similarity=threshold)
            got = None
            if found.status == "hit" and found.completion is not None:
                got = int(found.completion["choices"][0]["message"]["content"])
            outcome.append((query, found.status, got, found.guarded))
        for kind in sorted({q.kind for q in queries}):
            idx = [i for i, q in enumerate(queries) if q.kind == kind]
            near = queries[idx[0]].original is None
            row = rows.setdefault(kind, {"set": "near_miss" if near else "benign", "n": len(idx)})
            if near:
                row[f"false_hits@{threshold}"] = sum(outcome[i][1] == "hit" for i in idx)
                row[f"guarded@{threshold}"] = sum(outcome[i][3] for i in idx)
                row[f"cosine_false_hits@{threshold}"] = int(sum(best[i] >= threshold for i in idx))
            else:
                right = sum(outcome[i][2] == queries[i].original for i in idx)
                wrong = sum(
                    outcome[i][1] == "hit" and outcome[i][2] != queries[i].original for i in idx
                )
                row[f"hit_rate@{threshold}"] = round(right / len(idx), 4)
                row[f"false_hits@{threshold}"] = wrong
                row[f"cosine_hit_rate@{threshold}"] = round(
                    sum(best[i] >= threshold and nearest[i] == queries[i].original for i in idx)
                    / len(idx),
                    4,
                )
    results["sets"] = rows
    near_idx = [i for i, q in enumerate(queries) if q.original is None]
    results["near_miss_cosine_to_nearest"] = {
        "p50": round(_pct([float(best[i]) for i in near_idx], 50), 4),
        "p90": round(_pct([float(best[i]) for i in near_idx], 90), 4),
    }
    await cache.clear()
    await cache.close()
    return results


# ---------------------------------------------------------------- latency


async def latency(config: CacheConfig, sizes: list[int], queries: int) -> dict[str, Any]:
    dim = 384
    rng = np.random.default_rng(0)
    cache = build_cache(replace(config, max_entries=max(sizes) + 1, ttl_s=24 * 3600))
    scope = _scope("latency")
    client = aioredis.Redis.from_url(config.redis_url or "")
    vectors = np.zeros((0, dim), np.float32)
    results: list[dict[str, Any]] = []

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def at_cosine(v: np.ndarray, c: float) -> np.ndarray:
        r = rng.standard_normal(dim).astype(np.float32)
        r -= (r @ v) * v
        r /= np.linalg.norm(r)
        return (c * v + np.sqrt(1 - c * c) * r).astype(np.float32)

    await client.memory_purge() if hasattr(client, "memory_purge") else None
    base_memory = (await client.info("memory"))["used_memory"]
    for size in sizes:
        new = unit(size - len(vectors))
        start_index = len(vectors)
        vectors = np.concatenate([vectors, new])
        started = time.perf_counter()
        batch = 64
        answer = _answer(0)
        for b in range(0, len(new), batch):
            await asyncio.gather(
                *(
                    cache.store(scope, f"synthetic prompt number {start_index + b + j}", v, answer)
                    for j, v in enumerate(new[b : b + batch])
                )
            )
        insert_s = time.perf_counter() - started
        memory = (await client.info("memory"))["used_memory"]

        picks = rng.choice(size, size=queries, replace=False)
        timings: dict[str, list[float]] = {"semantic_hit": [], "miss": [], "exact_hit": []}
        found_target = 0
        found_edge = {"0.955_vs_0.95": 0, "0.905_vs_0.90": 0}
        for i in picks:
            i, c = int(i), 0.97
            cases = [
                ("semantic_hit", f"Synthetic prompt number {i}, thanks", at_cosine(vectors[i], c)),
                ("miss", f"unrelated prompt {i}", unit(1)[0]),
                ("exact_hit", f"synthetic prompt number {i}", vectors[i]),
            ]  # fmt: skip
            for name, prompt, vector in cases:
                t0 = time.perf_counter()
                found = await cache.lookup(scope, prompt, vector, similarity=0.95)
                timings[name].append((time.perf_counter() - t0) * 1000)
                if name == "semantic_hit" and found.status == "hit":
                    found_target += 1
            # Recall near the threshold, where LSH misses most, for two thresholds.
            for label, cosine, threshold in (
                ("0.955_vs_0.95", 0.955, 0.95),
                ("0.905_vs_0.90", 0.905, 0.90),
            ):
                edge = await cache.lookup(
                    scope,
                    f"Synthetic prompt number {i}, thanks",
                    at_cosine(vectors[i], cosine),
                    similarity=threshold,
                )
                found_edge[label] += edge.status == "hit"
        row = {
            "entries": size,
            "insert_per_s": round((size - start_index) / insert_s),
            "bytes_per_entry": round((memory - base_memory) / size),
            "recall@0.97_vs_0.95": round(found_target / queries, 4),
            **{f"recall@{k}": round(v / queries, 4) for k, v in found_edge.items()},
        }
        for name, values in timings.items():
            row[f"{name}_p50_ms"] = round(_pct(values, 50), 3)
            row[f"{name}_p99_ms"] = round(_pct(values, 99), 3)
        results.append(row)
        print(json.dumps(row))

    # The alternative measured for reference: an in-process brute-force scan.
    matrix = vectors
    q = unit(1)[0]
    scans = []
    for _ in range(50):
        t0 = time.perf_counter()
        (matrix @ q).argmax()
        scans.append((time.perf_counter() - t0) * 1000)
    await cache.clear()
    await cache.close()
    await client.aclose()
    return {
        "lsh": {"tables": config.lsh_tables, "bits": config.lsh_bits},
        "rows": results,
        "numpy_bruteforce_scan_ms_p50_at_max": round(statistics.median(scans), 3),
    }


# ---------------------------------------------------------------- report


def _print_quality(q: dict[str, Any]) -> None:
    print(f"\nQuality ({q['embeddings']})")
    header = f"{'set':34} {'n':>4} " + " ".join(f"{'@' + str(t):>16}" for t in THRESHOLDS)
    print(header + "\n" + " " * 40 + "   (cache / plain cosine)")
    for kind, row in q["sets"].items():
        cells = []
        for t in THRESHOLDS:
            if row["set"] == "near_miss":
                cells.append(f"{row[f'false_hits@{t}']:>5} / {row[f'cosine_false_hits@{t}']:>5} FH")
            else:
                cells.append(f"{row[f'hit_rate@{t}']:>6.1%} / {row[f'cosine_hit_rate@{t}']:>6.1%}")
        print(f"{kind:34} {row['n']:>4} " + " ".join(f"{c:>16}" for c in cells))


def _print_latency(lat: dict[str, Any]) -> None:
    print(f"\nRedis lookup latency (LSH {lat['lsh']}), ms")
    cols = ["entries", "insert_per_s", "bytes_per_entry", "recall@0.97_vs_0.95",
            "recall@0.955_vs_0.95", "recall@0.905_vs_0.90",
            "exact_hit_p50_ms", "semantic_hit_p50_ms", "semantic_hit_p99_ms",
            "miss_p50_ms", "miss_p99_ms"]  # fmt: skip
    print(" ".join(f"{c:>20}" for c in cols))
    for row in lat["rows"]:
        print(" ".join(f"{row[c]!s:>20}" for c in cols))
    print(f"numpy brute-force scan at max size: {lat['numpy_bruteforce_scan_ms_p50_at_max']} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--per-kind", type=int, default=400)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--tables", type=int, default=CacheConfig().lsh_tables)
    parser.add_argument("--bits", type=int, default=CacheConfig().lsh_bits)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    config = CacheConfig(
        redis_url=args.redis_url,
        namespace=f"hrbench-{uuid.uuid4().hex[:8]}",
        lookup_timeout_ms=2000,
        store_timeout_ms=2000,
        max_entries=1_000_000,
        lsh_tables=args.tables,
        lsh_bits=args.bits,
    )
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    if not args.skip_quality:
        report["quality"] = await quality(config, args.per_kind)
        _print_quality(report["quality"])
    if not args.skip_latency:
        sizes = [int(s) for s in args.sizes.split(",")]
        report["latency"] = await latency(config, sizes, args.queries)
        _print_latency(report["latency"])
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
