"""Scoring on versus off through `router serve`: server CPU per request on dev prompts.

    .venv/bin/python bench/scoring/router_cpu.py [--prompts 1000] [--concurrency 1,16]

Two routers from this tree, the rule-only policy of bench/overhead/run.py (one
worker, aiohttp transport, decision records on), one of them with
`scoring: {enabled: true}` (the shipped classifier, router defaults), pinned to
the same CPU; the fake upstream and this client share the other CPU. Both get
the same chat requests, one dev prompt each as the user turn (deterministic
sample, as bench/scoring/breakdown.py), closed loop at each concurrency, in
chunks taken in turn so that drifting background load hits both alike.
Reported: server CPU per request (the router's process tree, from /proc),
req/s and p50, and on / off ratios.

Markdown to stdout; JSON to bench/results/scoring-router-cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# First: bench/overhead/run.py, not this folder's run.py.
sys.path.insert(0, str(HERE.parent / "overhead"))

from breakdown import DEV, sample_prompts  # noqa: E402
from loadgen import _connect, build_request, loop_factory  # noqa: E402
from run import (  # noqa: E402
    ROOT,
    clean_env,
    free_port,
    loadavg,
    log,
    start,
    stop,
    tail,
    tree_cpu_seconds,
    wait_http,
    write_policy,
)

RESULTS = ROOT / "bench" / "results" / "scoring-router-cpu.json"


def body(prompt: str) -> bytes:
    request = {
        "model": "auto",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 64,
    }
    return json.dumps(request, separators=(",", ":")).encode()


async def drive(port: int, raws: list[bytes], concurrency: int, pid: int) -> dict[str, Any]:
    conns = [await _connect("127.0.0.1", port) for _ in range(concurrency)]
    queue = iter(raws)
    latency: list[float] = []
    errors = 0

    async def client(i: int) -> None:
        nonlocal errors
        conn = conns[i]
        for raw in queue:
            started = time.perf_counter()
            await conn.request(raw)
            if conn.status != 200 or not conn.keep_alive:
                errors += 1
                if conn.transport is not None:
                    conn.transport.close()
                conn = conns[i] = await _connect("127.0.0.1", port)
                continue
            latency.append(time.perf_counter() - started)

    cpu0, wall0 = tree_cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall, cpu1 = time.perf_counter() - wall0, tree_cpu_seconds(pid)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else float("nan")
    return {"n": len(raws), "errors": errors, "wall": wall, "cpu": cpu, "latency": latency}


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(p["n"] for p in parts)
    latency = [x for p in parts for x in p["latency"]]
    return {
        "requests": n,
        "errors": sum(p["errors"] for p in parts),
        "cpu_us_per_request": sum(p["cpu"] for p in parts) / n * 1e6,
        "rps": n / sum(p["wall"] for p in parts),
        "p50_ms": statistics.median(latency) * 1000 if latency else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--data", type=Path, default=DEV)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    router_cpu, other_cpu = (cpus[1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if other_cpu is not None:
        os.sched_setaffinity(0, {other_cpu})
    prompts = sample_prompts(args.data, args.prompts, args.seed)
    work = Path(tempfile.mkdtemp(prefix="scoring-router-cpu-"))
    procs = []
    load_before = loadavg()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    parts: dict[str, dict[int, list[dict[str, Any]]]] = {
        "off": {c: [] for c in concurrency},
        "on": {c: [] for c in concurrency},
    }
    try:
        upstream = free_port()
        fake = start(
            [sys.executable, str(HERE.parent / "overhead" / "fake_upstream.py"), "--port",
             str(upstream)],
            cpu=other_cpu,
            env=clean_env(),
            log_path=work / "fake.log",
        )  # fmt: skip
        procs.append(fake)
        if not wait_http(f"http://127.0.0.1:{upstream}/v1/models", fake, 15):
            log("the fake upstream did not start:\n" + tail(work / "fake.log"))
            return 1
        routers: dict[str, tuple[int, int]] = {}
        for label in ("off", "on"):
            port, policy = free_port(), work / f"policy-{label}.yaml"
            write_policy(policy, upstream, work / f"decisions-{label}.jsonl")
            if label == "on":
                with open(policy, "a", encoding="utf-8") as fh:
                    fh.write("scoring: {enabled: true}\n")
            cmd = [sys.executable, "-m", "router.cli", "serve", "--policy", str(policy),
                   "--port", str(port), "--workers", "1", "--log-level", "warning"]  # fmt: skip
            env = clean_env(PYTHONPATH=str(ROOT))
            proc = start(cmd, cpu=router_cpu, env=env, log_path=work / f"{label}.log")
            procs.append(proc)
            if not wait_http(f"http://127.0.0.1:{port}/healthz", proc, 90):
                log(f"router {label} did not start:\n" + tail(work / f"{label}.log"))
                return 1
            routers[label] = (port, proc.pid)
        raws = {
            label: [build_request("127.0.0.1", port, "/v1/chat/completions", body(p))
                    for p in prompts]
            for label, (port, _) in routers.items()
        }  # fmt: skip
        bounds = [len(prompts) * k // args.chunks for k in range(args.chunks + 1)]
        turn = 0
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for label, (port, pid) in routers.items():  # warm-up, unmeasured
                runner.run(drive(port, raws[label][:16], 4, pid))
            for k in range(args.chunks):
                for c in concurrency:
                    order = ["off", "on"] if turn % 2 == 0 else ["on", "off"]
                    turn += 1
                    for label in order:
                        port, pid = routers[label]
                        log(f"chunk {k + 1}/{args.chunks} c={c} scoring {label}")
                        chunk = raws[label][bounds[k] : bounds[k + 1]]
                        parts[label][c].append(runner.run(drive(port, chunk, c, pid)))
    finally:
        for proc in procs:
            stop(proc)
    res = {label: {c: merge(p) for c, p in by_c.items()} for label, by_c in parts.items()}
    scored = {}
    for label in ("off", "on"):  # the records say whether requests were really scored
        lines = (work / f"decisions-{label}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        scored[label] = sum(r.get("score") is not None for r in records), len(records)
    print(
        f"{args.prompts} dev prompts (seed {args.seed}) as chat requests, router pinned to CPU "
        f"{router_cpu}; load {load_before} / {loadavg()}; records with a score: "
        f"off {scored['off'][0]}/{scored['off'][1]}, on {scored['on'][0]}/{scored['on'][1]}\n"
    )
    print("| point | CPU us/req off | on | on / off | req/s off | on | p50 off | on | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in concurrency:
        off, on = res["off"][c], res["on"][c]
        print(
            f"| c={c} | {off['cpu_us_per_request']:,.0f} | {on['cpu_us_per_request']:,.0f} | "
            f"{on['cpu_us_per_request'] / off['cpu_us_per_request']:.1f}x | {off['rps']:,.0f} | "
            f"{on['rps']:,.1f} | {off['p50_ms']:.2f} ms | {on['p50_ms']:.1f} ms | "
            f"{off['errors'] + on['errors']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"ts": time.time(), "scored_records": scored, "results": res}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
