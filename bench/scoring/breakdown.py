"""Where scoring time goes: text, tokenizer, arrays, model run and batching, on dev prompts.

    .venv/bin/python bench/scoring/breakdown.py                    # this tree, ~4 min
    .venv/bin/python bench/scoring/breakdown.py --before 2aaad0c   # two revisions side by side

A deterministic sample of the routing data's dev prompts (`--prompts`, default
2,000, seed 0) goes through the router's own path, `await Scorer.score(text)`,
at each concurrency (`--concurrency`, default 1,8,32: a lone request at a time,
then 8 and 32 clients sharing the micro-batcher with the router's defaults,
max_batch 32, max_wait_ms 2). The scorer is instrumented from outside (its
session, tokenizer, `TextEncoder.tokenize` / `pack` and `clip_text` are wrapped
with timers), so the code measured is the code the router runs. Per prompt:

  prepare    prompt_text(messages): what the pipeline hands the scorer (event loop)
  cut        clip_text: the head and tail in characters
  tokenizer  the tokenizers call itself (Rust)
  window     the rest of TextEncoder.tokenize: the head+tail token window
  arrays     TextEncoder.pack: the padded int64 arrays and log_chars
  model      onnxruntime's session.run
  post       the rest of the inference thread's run: length groups, scatter
  idle       wall time the inference thread was not running: the micro-batcher's
             queue and wait window, the thread hops, the client loop

and per request: time queued before its run started, its run, and the hand-back
to the awaiting coroutine. Throughput and CPU per prompt (the worker process, all
threads) are measured on the same runs. Then, apart, the input preparation alone
(TextEncoder.tokenize and pack at batch 1 and max_batch, CPU time, fastest of 3
calls): the part small enough for one preemption to swamp in the runs above.

Each revision runs in its own worker process (PYTHONPATH = that tree; `--before`
is checked out into a temporary git worktree). Only one worker works at a time;
the sample is cut into `--chunks` pieces and the revisions take turns on each
piece and concurrency, alternating who goes first, so that drifting background
load hits both alike. Markdown to stdout; JSON to bench/results/scoring-breakdown.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEV = ROOT.parent / "shared" / "data" / "routing" / "dev.jsonl"
RESULTS = ROOT / "bench" / "results" / "scoring-breakdown.json"

sys.path.insert(0, str(ROOT / "bench" / "overhead"))
from revisions import checkout  # noqa: E402  (one git-worktree helper for both benches)

#: Phases inside the inference thread's run, in the order they happen.
RUN_PHASES = ("cut", "tokenizer", "window", "arrays", "model", "post")


def sample_prompts(path: Path, n: int, seed: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["prompt"] for line in fh]
    rng = random.Random(seed)
    order = rng.sample(range(len(texts)), len(texts))
    return [texts[order[i % len(order)]] for i in range(n)]


# -- worker: one revision's scorer, instrumented ----------------------------------------


class Probe:
    """Timers wrapped around the scorer's pieces; sums per chunk."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        # id(text) -> (run start, run end), FIFO for a text queued twice at once.
        self.spans: dict[int, deque[tuple[float, float]]] = defaultdict(deque)

    def reset(self) -> None:
        self.acc.clear()
        self.count.clear()
        self.spans.clear()

    def timed(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        perf = time.perf_counter

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = perf()
            try:
                return fn(*args, **kwargs)
            finally:
                self.acc[key] += perf() - started
                self.count[key] += 1

        return wrapper

    def batch_run(self, fn: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
        perf = time.perf_counter

        def wrapper(texts: list[str]) -> Any:
            started = perf()
            try:
                return fn(texts)
            finally:
                ended = perf()
                self.acc["run"] += ended - started
                self.count["run"] += 1
                self.count["run_prompts"] += len(texts)
                for text in texts:
                    self.spans[id(text)].append((started, ended))

        return wrapper


class _Proxy:
    """Forwards every attribute; the ones named in `timed` go through a timer."""

    def __init__(self, inner: Any, probe: Probe, key: str, timed: Callable[[str], bool]) -> None:
        self._inner, self._probe, self._key, self._is_timed = inner, probe, key, timed

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if callable(value) and self._is_timed(name):
            return self._probe.timed(self._key, value)
        return value


def instrument(scorer: Any, probe: Probe) -> None:
    import router.scoring.inputs as inputs

    inputs.clip_text = probe.timed("cut", inputs.clip_text)
    encoder = scorer.encoder
    encoder._tokenizer = _Proxy(
        encoder._tokenizer, probe, "tokenizer", lambda name: name.startswith("encode")
    )
    encoder.tokenize = probe.timed("tokenize", encoder.tokenize)
    pack = inputs.TextEncoder.__dict__["pack"]
    if isinstance(pack, staticmethod):
        inputs.TextEncoder.pack = staticmethod(probe.timed("arrays", pack.__func__))
    else:  # a method or classmethod: time it through the instance the scorer uses
        encoder.pack = probe.timed("arrays", encoder.pack)
    scorer.session = _Proxy(scorer.session, probe, "model", lambda name: name == "run")
    scorer._batcher._run = probe.batch_run(scorer._batcher._run)


async def drive(scorer: Any, probe: Probe, texts: list[str], concurrency: int) -> dict[str, Any]:
    from router.scoring import prompt_text

    perf = time.perf_counter
    queue = iter(texts)
    wait: list[float] = []
    run: list[float] = []
    back: list[float] = []
    latency: list[float] = []
    prepare = 0.0

    async def client() -> None:
        nonlocal prepare
        for raw in queue:
            messages = [{"role": "user", "content": raw}]
            t0 = perf()
            text = prompt_text(messages)
            t1 = perf()
            features = await scorer.score(text)
            t2 = perf()
            if features.error is not None:
                raise RuntimeError(features.error)
            started, ended = probe.spans[id(text)].popleft()
            prepare += t1 - t0
            wait.append(started - t1)
            run.append(ended - started)
            back.append(t2 - ended)
            latency.append(t2 - t1)

    probe.reset()
    cpu0, wall0 = time.process_time(), perf()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu = perf() - wall0, time.process_time() - cpu0
    acc = dict(probe.acc)
    acc["prepare"] = prepare
    return {
        "n": len(latency),
        "wall": wall,
        "cpu": cpu,
        "acc": acc,
        "count": dict(probe.count),
        "wait": sum(wait),
        "run_per_request": sum(run),
        "back": sum(back),
        "latency_ms": [x * 1000 for x in latency],
    }


#: A prompt this long (characters) counts as long in the preparation table.
LONG = 2000


def preparation(encoder: Any, texts: list[str], batch: int) -> dict[str, Any]:
    """Tokenizing and packing alone: CPU time, each call 3 times and the fastest kept.

    CPU-bound pieces of a few hundred microseconds: on a shared machine one
    preemption can double such a call's wall time, not its CPU time (the
    process's, so the tokenizer's helper threads count too).
    """
    from router.scoring.inputs import TextEncoder

    perf = time.process_time
    res = {"n": len(texts), "tokenize": 0.0, "pack": 0.0, "tokenize_long": 0.0, "n_long": 0}
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        best_tokenize = best_pack = float("inf")
        for _ in range(3):
            t0 = perf()
            rows = encoder.tokenize(chunk)
            t1 = perf()
            TextEncoder.pack(rows, chunk)
            t2 = perf()
            best_tokenize, best_pack = min(best_tokenize, t1 - t0), min(best_pack, t2 - t1)
        res["tokenize"] += best_tokenize
        res["pack"] += best_pack
        if batch == 1 and len(chunk[0]) >= LONG:
            res["tokenize_long"] += best_tokenize
            res["n_long"] += 1
    return res


async def serve_worker(args: argparse.Namespace) -> None:
    from router.scoring import Scorer

    scorer = Scorer.from_path(
        args.model, threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
    )
    probe = Probe()
    instrument(scorer, probe)
    await scorer.start()
    texts = sample_prompts(args.data, args.prompts, args.seed)
    # Warm up: a lone request and a full micro-batch, unmeasured.
    for c in (1, max(2, args.max_batch)):
        await drive(scorer, probe, sample_prompts(args.data, 24, args.seed + 1), c)
    print(json.dumps({"ready": scorer.provider}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        chunk = texts[cmd["lo"] : cmd["hi"]]
        if "prep" in cmd:
            res = preparation(scorer.encoder, chunk, cmd["prep"])
        else:
            res = await drive(scorer, probe, chunk, cmd["c"])
        print(json.dumps(res), flush=True)
    await scorer.close()


# -- parent: revisions, interleaving, report ---------------------------------------------


class Worker:
    def __init__(self, label: str, tree: Path, args: argparse.Namespace) -> None:
        self.label = label
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--tree",
            str(tree),
            "--data",
            str(args.data),
            "--prompts",
            str(args.prompts),
            "--seed",
            str(args.seed),
            "--max-batch",
            str(args.max_batch),
            "--max-wait-ms",
            str(args.max_wait_ms),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.model:
            cmd += ["--model", str(args.model)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env["PYTHONPATH"] = str(tree)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.provider = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, lo: int, hi: int, **what: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"lo": lo, "hi": hi, **what}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    acc: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for p in parts:
        for k, v in p["acc"].items():
            acc[k] += v
        for k, v in p["count"].items():
            count[k] += v
    n = sum(p["n"] for p in parts)
    wall = sum(p["wall"] for p in parts)
    per = {k: v / n * 1e6 for k, v in acc.items()}  # us per prompt
    phases = {
        "prepare": per.get("prepare", 0.0),
        "cut": per.get("cut", 0.0),
        "tokenizer": per.get("tokenizer", 0.0),
        "window": per.get("tokenize", 0.0) - per.get("cut", 0.0) - per.get("tokenizer", 0.0),
        "arrays": per.get("arrays", 0.0),
        "model": per.get("model", 0.0),
        "post": per.get("run", 0.0)
        - per.get("tokenize", 0.0)
        - per.get("arrays", 0.0)
        - per.get("model", 0.0),
        "idle": (wall - acc.get("run", 0.0)) / n * 1e6,
    }
    latency = sorted(x for p in parts for x in p["latency_ms"])
    return {
        "prompts": n,
        "wall_s": wall,
        "prompts_per_s": n / wall,
        "cpu_ms_per_prompt": sum(p["cpu"] for p in parts) / n * 1000,
        "us_per_prompt": phases,
        "share_of_wall": {k: v / (wall / n * 1e6) for k, v in phases.items()},
        "mean_batch": count.get("run_prompts", 0) / max(count.get("run", 0), 1),
        "model_runs_per_batch": count.get("model", 0) / max(count.get("run", 0), 1),
        "request_ms": {
            "queued": sum(p["wait"] for p in parts) / n * 1000,
            "run": sum(p["run_per_request"] for p in parts) / n * 1000,
            "hand_back": sum(p["back"] for p in parts) / n * 1000,
            "p50": statistics.median(latency),
            "p99": latency[min(len(latency) - 1, int(0.99 * len(latency)))],
        },
    }


def merge_preparation(parts: list[dict[str, Any]]) -> dict[str, float]:
    n = sum(p["n"] for p in parts)
    n_long = sum(p["n_long"] for p in parts)
    return {
        "prompts": n,
        "tokenize_us": sum(p["tokenize"] for p in parts) / n * 1e6,
        "pack_us": sum(p["pack"] for p in parts) / n * 1e6,
        "long_prompts": n_long,
        "tokenize_long_us": sum(p["tokenize_long"] for p in parts) / max(n_long, 1) * 1e6,
    }


def report_preparation(res: dict[str, dict[int, dict[str, float]]], labels: list[str]) -> str:
    batches = list(res[labels[0]])
    rows: list[tuple[str, Callable[[dict[int, dict[str, float]]], float]]] = []
    for b in batches:
        rows.append((f"tokenize, batch {b}", lambda r, b=b: r[b]["tokenize_us"]))
        if b == 1:
            n_long = res[labels[0]][1]["long_prompts"]
            rows.append(
                (
                    f"tokenize, batch 1, the {n_long} prompts of >= {LONG:,} characters",
                    lambda r: r[1]["tokenize_long_us"],
                )
            )
        rows.append((f"arrays (pack), batch {b}", lambda r, b=b: r[b]["pack_us"]))
    lines = [
        "\n**Input preparation alone** (CPU us per prompt, fastest of 3 per call)\n",
        "| step | " + " | ".join(labels) + (" | after / before |" if len(labels) == 2 else ""),
        "| --- |" + " ---: |" * (len(labels) + (len(labels) == 2)),
    ]
    for name, get in rows:
        values = [get(res[label]) for label in labels]
        cells = [f"{v:,.1f}" for v in values]
        if len(values) == 2:
            cells.append(f"{values[1] / values[0]:.2f}" if values[0] else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PHASE_ROWS = [
    ("prepare", "prepare: prompt_text (event loop)"),
    ("cut", "cut: clip_text"),
    ("tokenizer", "tokenizer call"),
    ("window", "token window"),
    ("arrays", "arrays: pack"),
    ("model", "model: session.run"),
    ("post", "post: groups, scatter"),
    ("idle", "idle: queue, wait window, thread hops"),
]


def report(res: dict[str, dict[str, dict[str, Any]]], labels: list[str]) -> str:
    lines = []
    for label in labels:
        by_c = res[label]
        cs = list(by_c)
        lines.append(f"\n**{label}** (us per prompt, and share of wall time)\n")
        lines.append("| phase | " + " | ".join(f"c={c}" for c in cs) + " |")
        lines.append("| --- |" + " ---: |" * len(cs))
        for key, name in PHASE_ROWS:
            cells = []
            for c in cs:
                r = by_c[c]
                share = "" if key == "prepare" else f" ({r['share_of_wall'][key] * 100:.1f}%)"
                cells.append(f"{r['us_per_prompt'][key]:,.1f}{share}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        rows = [
            ("prompts/s", lambda r: f"{r['prompts_per_s']:.1f}"),
            ("CPU ms per prompt", lambda r: f"{r['cpu_ms_per_prompt']:.2f}"),
            (
                "mean batch / model runs per batch",
                lambda r: f"{r['mean_batch']:.1f} / {r['model_runs_per_batch']:.2f}",
            ),
            (
                "request: queued / run / hand-back ms",
                lambda r: (
                    f"{r['request_ms']['queued']:.2f} / {r['request_ms']['run']:.2f} / "
                    f"{r['request_ms']['hand_back']:.2f}"
                ),
            ),
            (
                "request p50 / p99 ms",
                lambda r: f"{r['request_ms']['p50']:.1f} / {r['request_ms']['p99']:.1f}",
            ),
        ]
        for name, fmt in rows:
            lines.append(f"| {name} | " + " | ".join(fmt(by_c[c]) for c in cs) + " |")
    if len(labels) == 2:
        before, after = (res[label] for label in labels)
        cs = list(after)
        lines.append("\n**after / before** (us per prompt; < 1 is faster)\n")
        lines.append("| phase | " + " | ".join(f"c={c}" for c in cs) + " |")
        lines.append("| --- |" + " ---: |" * len(cs))
        for key, name in PHASE_ROWS:
            cells = []
            for c in cs:
                b, a = before[c]["us_per_prompt"][key], after[c]["us_per_prompt"][key]
                cells.append(f"{a / b:.2f}" if b > 1e-3 else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name, key in (("prompts/s", "prompts_per_s"), ("CPU per prompt", "cpu_ms_per_prompt")):
            cells = [f"{after[c][key] / before[c][key]:.3f}" for c in cs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        cells = [
            f"{after[c]['request_ms']['p50'] / before[c]['request_ms']['p50']:.3f}" for c in cs
        ]
        lines.append("| request p50 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to measure beside --after")
    parser.add_argument("--after", default="WORKTREE", help="a revision, or WORKTREE (default)")
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--chunks", type=int, default=4, help="turns per revision and concurrency")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="default: the router's")
    parser.add_argument("--model", type=Path, help="classifier directory (default: shipped)")
    parser.add_argument("--data", type=Path, default=DEV)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        sys.path.insert(0, str(args.tree))
        asyncio.run(serve_worker(args))
        return 0

    concurrency = [int(c) for c in args.concurrency.split(",")]
    revs = (
        [("before", args.before), ("after", args.after)] if args.before else [("this", "WORKTREE")]
    )
    work = Path(tempfile.mkdtemp(prefix="scoring-breakdown-"))
    trees: list[Path] = []
    workers: list[Worker] = []
    parts: dict[str, dict[int, list[dict[str, Any]]]] = {
        label: {c: [] for c in concurrency} for label, _ in revs
    }
    prep: dict[str, dict[int, list[dict[str, Any]]]] = {
        label: defaultdict(list) for label, _ in revs
    }
    load = [Path("/proc/loadavg").read_text().split()[0]] if Path("/proc/loadavg").exists() else []
    try:
        for label, rev in revs:
            tree = checkout(rev, work)
            if tree != ROOT:
                trees.append(tree)
            workers.append(Worker(label, tree, args))
        bounds = [args.prompts * k // args.chunks for k in range(args.chunks + 1)]
        prep_batches = sorted({1, args.max_batch})
        turn = 0
        for k in range(args.chunks):
            for c in concurrency:
                order = workers if turn % 2 == 0 else workers[::-1]
                turn += 1
                for w in order:
                    print(
                        f"[breakdown] chunk {k + 1}/{args.chunks} c={c} {w.label}", file=sys.stderr
                    )
                    parts[w.label][c].append(w.ask(bounds[k], bounds[k + 1], c=c))
            for b in prep_batches:
                order = workers if turn % 2 == 0 else workers[::-1]
                turn += 1
                for w in order:
                    prep[w.label][b].append(w.ask(bounds[k], bounds[k + 1], prep=b))
        provider = workers[0].provider
    finally:
        for w in workers:
            w.close()
        for tree in trees:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )
    if load:
        load.append(Path("/proc/loadavg").read_text().split()[0])
    res = {label: {c: merge(p) for c, p in by_c.items()} for label, by_c in parts.items()}
    prep_res = {
        label: {b: merge_preparation(p) for b, p in by_b.items()} for label, by_b in prep.items()
    }
    labels = [label for label, _ in revs]
    head = (
        f"{args.prompts} dev prompts (seed {args.seed}), {provider}, "
        f"threads={args.threads or 'router default'}, max_batch={args.max_batch}, "
        f"max_wait_ms={args.max_wait_ms}, cpus={os.cpu_count()}, load {' -> '.join(load)}"
    )
    if args.before:
        head += f"; before = {args.before}, after = {args.after}"
    print(head)
    print(report(res, labels))
    print(report_preparation(prep_res, labels))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"ts": time.time(), "head": head, "before": args.before, "after": args.after}
    out = {**meta, "results": res, "preparation": prep_res}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
