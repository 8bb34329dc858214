"""Scoring benchmark: per-request latency, micro-batched throughput, overhead vs bare onnxruntime.

    .venv/bin/python bench/scoring/run.py [--threads N] [--provider CUDAExecutionProvider]

1. Batch 1, one request at a time, prompts of 16/64/128/256 tokens: p50/p99 of
   the router's path (`await Scorer.score()`: tokenizing, the micro-batcher's
   thread hop, onnxruntime) and of a bare `session.run` on the same model with
   the same pre-tokenized inputs, measured interleaved in the same run.
2. Throughput: `--concurrency` clients each awaiting `score()` in a loop,
   served by the micro-batcher; and bare onnxruntime at the same batch size.

Prints a table and writes JSON (default bench/scoring/results.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from router.scoring import Scorer, TextEncoder
from router.scoring.inputs import length_groups
from router.scoring.session import default_threads

TEXT = (
    "Explain how a transformer language model processes a long prompt, why attention "
    "cost grows with the sequence length, and which tricks (caching, batching, "
    "quantization) keep serving latency low on commodity hardware. "
)


def text_of_tokens(scorer: Scorer, n: int) -> str:
    """A prompt that encodes to exactly `n` tokens, [CLS] and [SEP] included."""
    words = (TEXT * 40).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if scorer.encoder.encode([" ".join(words[:mid])]).input_ids.shape[1] <= n:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    # Top up with one-token words; the model's window caps the count, so stop at n.
    width = scorer.encoder.encode([text]).input_ids.shape[1]
    return text + " a" * max(0, n - width)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


async def latency(scorer: Scorer, tokens: int, reps: int) -> dict[str, float]:
    text = text_of_tokens(scorer, tokens)
    feeds = scorer.encoder.encode([text]).feeds()
    width = int(feeds["input_ids"].shape[1])
    for _ in range(10):
        await scorer.score(text)
        scorer.session.run(None, feeds)
    router, bare = [], []
    for _ in range(reps):
        # Interleaved so machine noise hits both paths alike.
        t = time.perf_counter()
        await scorer.score(text)
        router.append(time.perf_counter() - t)
        t = time.perf_counter()
        scorer.session.run(None, feeds)
        bare.append(time.perf_counter() - t)
    return {
        "tokens": width,
        "router_p50_ms": pct(router, 50),
        "router_p99_ms": pct(router, 99),
        "bare_p50_ms": pct(bare, 50),
        "bare_p99_ms": pct(bare, 99),
        "overhead_p50": pct(router, 50) / pct(bare, 50),
    }


def prompts(n: int) -> list[str]:
    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "routing" / "dev.jsonl"
    if data.exists():
        with open(data, encoding="utf-8") as fh:
            texts = [json.loads(line)["prompt"] for line in fh]
        return [texts[i % len(texts)] for i in range(n)]
    rng = np.random.default_rng(0)
    words = TEXT.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(10, 120)))) for _ in range(n)]


async def throughput(scorer: Scorer, concurrency: int, total: int) -> dict[str, float]:
    texts = prompts(total)
    queue = iter(texts)
    lat: list[float] = []

    async def client() -> None:
        for text in queue:
            t = time.perf_counter()
            features = await scorer.score(text)
            lat.append(time.perf_counter() - t)
            assert features.error is None, features.error

    runs0 = scorer.runs
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    runs = scorer.runs - runs0

    # Bare onnxruntime on the same prompts, pre-tokenized, in batches of the
    # mean batch size seen: as they come, and split by length as the scorer does.
    size = max(1, round(total / max(runs, 1)))
    plain, grouped = [], []
    for i in range(0, total, size):
        chunk = texts[i : i + size]
        rows = scorer.encoder.tokenize(chunk)
        plain.append(TextEncoder.pack(rows, chunk).feeds())
        for idx in length_groups([len(r) for r in rows]):
            sub = TextEncoder.pack([rows[j] for j in idx], [chunk[j] for j in idx])
            grouped.append(sub.feeds())
    t = time.perf_counter()
    for feeds in plain:
        scorer.session.run(None, feeds)
    bare = time.perf_counter() - t
    t = time.perf_counter()
    for feeds in grouped:
        scorer.session.run(None, feeds)
    bare_grouped = time.perf_counter() - t
    return {
        "concurrency": concurrency,
        "prompts": total,
        "prompts_per_s": total / elapsed,
        "mean_batch": total / max(runs, 1),
        "latency_p50_ms": pct(lat, 50),
        "latency_p99_ms": pct(lat, 99),
        "bare_prompts_per_s": total / bare,
        "bare_grouped_prompts_per_s": total / bare_grouped,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    providers = [args.provider, "CPUExecutionProvider"] if args.provider else None
    scorer = Scorer.from_path(
        args.model,
        threads=args.threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        providers=providers,
    )
    if args.provider and scorer.provider != args.provider:
        raise SystemExit(f"asked for {args.provider}, onnxruntime gave {scorer.provider}")
    await scorer.start()
    rows = [await latency(scorer, n, args.reps) for n in (16, 64, 128, 256)]
    tput = await throughput(scorer, args.concurrency, args.prompts)
    await scorer.close()
    return {
        "model": scorer.model_name,
        "provider": scorer.provider,
        "threads": args.threads or default_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "batch1": rows,
        "throughput": tput,
    }


def report(res: dict[str, Any]) -> str:
    lines = [
        f"model {res['model']} on {res['provider']}, threads={res['threads']}, cpus={res['cpus']}",
        f"{'tokens':>6} {'router p50':>11} {'p99':>8} {'bare p50':>9} {'p99':>8} "
        f"{'router/bare':>11}",
    ]
    for r in res["batch1"]:
        lines.append(
            f"{r['tokens']:>6} {r['router_p50_ms']:>9.2f}ms {r['router_p99_ms']:>6.2f}ms "
            f"{r['bare_p50_ms']:>7.2f}ms {r['bare_p99_ms']:>6.2f}ms {r['overhead_p50']:>10.2f}x"
        )
    t = res["throughput"]
    lines.append(
        f"throughput: {t['prompts_per_s']:.0f} prompts/s with {t['concurrency']} concurrent "
        f"requests (mean batch {t['mean_batch']:.1f}, p50 {t['latency_p50_ms']:.1f} ms, "
        f"p99 {t['latency_p99_ms']:.1f} ms); bare onnxruntime "
        f"{t['bare_prompts_per_s']:.0f} prompts/s as batched, "
        f"{t['bare_grouped_prompts_per_s']:.0f} prompts/s split by length"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="classifier directory (default: shipped)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--provider", help="e.g. CUDAExecutionProvider (default: automatic)")
    parser.add_argument("--reps", type=int, default=200, help="batch-1 requests per length")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=2000, help="prompts in the throughput run")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args()
    res = asyncio.run(main_async(args))
    print(report(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
