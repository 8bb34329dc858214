"""Pass-through endpoints beside chat: what the router adds on each /v1 path.

    .venv/bin/python bench/overhead/endpoints.py            # about 2 minutes
    .venv/bin/python bench/overhead/endpoints.py --quick

One run starts the fast fake upstream and one `router serve` (aiohttp transport,
decision records on, no cache, no scoring), then sends the same requests DIRECT
to the fake and THROUGH the router for: chat completions (plain), embeddings
(routed by model name), legacy completions, and a path the router does not
interpret (`POST /v1/moderations`, via `passthrough:`), and the two dialects
passed on natively: Responses to an upstream with `apis: [chat, responses]`, and
Messages to a `kind: anthropic` upstream (the same fake). Targets and endpoints
are interleaved round by round so that drifting load hits them alike. Reported:
req/s, p50 latency, added p50 (router minus direct) and the router's CPU per
request, with the ratio of each endpoint's CPU per request to chat's.

Markdown to stdout; JSON to bench/results/overhead-endpoints.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    start,
    stop,
    summarize,
    tail,
    tree_cpu_seconds,
    wait_http,
)

RESULTS = ROOT / "bench" / "results" / "overhead-endpoints.json"
# Paths the fake upstream does not serve itself: measured through the router only.
DIALECTS = ("responses", "messages")

ENDPOINTS = {
    "chat": (
        "/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "Summarise routing."}]},
    ),
    "embeddings": ("/v1/embeddings", {"model": "fake-embed", "input": "Summarise routing."}),
    "completions": ("/v1/completions", {"model": "fake-instruct", "prompt": "Summarise routing."}),
    # Translated to chat completions for the (chat-only) fake and back: the cost of a
    # dialect is their p50 minus chat's, both through the router.
    "responses": ("/v1/responses", {"model": "auto", "input": "Summarise routing."}),
    "messages": (
        "/v1/messages",
        {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    # Passed on untranslated to an upstream that speaks the client's API: measured
    # direct and through the router, like chat.
    "responses-native": ("/v1/responses", {"model": "native", "input": "Summarise routing."}),
    "messages-native": (
        "/v1/messages",
        {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    "passthrough": (
        "/v1/moderations",
        {"model": "omni-moderation-latest", "input": "Summarise routing."},
    ),
}


def write_policy(path: Path, upstream_port: int, records: Path) -> None:
    path.write_text(
        "version: 1\n"
        "upstreams:\n"
        "  fake:\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    model: fake-model\n"
        "    timeouts: {connect: 2, first_byte: 30, read: 60, total: 120}\n"
        "    retries: 0\n"
        "  fake-responses:\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    model: fake-model\n"
        "    apis: [chat, responses]\n"
        "    retries: 0\n"
        "  fake-claude:\n"
        "    kind: anthropic\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    model: fake-claude\n"
        "    retries: 0\n"
        "models: [auto, native, claude]\n"
        "routes:\n"
        "  - {name: native, match: {model: native}, target: fake-responses}\n"
        "  - {name: claude, match: {model: claude}, target: fake-claude}\n"
        "default: {target: fake}\n"
        "embeddings: {models: {fake-embed: fake}}\n"
        "completions: {models: {fake-instruct: fake}}\n"
        "passthrough: fake\n"
        f"record: {{path: {records}, prompts: false}}\n"
    )


async def point(
    port: int,
    path: str,
    body: dict[str, Any],
    concurrency: int,
    duration: float,
    warmup: float,
    pid: int | None,
) -> Any:
    raw = build_request("127.0.0.1", port, path, json.dumps(body).encode())
    before = tree_cpu_seconds(pid) if pid else None
    result = await run_load(
        "127.0.0.1",
        port,
        raw,
        concurrency=concurrency,
        duration=duration,
        warmup=warmup,
        stream=False,
        max_requests=200_000,
    )
    after = tree_cpu_seconds(pid) if pid else None
    if before is not None and after is not None:
        result.cpu_s = after - before
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    duration = args.duration or (1.5 if args.quick else 3.0)
    warmup = 0.5
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    router_cpu = cpus[1] if len(cpus) >= 2 else None
    other_cpu = cpus[0] if len(cpus) >= 2 else None
    if other_cpu is not None:
        os.sched_setaffinity(0, {other_cpu})
    work = Path(tempfile.mkdtemp(prefix="router-endpoints-"))
    procs = []
    load_before = loadavg()
    try:
        upstream_port = free_port()
        fake = start(
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(upstream_port)],
            cpu=other_cpu,
            env=clean_env(),
            log_path=work / "fake.log",
        )
        procs.append(fake)
        if not wait_http(f"http://127.0.0.1:{upstream_port}/v1/models", fake, 15):
            log("the fake upstream did not start:\n" + tail(work / "fake.log"))
            return 1
        port = free_port()
        policy = work / "policy.yaml"
        write_policy(policy, upstream_port, work / "decisions.jsonl")
        router_bin = Path(sys.executable).with_name("router")
        cmd = [str(router_bin)] if router_bin.exists() else [sys.executable, "-m", "router.cli"]
        router = start(
            [*cmd, "serve", "--policy", str(policy), "--port", str(port), "--workers", "1"],
            cpu=router_cpu,
            env=clean_env(),
            log_path=work / "router.log",
        )
        procs.append(router)
        if not wait_http(f"http://127.0.0.1:{port}/healthz", router, 60):
            log("the router did not start:\n" + tail(work / "router.log"))
            return 1
        results: dict[str, dict[str, dict[int, list[Any]]]] = {}
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for r in range(rounds):
                for c in concurrencies:
                    for name, (path, body) in ENDPOINTS.items():
                        targets = [("direct", upstream_port, None), ("router", port, router.pid)]
                        for target, tport, pid in targets[name in DIALECTS :]:
                            log(f"round {r + 1} c={c} {name} {target}")
                            res = runner.run(point(tport, path, body, c, duration, warmup, pid))
                            results.setdefault(name, {}).setdefault(target, {}).setdefault(
                                c, []
                            ).append(res)
    finally:
        for proc in procs:
            stop(proc)
    summary = {
        name: {
            target: {c: summarize(runs) for c, runs in by_c.items()}
            for target, by_c in targets.items()
        }
        for name, targets in results.items()
    }
    report = {
        "ts": time.time(),
        "load_before": load_before,
        "load_after": loadavg(),
        "rounds": rounds,
        "duration_s": duration,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"load before/after: {load_before} / {loadavg()}\n")
    print(
        "| endpoint | c | direct req/s | router req/s | router / direct | added p50 "
        "| router CPU/req | CPU/req vs chat |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in concurrencies:
        chat_cpu = summary["chat"]["router"][c]["cpu_us_per_req"]
        for name in (n for n in ENDPOINTS if n not in DIALECTS):
            d, r = summary[name]["direct"][c], summary[name]["router"][c]
            cpu = r["cpu_us_per_req"]
            ratio = f"{cpu / chat_cpu:.2f}x" if cpu and chat_cpu else "-"
            print(
                f"| {name} | {c} | {d['rps']:,.0f} | {r['rps']:,.0f} | {r['rps'] / d['rps']:.2f} | "
                f"{r['p50_ms'] - d['p50_ms']:.2f} ms | {cpu or float('nan'):.0f} us | {ratio} |"
            )
        errors = sum(summary[n]["router"][c]["errors"] for n in ENDPOINTS)
        if errors:
            print(f"\nrouter errors at c={c}: {errors}")
    print("\n| dialect (in -> chat upstream) | c | p50 | chat p50 | added p50 | CPU/req vs chat |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in concurrencies:
        chat = summary["chat"]["router"][c]
        for name in ("responses", "messages"):
            r = summary[name]["router"][c]
            cpu = r["cpu_us_per_req"]
            ratio = (
                f"{cpu / chat['cpu_us_per_req']:.2f}x" if cpu and chat["cpu_us_per_req"] else "-"
            )
            print(
                f"| {name} | {c} | {r['p50_ms']:.3f} ms | {chat['p50_ms']:.3f} ms | "
                f"{r['p50_ms'] - chat['p50_ms']:+.3f} ms | {ratio} |"
            )
    print("\n| native (in -> same-API upstream) | c | added p50 | chat added p50 | CPU vs chat |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for c in concurrencies:
        chat_d, chat_r = summary["chat"]["direct"][c], summary["chat"]["router"][c]
        for name in ("responses-native", "messages-native"):
            d, r = summary[name]["direct"][c], summary[name]["router"][c]
            cpu, chat_cpu = r["cpu_us_per_req"], chat_r["cpu_us_per_req"]
            ratio = f"{cpu / chat_cpu:.2f}x" if cpu and chat_cpu else "-"
            print(
                f"| {name} | {c} | {r['p50_ms'] - d['p50_ms']:+.3f} ms | "
                f"{chat_r['p50_ms'] - chat_d['p50_ms']:+.3f} ms | {ratio} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
