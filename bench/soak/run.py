"""Soak and chaos run of `router serve` on loopback; writes bench/soak/results.json.

    .venv/bin/python bench/soak/run.py [--soak-s 60] [--warmup-s 10] [--out bench/soak/results.json]

Everything is local and bounded in time: a throwaway redis-server (cache and
budgets), the overhead bench's fake upstream (plain JSON and SSE), a slow SSE
upstream and a shadow upstream that never answers (both in this process), and
`router serve` as a subprocess with the shipped classifier on.

Phases, each a separate figure in the JSON:
1. soak: closed-loop load (plain and stream, repeated and new prompts, scoring on,
   10% shadow, Redis cache and budgets, prompts recorded) for `--soak-s` after a
   warm-up; errors, throughput, latency, and the router's RSS growth after warm-up.
2. redis_pause: 50 req/s of cacheable requests; Redis frozen (SIGSTOP) for 5 s:
   failed requests, and how long after Redis resumed the first cache hit came.
3. redis_restart: the same load; Redis killed (SIGKILL) and restarted after 3 s.
4. sigterm: a router whose streams take ~2 s and whose shadow never answers gets
   SIGTERM with 20 streams in flight: streams completed, records written, exit time.
5. sigkill: SIGKILL under load, then a restart on the same record file: records
   lost (those still in memory), torn lines, time until it serves again.
6. fd_pressure: 1,100 idle sockets against max_connections 1000 and a 2 s header
   timeout: how many were refused at once, and when normal requests work again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
WORDS = [
    "prove", "integral", "derivative", "poem", "translate", "summarize", "python", "bug", "sql",
    "join", "recipe", "history", "war", "quantum", "physics", "explain", "compare", "list",
    "three", "reasons", "why", "how", "what", "theorem", "matrix", "eigenvalue", "story", "dragon",
    "market", "economy", "inflation", "capital", "city",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- local servers ------------------------------------------------------------------


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length) if length else b""


async def slow_stream_upstream(port: int, chunks: int = 20, gap_s: float = 0.1) -> asyncio.Server:
    """SSE answers that take chunks * gap_s: streams that are in flight at SIGTERM."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = await _read_request(reader)
                request = json.loads(body or b"{}")
                if not request.get("stream"):
                    answer = json.dumps({
                        "id": "c", "object": "chat.completion", "created": 1, "model": "slow",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "slow answer"}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                    }).encode()  # fmt: skip
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    writer.write(head + b"content-length: %d\r\n\r\n%s" % (len(answer), answer))
                    await writer.drain()
                    continue
                base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "slow"}
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
                events = []
                for i in range(chunks + 1):
                    delta, end = ({"content": f"w{i} "}, None) if i < chunks else ({}, "stop")
                    choice = {"index": 0, "delta": delta, "finish_reason": end}
                    events.append({**base, "choices": [choice]})
                if (request.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 5, "completion_tokens": chunks}
                    events.append({**base, "choices": [], "usage": usage})
                for event in events:
                    data = b"data: " + json.dumps(event).encode() + b"\n\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                    await asyncio.sleep(gap_s)
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def stall_upstream(port: int) -> asyncio.Server:
    """Reads requests and never answers: a shadow target that hangs."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def start_fake_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [PY, str(ROOT / "bench/overhead/fake_upstream.py"), "--port", str(port), "--chunks", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"ready")
    return proc


def start_router(policy: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [PY, "-m", "router.cli", "serve", "--policy", str(policy), "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"router serve exited: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("router did not become ready")


# -- load ---------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.cache: dict[str, int] = {}
        self.hits_at: list[float] = []

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies) or [0.0]
        return {
            "requests": self.ok + sum(self.errors.values()),
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
            "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0] * 1000, 2),
            "cache": self.cache,
        }


def body_for(rng: random.Random, stream: bool, cacheable: bool) -> dict[str, Any]:
    if cacheable:
        text = f"Explain topic number {rng.randrange(40)} in one line."
    else:
        text = " ".join(rng.choices(WORDS, k=rng.randrange(4, 60))) + f" {rng.random():.6f}"
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    if cacheable:
        body["temperature"] = 0
    if stream:
        body["stream"] = True
    return body


async def one_request(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], tally: Tally
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as reply:
            data = await reply.read()
            cache = reply.headers.get("x-router-cache", "-")
            tally.cache[cache] = tally.cache.get(cache, 0) + 1
            if reply.status != 200:
                tally.error(f"http_{reply.status}")
                return
            if body.get("stream"):
                if b"data: [DONE]" not in data or b'"error"' in data:
                    tally.error("stream_incomplete")
                    return
            elif not json.loads(data).get("choices"):
                tally.error("no_choices")
                return
            if cache == "hit":
                tally.hits_at.append(time.monotonic())
    except Exception as exc:
        tally.error(type(exc).__name__)
        return
    tally.ok += 1
    tally.latencies.append(time.perf_counter() - started)


async def closed_loop(
    url: str,
    seconds: float,
    concurrency: int,
    tally: Tally,
    seed: int,
    stop: asyncio.Event | None = None,
) -> None:
    """`concurrency` clients back to back for `seconds` (or until `stop` is set)."""
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.monotonic() < deadline and not (stop and stop.is_set()):
                body = body_for(rng, stream=rng.random() < 0.5, cacheable=rng.random() < 0.3)
                await one_request(session, url, body, tally)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def paced(url: str, seconds: float, rate: float, tally: Tally, seed: int) -> None:
    """Open-loop load at `rate` req/s of cacheable requests (a pool of 40 prompts)."""
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = []
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            body = body_for(rng, stream=rng.random() < 0.3, cacheable=True)
            tasks.append(asyncio.ensure_future(one_request(session, url, body, tally)))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)


# -- phases -------------------------------------------------------------------------


def policy_text(
    work: Path,
    up: int,
    redis_port: int,
    *,
    cloud_port: int | None = None,
    routes: bool = True,
    default_tail: str = "  fallbacks: [cloud]\n",
    server: str = "",
) -> str:
    ns = f"soak-{os.getpid()}-{random.randrange(1 << 30)}"
    score_route = (
        "\n  - name: hard\n    match: {score: {gte: 0.19}}\n    target: cloud\n"
        "    fallbacks: [local]\n"
        if routes
        else " []\n"
    )
    return f"""
version: 1
server: {{{server}}}
upstreams:
  local:
    base_url: http://127.0.0.1:{up}/v1
    model: fake-local
    price: {{input: 0.1, output: 0.2}}
    timeouts: {{connect: 1, first_byte: 10, read: 10, total: 60}}
  cloud:
    base_url: http://127.0.0.1:{cloud_port or up}/v1
    model: fake-cloud
    price: {{input: 2.0, output: 8.0}}
    timeouts: {{connect: 1, first_byte: 10, read: 10, total: 60}}
models: [auto]
routes:{score_route}default:
  target: local
{default_tail}
scoring: {{enabled: true}}
cache: {{enabled: true, redis_url: "redis://127.0.0.1:{redis_port}/0", namespace: {ns}}}
budgets:
  redis_url: "redis://127.0.0.1:{redis_port}/0"
  namespace: {ns}
  default: {{daily_usd: 1000000}}
  on_exceeded: {{action: reject}}
record: {{path: "{work}/records.jsonl", prompts: true}}
"""


def phase_soak(work: Path, up: int, redis: Redis, soak_s: float, warmup_s: float) -> dict[str, Any]:
    policy = work / "soak.yaml"
    tail = "  fallbacks: [cloud]\n  shadow: {percent: 10, target: cloud}\n"
    policy.write_text(policy_text(work, up, redis.port, default_tail=tail))
    port = free_port()
    router = start_router(policy, port, work / "router.log")
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(closed_loop(url, warmup_s, 8, Tally(), seed=1))
        rss_start = rss_kb(router.pid)
        samples: list[int] = []
        tally = Tally()

        async def run() -> None:
            load = asyncio.ensure_future(closed_loop(url, soak_s, 8, tally, seed=2))
            while not load.done():
                samples.append(rss_kb(router.pid))
                await asyncio.sleep(1.0)
            await load

        started = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - started
        rss_end = rss_kb(router.pid)
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(60)
    records = (work / "records.jsonl").read_bytes().count(b"\n")
    summary = tally.summary()
    return {
        **summary,
        "seconds": round(elapsed, 1),
        "req_per_s": round(summary["requests"] / elapsed, 1),
        "rss_mb_after_warmup": round(rss_start / 1024, 1),
        "rss_mb_end": round(rss_end / 1024, 1),
        "rss_mb_max": round(max(samples, default=rss_end) / 1024, 1),
        "rss_growth_pct": round((rss_end - rss_start) / rss_start * 100, 2),
        "records_written": records,
        "router_exit_code": router.returncode,
    }


def phase_redis(work: Path, up: int, redis: Redis, kill: bool) -> dict[str, Any]:
    policy = work / f"redis-{'kill' if kill else 'pause'}.yaml"
    policy.write_text(policy_text(work, up, redis.port))
    port = free_port()
    router = start_router(policy, port, work / "router.log")
    url = f"http://127.0.0.1:{port}"
    outage_s = 3.0 if kill else 5.0
    tally = Tally()
    marks: dict[str, float] = {}

    async def run() -> None:
        load = asyncio.ensure_future(paced(url, 6 + outage_s + 8, 50, tally, seed=3))
        await asyncio.sleep(6)
        marks["outage"] = time.monotonic()
        if kill:
            redis.kill()
            await asyncio.sleep(outage_s)
            redis.start()
        else:
            redis.signal(signal.SIGSTOP)
            await asyncio.sleep(outage_s)
            redis.signal(signal.SIGCONT)
        marks["back"] = time.monotonic()
        await load

    try:
        asyncio.run(run())
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(60)
    later = [t for t in tally.hits_at if t > marks["back"]]
    return {
        **tally.summary(),
        "load_req_per_s": 50,
        "outage": "SIGKILL, restarted" if kill else "SIGSTOP / SIGCONT",
        "outage_s": outage_s,
        "first_cache_hit_after_redis_back_s": round(later[0] - marks["back"], 2) if later else None,
    }


def phase_sigterm(work: Path, redis: Redis) -> dict[str, Any]:
    slow_port, stall_port, port = free_port(), free_port(), free_port()
    policy = work / "sigterm.yaml"
    policy.write_text(
        policy_text(
            work / "sigterm",
            slow_port,
            redis.port,
            cloud_port=stall_port,
            routes=False,
            default_tail="  shadow: {percent: 100, target: cloud}\n",
            server="shutdown_shadow_wait_s: 2",
        )
    )
    (work / "sigterm").mkdir(exist_ok=True)
    result: dict[str, Any] = {}

    async def run() -> None:
        slow = await slow_stream_upstream(slow_port)
        stall = await stall_upstream(stall_port)
        router = await asyncio.to_thread(start_router, policy, port, work / "router.log")
        url = f"http://127.0.0.1:{port}"
        tally = Tally()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            rng = random.Random(4)
            # Finished requests whose shadow still waits, then streams in flight.
            for _ in range(10):
                await one_request(session, url, body_for(rng, stream=False, cacheable=False), tally)
            streams = [
                asyncio.ensure_future(
                    one_request(session, url, body_for(rng, stream=True, cacheable=False), tally)
                )
                for _ in range(20)
            ]
            await asyncio.sleep(0.5)
            started = time.monotonic()
            router.send_signal(signal.SIGTERM)
            await asyncio.gather(*streams)
            code = await asyncio.to_thread(router.wait, 60)
            result["exit_s"] = round(time.monotonic() - started, 2)
            result["exit_code"] = code
        result.update(tally.summary())
        slow.close()
        stall.close()

    asyncio.run(run())
    lines = [json.loads(x) for x in (work / "sigterm/records.jsonl").read_text().split("\n") if x]
    result["records_written"] = len(lines)
    result["records_expected"] = 30
    result["records_with_shadow_error_shutdown"] = sum(
        1 for r in lines if (r.get("shadow_result") or {}).get("error") == "shutdown"
    )
    return result


def phase_fd_pressure(work: Path, up: int, redis: Redis) -> dict[str, Any]:
    policy = work / "fd.yaml"
    policy.write_text(policy_text(work, up, redis.port, server="header_timeout_s: 2"))
    port = free_port()
    router = start_router(policy, port, work / "router.log")
    url = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"idle_sockets": 1100, "max_connections": 1000, "header_timeout_s": 2}
    try:
        socks = []
        for _ in range(1100):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        time.sleep(0.5)
        refused = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(100).startswith(b"HTTP/1.1 503"):
                    refused += 1
            except BlockingIOError:
                pass
        result["refused_at_once_503"] = refused
        started = time.monotonic()
        tally = Tally()

        async def until_ok() -> float:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                rng = random.Random(5)
                while time.monotonic() - started < 30:
                    before = tally.ok
                    await one_request(session, url, body_for(rng, False, False), tally)
                    if tally.ok > before:
                        return time.monotonic() - started
                    await asyncio.sleep(0.1)
            return -1.0

        result["normal_request_ok_after_s"] = round(asyncio.run(until_ok()), 2)
        result["failed_before_ok"] = tally.summary()["errors"]
        for s in socks:
            s.close()
        result["router_alive"] = router.poll() is None
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(60)
    return result


def phase_sigkill(work: Path, up: int, redis: Redis) -> dict[str, Any]:
    """SIGKILL under load: what a crash costs (records in memory) and how fast a
    restarted router serves again from the same record file."""
    kill_dir = work / "sigkill"
    kill_dir.mkdir(exist_ok=True)
    policy = kill_dir / "policy.yaml"
    policy.write_text(policy_text(kill_dir, up, redis.port))
    port = free_port()
    router = start_router(policy, port, work / "router.log")
    url = f"http://127.0.0.1:{port}"
    tally = Tally()

    async def run() -> None:
        stop = asyncio.Event()
        load = asyncio.ensure_future(closed_loop(url, 30, 8, tally, seed=6, stop=stop))
        await asyncio.sleep(3)
        stop.set()  # each client ends after the request it has in flight
        router.send_signal(signal.SIGKILL)
        await load

    asyncio.run(run())
    router.wait(10)
    raw = (kill_dir / "records.jsonl").read_bytes()
    lines = raw.split(b"\n")
    torn = 0 if raw.endswith(b"\n") or not raw else 1
    parsed = sum(1 for line in lines[: len(lines) - 1] if json.loads(line))
    started = time.monotonic()
    router = start_router(policy, port, work / "router.log")
    ready_s = time.monotonic() - started
    after = Tally()
    asyncio.run(closed_loop(url, 2, 4, after, seed=7))
    router.send_signal(signal.SIGTERM)
    router.wait(60)
    return {
        "answered_before_kill": tally.ok,
        "in_flight_cut_by_kill": sum(tally.errors.values()),
        "records_on_disk": parsed,
        "records_lost": max(0, tally.ok - parsed),
        "torn_last_line": torn,
        "restart_ready_s": round(ready_s, 2),
        "after_restart": after.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--soak-s", type=float, default=60)
    parser.add_argument("--warmup-s", type=float, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench/soak/results.json"))
    parser.add_argument(
        "--phases", default="soak,redis_pause,redis_restart,sigterm,sigkill,fd_pressure"
    )
    parser.add_argument("--merge", action="store_true", help="keep other phases in --out")
    args = parser.parse_args()
    phases = args.phases.split(",")
    work = Path(tempfile.mkdtemp(prefix="hr-soak-"))
    redis = Redis()
    redis.start()
    up_port = free_port()
    upstream = start_fake_upstream(up_port)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python bench/soak/run.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, shared; router: one worker, classifier on CPU",
    }
    try:
        if "soak" in phases:
            results["soak"] = phase_soak(work, up_port, redis, args.soak_s, args.warmup_s)
            print("soak", results["soak"], flush=True)
        if "redis_pause" in phases:
            results["redis_pause"] = phase_redis(work, up_port, redis, kill=False)
            print("redis_pause", results["redis_pause"], flush=True)
        if "redis_restart" in phases:
            results["redis_restart"] = phase_redis(work, up_port, redis, kill=True)
            print("redis_restart", results["redis_restart"], flush=True)
        if "sigterm" in phases:
            results["sigterm"] = phase_sigterm(work, redis)
            print("sigterm", results["sigterm"], flush=True)
        if "sigkill" in phases:
            results["sigkill"] = phase_sigkill(work, up_port, redis)
            print("sigkill", results["sigkill"], flush=True)
        if "fd_pressure" in phases:
            results["fd_pressure"] = phase_fd_pressure(work, up_port, redis)
            print("fd_pressure", results["fd_pressure"], flush=True)
    finally:
        upstream.kill()
        redis.kill()
    out = Path(args.out)
    if args.merge and out.exists():  # re-running some phases keeps the others' figures
        old = json.loads(out.read_text())
        command = f"{old.get('command', '')}; {results['command']}"
        results = {**old, **results, "command": command}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} (work files in {work})")


if __name__ == "__main__":
    main()
