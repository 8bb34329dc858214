"""The router at two git revisions, side by side: did a change make the hot path slower?

    .venv/bin/python bench/overhead/revisions.py --before ef2bd0f [--after HEAD]

Each revision is checked out into a temporary git worktree and served by
`python -m router.cli serve` from that tree (same virtualenv, one worker, decision
records on, the rule-only policy of bench/overhead/run.py), pinned to the same
CPU in turn. Both get the same chat requests, plain and streamed, at each
concurrency, in interleaved rounds so that drifting background load hits them
alike. Reported: req/s, p50, CPU per request, and after/before ratios.

Markdown to stdout; JSON to bench/results/overhead-revisions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import build_request, loop_factory, run_load  # noqa: E402
from run import (  # noqa: E402
    ROOT,
    clean_env,
    free_port,
    loadavg,
    log,
    request_body,
    start,
    stop,
    summarize,
    tail,
    tree_cpu_seconds,
    wait_http,
    write_policy,
)

RESULTS = ROOT / "bench" / "results" / "overhead-revisions.json"


def checkout(rev: str, work: Path) -> Path:
    if rev == "WORKTREE":
        return ROOT
    target = work / f"rev-{rev}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), rev],
        check=True,
        capture_output=True,
    )
    return target


async def point(port: int, stream: bool, c: int, duration: float, pid: int) -> Any:
    raw = build_request("127.0.0.1", port, "/v1/chat/completions", request_body(stream))
    before = tree_cpu_seconds(pid)
    result = await run_load(
        "127.0.0.1",
        port,
        raw,
        concurrency=c,
        duration=duration,
        warmup=0.5,
        stream=stream,
        expect_events=20 if stream else 0,
        max_requests=200_000,
    )
    after = tree_cpu_seconds(pid)
    if before is not None and after is not None:
        result.cpu_s = after - before
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="WORKTREE", help="a revision, or WORKTREE (default)")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    router_cpu, other_cpu = (cpus[1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if other_cpu is not None:
        os.sched_setaffinity(0, {other_cpu})
    work = Path(tempfile.mkdtemp(prefix="router-revisions-"))
    procs, trees = [], []
    results: dict[str, dict[str, list[Any]]] = {}
    load_before = loadavg()
    try:
        upstream = free_port()
        fake = start(
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(upstream)],
            cpu=other_cpu,
            env=clean_env(),
            log_path=work / "fake.log",
        )
        procs.append(fake)
        if not wait_http(f"http://127.0.0.1:{upstream}/v1/models", fake, 15):
            log("the fake upstream did not start:\n" + tail(work / "fake.log"))
            return 1
        routers: dict[str, tuple[int, int]] = {}
        for label, rev in (("before", args.before), ("after", args.after)):
            tree = checkout(rev, work)
            if tree != ROOT:
                trees.append(tree)
            port, policy = free_port(), work / f"policy-{label}.yaml"
            write_policy(policy, upstream, work / f"decisions-{label}.jsonl")
            env = clean_env(PYTHONPATH=str(tree))  # each revision with its own default transport
            cmd = [
                sys.executable,
                "-m",
                "router.cli",
                "serve",
                "--policy",
                str(policy),
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            proc = start(cmd, cpu=router_cpu, env=env, log_path=work / f"{label}.log")
            procs.append(proc)
            if not wait_http(f"http://127.0.0.1:{port}/healthz", proc, 60):
                log(f"{label} did not start:\n" + tail(work / f"{label}.log"))
                return 1
            routers[label] = (port, proc.pid)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for r in range(args.rounds):
                for c in (int(x) for x in args.concurrency.split(",")):
                    for mode in ("plain", "stream"):
                        for label, (port, pid) in routers.items():
                            log(f"round {r + 1} c={c} {mode} {label}")
                            res = runner.run(point(port, mode == "stream", c, args.duration, pid))
                            results.setdefault(f"{mode} c={c}", {}).setdefault(label, []).append(
                                res
                            )
    finally:
        for proc in procs:
            stop(proc)
        for tree in trees:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )
    summary = {k: {lab: summarize(v) for lab, v in by.items()} for k, by in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"ts": time.time(), "before": args.before, "after": args.after, "summary": summary},
            indent=1,
            default=str,
        )
    )
    print(f"before = {args.before}, after = {args.after}; load {load_before} / {loadavg()}\n")
    print(
        "| point | req/s before | after | after/before | p50 before | after "
        "| CPU/req after/before |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for point_name, by in summary.items():
        b, a = by["before"], by["after"]
        cpu = (
            a["cpu_us_per_req"] / b["cpu_us_per_req"]
            if a["cpu_us_per_req"] and b["cpu_us_per_req"]
            else float("nan")
        )
        print(
            f"| {point_name} | {b['rps']:,.0f} | {a['rps']:,.0f} | {a['rps'] / b['rps']:.2f} | "
            f"{b['p50_ms']:.2f} ms | {a['p50_ms']:.2f} ms | {cpu:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
