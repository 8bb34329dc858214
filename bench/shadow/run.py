"""Shadow traffic's effect on the client's latency, shadow off vs on, in one run.

    .venv/bin/python bench/shadow/run.py [--rounds 6] [--duration 3]

Starts the fast fake upstream of bench/overhead twice (the live target and the
shadow target) and two `router serve` processes, one worker each, pinned to
the same CPU: "off" (no shadow) and "on" (every request shadowed, `percent:
100`, the worst case). The load generator sends 16 concurrent plain requests
to each in alternating rounds, so drifting background load hits both alike,
and reports the client's p50/p99 latency for each and the difference.
Writes bench/results/shadow.json.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "bench" / "overhead"))

from loadgen import LoadResult, _connect, build_request, loop_factory, run_load  # noqa: E402
from run import clean_env, free_port, loadavg, start, stop, wait_http  # noqa: E402

GOAL_ADDED_P50_MS = 0.2


def policy(live: int, shadow: int, percent: int, records: Path) -> str:
    return (
        "version: 1\n"
        "upstreams:\n"
        f"  live: {{base_url: 'http://127.0.0.1:{live}/v1', model: m, retries: 0}}\n"
        f"  spare: {{base_url: 'http://127.0.0.1:{shadow}/v1', model: m, retries: 0}}\n"
        "models: [auto]\n"
        "default:\n"
        "  target: live\n"
        f"  shadow: {{percent: {percent}, target: spare}}\n"
        f"record: {{path: '{records}'}}\n"
    )


async def paced(
    port: int, raw: bytes, concurrency: int, rate: float, duration: float
) -> list[float]:
    """Open loop: `rate` requests/s spread over `concurrency` connections, latencies in s."""
    conns = [await _connect("127.0.0.1", port) for _ in range(concurrency)]
    latencies: list[float] = []
    interval = concurrency / rate
    start = time.perf_counter() + 0.2

    async def worker(i: int) -> None:
        due = start + i * interval / concurrency
        while due < start + duration:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            began = time.perf_counter()
            await conns[i].request(raw)
            latencies.append(time.perf_counter() - began)
            due += interval

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=400.0, help="paced mode, requests/s")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu = cpus[0] if len(cpus) > 1 else None
    side_cpu = cpus[1] if len(cpus) > 1 else None
    shares = {"off": 0, "10%": 10, "100%": 100}
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = clean_env(PYTHONUNBUFFERED="1")
        ports = {"live": free_port(), "spare": free_port()}
        fake = str(ROOT / "bench/overhead/fake_upstream.py")
        for name, port in ports.items():
            cmd = [sys.executable, fake, "--port", str(port)]
            procs.append(start(cmd, cpu=side_cpu, env=env, log_path=work / f"{name}.log"))
        routers = {}
        for i, (label, percent) in enumerate(shares.items()):
            port = free_port()
            path = work / f"r{i}.yaml"
            path.write_text(policy(ports["live"], ports["spare"], percent, work / f"r{i}.jsonl"))
            cmd = [sys.executable, "-m", "router.cli", "serve", "--policy", str(path)]
            cmd += ["--port", str(port)]
            procs.append(start(cmd, cpu=proxy_cpu, env=env, log_path=work / f"r{i}.log"))
            routers[label] = port
        try:
            for port in list(ports.values()) + list(routers.values()):
                if not wait_http(f"http://127.0.0.1:{port}/healthz", None, 30):
                    print(f"port {port} did not come up", file=sys.stderr)
                    return 1
            message = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            body = json.dumps(message).encode()
            modes = ("paced", "saturated")
            lat = {(m, r): [] for m in modes for r in shares}  # type: dict[tuple[str, str], list[float]]
            rps = {(m, r): [] for m in modes for r in shares}  # type: dict[tuple[str, str], list[float]]
            if side_cpu is not None:
                os.sched_setaffinity(0, {side_cpu})
            for i in range(args.rounds):
                order = list(shares) if i % 2 == 0 else list(reversed(shares))
                for label in order:
                    raw = build_request("127.0.0.1", routers[label], "/v1/chat/completions", body)
                    result = _run(routers[label], raw, args)
                    lat["saturated", label].extend(result.latencies)
                    rps["saturated", label].append(len(result.latencies) / args.duration)
                    got = _paced(routers[label], raw, args)
                    lat["paced", label].extend(got)
                    rps["paced", label].append(len(got) / args.duration)
        finally:
            for proc in procs:
                stop(proc)
    rows = []
    for (mode, label), values in lat.items():
        base = pct(lat[mode, "off"], 0.5)
        rows.append(
            {
                "mode": mode,
                "shadow": label,
                "requests": len(values),
                "p50_ms": round(pct(values, 0.5) * 1000, 3),
                "p99_ms": round(pct(values, 0.99) * 1000, 3),
                "added_p50_ms": round((pct(values, 0.5) - base) * 1000, 3),
                "rps": round(statistics.median(rps[mode, label]), 1),
            }
        )
    report = {
        "concurrency": args.concurrency,
        "rate": args.rate,
        "rounds": args.rounds,
        "load": loadavg(),
        "rows": rows,
        "goal_added_p50_ms": GOAL_ADDED_P50_MS,
    }
    out = ROOT / "bench" / "results" / "shadow.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"shadow traffic: {args.concurrency} connections; paced = {args.rate:.0f} req/s offered,")
    print(f"saturated = closed loop; {args.rounds} alternating rounds; load {report['load']}")
    print("| mode | shadow | requests | p50 ms | added p50 ms | p99 ms | req/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['mode']} | {r['shadow']} | {r['requests']} | {r['p50_ms']} | "
            f"{r['added_p50_ms']:+.3f} | {r['p99_ms']} | {r['rps']} |"
        )
    print(f"goal: added p50 <= {GOAL_ADDED_P50_MS} ms")
    return 0


def _paced(port: int, raw: bytes, args: argparse.Namespace) -> list[float]:
    factory = loop_factory()
    loop = factory() if factory else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(paced(port, raw, args.concurrency, args.rate, args.duration))
    finally:
        loop.close()


def _run(port: int, raw: bytes, args: argparse.Namespace) -> LoadResult:
    factory = loop_factory()
    loop = factory() if factory else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            run_load(
                "127.0.0.1",
                port,
                raw,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=0.5,
                stream=False,
            )
        )
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
