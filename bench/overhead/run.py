"""Proxy overhead benchmark: the router (each transport) and LiteLLM against direct.

    .venv/bin/python bench/overhead/run.py            # full run, < 10 minutes
    .venv/bin/python bench/overhead/run.py --quick    # sanity check, < 2 minutes

One run starts, on loopback:
  * a fast fake OpenAI-compatible upstream (bench/overhead/fake_upstream.py);
  * `router serve` once per transport: `router` (the default, ROUTER_TRANSPORT=wire),
    `router-aiohttp` and `router-httpx`; one worker each, a rule-only policy with
    the fake as its upstream, decision records ON, the /ui status page OFF;
  * with `--targets ...,router-ui`: the router again with the status page ON (its
    sampler reading the counters every 5 s), beside `router`;
  * with `--targets ...,router-otel`: the router again with OpenTelemetry tracing
    ON (ROUTER_TRACING=1, OTLP/HTTP to a local no-op collector,
    bench/overhead/noop_collector.py), beside `router`;
  * with `--targets ...,minimal`: the floor, bench/overhead/minimal_proxy.py;
  * a LiteLLM proxy (its own virtualenv, bench/.venv-litellm, installed on first
    use) with the fake as an openai-compatible `api_base`, one worker;
and sends the same requests DIRECT to the fake and THROUGH each proxy, plain and
streaming (20 SSE chunks), at each concurrency, interleaving the targets so that
drifting background load hits them alike. "Added" latency is proxy minus direct
at the same concurrency.

Pinning (when there are >= 2 CPUs): every proxy runs on its own CPU; the load
generator and the fake upstream share the other. The `direct` row shows how fast
that side goes with no proxy in between, i.e. the ceiling it puts on a proxy.

Markdown goes to stdout; JSON to bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from loadgen import LoadResult, build_request, loop_factory, run_load  # noqa: E402

LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
RESULTS = ROOT / "bench" / "results" / "overhead.json"

GOALS = {
    "added_p50_c1_ms": 0.5,
    "plain_rps_vs_litellm": 25.0,
    "stream_rps": 1500.0,
}
# What we measured for LiteLLM before, used only when LiteLLM is not in the run.
LITELLM_REFERENCE_RPS = 100.0
# The router under each transport, in the order the goal table shows them.
ROUTERS = ("router", "router-aiohttp", "router-httpx")

# Every target gets the same key; LiteLLM requires a master key, the router ignores it.
API_KEY = "sk-bench-" + secrets.token_hex(16)
PROMPT = "Summarise the benefits of routing requests between a small and a large model."


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of `root` and all its descendants, from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def busy_processes(limit: int = 5) -> list[str]:
    """The busiest other processes (what else competes for the CPUs)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,ni,pcpu,comm", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    own = {str(os.getpid())}
    rows = [" ".join(line.split()) for line in out[1:]]
    return [r for r in rows if r.split(" ", 1)[0] not in own and not r.endswith(" ps")][:limit]


# -- processes ------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    kind: str  # direct | router | litellm
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    note: str = ""
    records: Path | None = None
    results: dict[str, list[LoadResult]] = field(default_factory=dict)


def _pin(cpu: int | None) -> Any:
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def start(
    cmd: list[str], *, cpu: int | None, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    out = log_path.open("wb")
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=_pin(cpu),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | None, timeout: float, log_path: Path | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def tail(path: Path | None, n: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("ROUTER_")
    }
    env.update(extra)
    return env


def write_policy(path: Path, upstream_port: int, records: Path, ui: bool = False) -> None:
    path.write_text(
        "# bench/overhead: one rule-only route to the fake upstream, records on.\n"
        "version: 1\n"
        "upstreams:\n"
        "  fake:\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    model: fake-model\n"
        "    timeouts: {connect: 2, first_byte: 30, read: 60, total: 120}\n"
        "    retries: 0\n"
        "models: [auto]\n"
        "routes:\n"
        "  - name: pinned-fake\n"
        "    match: {headers: {x-route: fake}}\n"
        "    target: fake\n"
        "default:\n"
        "  target: fake\n"
        "record:\n"
        f"  path: {records}\n"
        "  prompts: false\n"
        f"ui: {{enabled: {str(ui).lower()}}}\n"
    )


def write_litellm_config(path: Path, upstream_port: int) -> None:
    path.write_text(
        "model_list:\n"
        "  - model_name: auto\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-fake\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
    )


def ensure_litellm(allow_install: bool) -> tuple[Path | None, str]:
    """LiteLLM's own virtualenv, never a project dependency. Returns (binary, note)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary, ""
    if not allow_install:
        return None, "LiteLLM not installed and --no-install given"
    log(f"installing LiteLLM into {LITELLM_VENV} (first run only; takes a few minutes)")
    python = shutil.which("python3") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"LiteLLM install failed: {exc}"
    if not binary.exists():
        return None, "LiteLLM install finished but no `litellm` binary"
    return binary, ""


# -- measurement ----------------------------------------------------------------------


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(runs: list[LoadResult]) -> dict[str, Any]:
    lat = [x for r in runs for x in r.latencies]
    fe = [x for r in runs for x in r.first_event]
    duration = sum(r.duration for r in runs)
    ok = len(lat)
    cpu_runs = [r for r in runs if r.cpu_s is not None and r.completed]
    cpu_us = (
        1e6 * sum(r.cpu_s or 0.0 for r in cpu_runs) / sum(r.completed for r in cpu_runs)
        if cpu_runs
        else None
    )
    return {
        "requests": ok,
        "errors": sum(r.errors for r in runs),
        "error_samples": [s for r in runs for s in r.error_samples][:5],
        "rps": ok / duration if duration else 0.0,
        "p50_ms": pct(lat, 0.50) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
        "ttfe_p50_ms": pct(fe, 0.50) * 1000 if fe else None,
        "ttfe_p99_ms": pct(fe, 0.99) * 1000 if fe else None,
        # CPU the server process (tree) spent per answered request: robust to the
        # machine's other load, unlike req/s. 1e6 / cpu_us = req/s on one full core.
        "cpu_us_per_req": cpu_us,
        "one_core_rps": 1e6 / cpu_us if cpu_us else None,
    }


async def smoke(target: Target, chunks: int) -> str | None:
    """One plain and one streamed request; returns a problem or None."""
    for stream in (False, True):
        raw = build_request(
            "127.0.0.1", target.port, "/v1/chat/completions", request_body(stream), API_KEY
        )
        result = await run_load(
            "127.0.0.1",
            target.port,
            raw,
            concurrency=1,
            duration=30.0,
            warmup=0.0,
            stream=stream,
            expect_events=chunks + 1 if stream else 0,
            max_requests=3,
        )
        if result.ok < 3:
            sample = "; ".join(result.error_samples) or "no answer"
            return f"{'stream' if stream else 'plain'}: {sample}"
    return None


async def measure(
    targets: list[Target],
    concurrencies: list[int],
    modes: list[str],
    rounds: int,
    warmup: float,
    duration: float,
    chunks: int,
    max_requests: int,
) -> None:
    total = rounds * len(modes) * len(concurrencies) * len(targets)
    done = 0
    for rnd in range(rounds):
        for mode in modes:
            stream = mode == "stream"
            body = request_body(stream)
            for c in concurrencies:
                # Alternate the order each round so no target always goes first.
                order = targets if rnd % 2 == 0 else list(reversed(targets))
                for target in order:
                    raw = build_request(
                        "127.0.0.1", target.port, "/v1/chat/completions", body, API_KEY
                    )
                    cpu0 = tree_cpu_seconds(target.proc.pid) if target.proc else None
                    result = await run_load(
                        "127.0.0.1",
                        target.port,
                        raw,
                        concurrency=c,
                        duration=duration,
                        warmup=warmup,
                        stream=stream,
                        expect_events=chunks + 1 if stream else 0,
                        max_requests=max_requests,
                        min_requests=max(50, 2 * c),
                        max_duration=4 * duration,
                    )
                    cpu1 = tree_cpu_seconds(target.proc.pid) if target.proc else None
                    if cpu0 is not None and cpu1 is not None:
                        result.cpu_s = cpu1 - cpu0
                    target.results.setdefault(f"{mode}/c{c}", []).append(result)
                    done += 1
                    log(
                        f"[{done}/{total}] round {rnd + 1} {mode:6} c={c:<3} {target.name:15} "
                        f"{result.ok / result.duration:9.0f} req/s  "
                        f"p50 {pct(result.latencies, 0.5) * 1000:7.3f} ms  "
                        f"errors {result.errors}"
                    )


# -- report ---------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    return f"{x:.{digits}f}"


def _ratio_line(label: str, x: dict[str, Any] | None, base: dict[str, Any] | None) -> str | None:
    """One target against another from the same run, as ratios."""
    if not x or not base or not base["plain_max_rps"]:
        return None
    text = f"\n{label}: max req/s = {x['plain_max_rps'] / base['plain_max_rps']:.3f}x plain"
    if base["stream_max_rps"] and x["stream_max_rps"]:
        text += f", {x['stream_max_rps'] / base['stream_max_rps']:.3f}x stream"
    if base["plain_one_core_rps"] and x["plain_one_core_rps"]:
        ratio = x["plain_one_core_rps"] / base["plain_one_core_rps"]
        text += f"; one-core req/s = {ratio:.3f}x plain"
    if base.get("stream_one_core_rps") and x.get("stream_one_core_rps"):
        ratio = x["stream_one_core_rps"] / base["stream_one_core_rps"]
        text += f", {ratio:.3f}x stream"
    if base["added_p50_c1"] is not None and x["added_p50_c1"] is not None:
        text += f"; added p50 at c=1: {x['added_p50_c1']:.3f} vs {base['added_p50_c1']:.3f} ms"
    return text + "."


def build_report(
    targets: list[Target],
    concurrencies: list[int],
    modes: list[str],
    meta: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for t in targets:
        stats[t.name] = {key: summarize(runs) for key, runs in t.results.items()}
    direct = stats.get("direct", {})

    lines: list[str] = []
    lines.append("### Latency and throughput (closed loop, keep-alive, loopback)\n")
    lines.append(
        "| mode | c | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| TTFE p50 ms | added TTFE p50 ms | server CPU us/req | errors |"
    )
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        for c in concurrencies:
            key = f"{mode}/c{c}"
            d = direct.get(key)
            for t in targets:
                s = stats[t.name].get(key)
                if s is None:
                    continue
                s["added_p50_ms"] = s["p50_ms"] - d["p50_ms"] if d and t.kind != "direct" else None
                s["added_p99_ms"] = s["p99_ms"] - d["p99_ms"] if d and t.kind != "direct" else None
                s["added_ttfe_p50_ms"] = (
                    s["ttfe_p50_ms"] - d["ttfe_p50_ms"]
                    if d and t.kind != "direct" and s["ttfe_p50_ms"] is not None
                    else None
                )
                lines.append(
                    f"| {mode} | {c} | {t.name} | {s['rps']:.0f} | {fmt(s['p50_ms'], 3)} "
                    f"| {fmt(s['p99_ms'], 3)} | {fmt(s['added_p50_ms'], 3)} "
                    f"| {fmt(s['added_p99_ms'], 3)} | {fmt(s['ttfe_p50_ms'], 3)} "
                    f"| {fmt(s['added_ttfe_p50_ms'], 3)} | {fmt(s['cpu_us_per_req'], 0)} "
                    f"| {s['errors']} |"
                )

    def max_rps(name: str, mode: str) -> float:
        return max(
            (s["rps"] for k, s in stats.get(name, {}).items() if k.startswith(mode + "/")),
            default=0.0,
        )

    def one_core(name: str, mode: str) -> float | None:
        values = [
            s["one_core_rps"]
            for k, s in stats.get(name, {}).items()
            if k.startswith(mode + "/") and s["one_core_rps"]
        ]
        return max(values) if values else None

    lines.append("\n### Max req/s (best concurrency) and goals\n")
    lines.append(
        "req/s is measured; *one-core req/s* = 1e6 / (server CPU us per request), i.e. "
        "what one full core would serve, which the machine's other load does not skew.\n"
    )
    lines.append(
        "| target | plain max req/s | plain one-core req/s | stream max req/s "
        "| stream one-core req/s | added p50 @c=1 plain ms |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|")
    summary: dict[str, Any] = {}
    for t in targets:
        plain = max_rps(t.name, "plain")
        streamed = max_rps(t.name, "stream")
        c1 = stats[t.name].get("plain/c1", {}).get("added_p50_ms")
        plain_core, stream_core = one_core(t.name, "plain"), one_core(t.name, "stream")
        summary[t.name] = {
            "plain_max_rps": plain,
            "stream_max_rps": streamed,
            "plain_one_core_rps": plain_core,
            "stream_one_core_rps": stream_core,
            "added_p50_c1": c1,
        }
        lines.append(
            f"| {t.name} | {plain:.0f} | {fmt(plain_core, 0)} | {streamed:.0f} "
            f"| {fmt(stream_core, 0)} | {fmt(c1, 3)} |"
        )

    litellm = next((t for t in targets if t.kind == "litellm"), None)
    lite = summary.get(litellm.name) if litellm else None
    if lite and lite["plain_max_rps"] > 0:
        base_rps, base_note = lite["plain_max_rps"], "LiteLLM measured in this run"
        base_core = lite["plain_one_core_rps"]
    else:
        base_rps, base_note = LITELLM_REFERENCE_RPS, "LiteLLM not in this run: earlier reference"
        base_core = None

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    goals: dict[str, Any] = {}
    for name in ROUTERS:
        s = summary.get(name)
        if s is None:
            continue
        c1 = s["added_p50_c1"]
        ratio = s["plain_max_rps"] / base_rps if base_rps else None
        ratio_core = (
            s["plain_one_core_rps"] / base_core if base_core and s["plain_one_core_rps"] else None
        )
        goals[name] = {
            "added_p50_c1_ms": c1,
            "added_p50_c1_ok": c1 is not None and c1 <= GOALS["added_p50_c1_ms"],
            "plain_rps_vs_litellm": ratio,
            "plain_rps_vs_litellm_ok": ratio is not None and ratio >= GOALS["plain_rps_vs_litellm"],
            "plain_one_core_vs_litellm": ratio_core,
            "stream_rps": s["stream_max_rps"],
            "stream_rps_ok": s["stream_max_rps"] >= GOALS["stream_rps"],
            "stream_one_core_rps": s["stream_one_core_rps"],
        }

    def render_latency(g: dict[str, Any]) -> str:
        value = g["added_p50_c1_ms"]
        return "-" if value is None else f"{value:.3f} ms {verdict(g['added_p50_c1_ok'])}"

    def render_ratio(g: dict[str, Any]) -> str:
        if g["plain_rps_vs_litellm"] is None:
            return "-"
        out = f"{g['plain_rps_vs_litellm']:.1f}x {verdict(g['plain_rps_vs_litellm_ok'])}"
        if g["plain_one_core_vs_litellm"] is not None:
            out += f" (one-core {g['plain_one_core_vs_litellm']:.1f}x)"
        return out

    def render_stream(g: dict[str, Any]) -> str:
        out = f"{g['stream_rps']:.0f} {verdict(g['stream_rps_ok'])}"
        if g["stream_one_core_rps"]:
            out += f" (one-core {g['stream_one_core_rps']:.0f})"
        return out

    lines.append("")
    shown = [n for n in ROUTERS if n in goals]
    lines.append("| goal | target | " + " | ".join(shown) + " |")
    lines.append("|---|---|" + "---|" * len(shown))
    for label, goal, render in (
        ("added p50 latency, plain, c=1", f"<= {GOALS['added_p50_c1_ms']} ms", render_latency),
        (
            "max plain req/s vs LiteLLM",
            f">= {GOALS['plain_rps_vs_litellm']:.0f}x ({base_rps:.0f} req/s, {base_note})",
            render_ratio,
        ),
        ("max stream req/s (20 chunks)", f">= {GOALS['stream_rps']:.0f}", render_stream),
    ):
        cells = [render(goals[n]) for n in shown]
        lines.append(f"| {label} | {goal} | {' | '.join(cells)} |")

    a, h = summary.get("router"), summary.get("router-aiohttp")
    if a and h and h["plain_max_rps"] and h["stream_max_rps"]:
        text = (
            f"\nTransport: wire / aiohttp max req/s = "
            f"{a['plain_max_rps'] / h['plain_max_rps']:.2f}x plain, "
            f"{a['stream_max_rps'] / h['stream_max_rps']:.2f}x stream"
        )
        if all(x[k] for x in (a, h) for k in ("plain_one_core_rps", "stream_one_core_rps")):
            text += (
                f"; one-core req/s = {a['plain_one_core_rps'] / h['plain_one_core_rps']:.2f}x "
                f"plain, {a['stream_one_core_rps'] / h['stream_one_core_rps']:.2f}x stream"
            )
        lines.append(text + ".")

    floor = summary.get("minimal")
    for other, base, label in (
        ("router-ui", a, "Status page on / off (router-ui / router)"),
        ("router-otel", a, "Tracing on / off (router-otel / router)"),
        ("router", floor, "Router / the floor (router / minimal)"),
        ("router-aiohttp", floor, "Router on aiohttp / the floor (router-aiohttp / minimal)"),
    ):
        line = _ratio_line(label, summary.get(other), base)
        if line:
            lines.append(line)

    lines.append("\n### Conditions\n")
    for key, value in meta["conditions"].items():
        lines.append(f"- {key}: {value}")
    for t in targets:
        if t.note:
            lines.append(f"- {t.name}: {t.note}")

    data = {
        "meta": meta,
        "goals": GOALS,
        "litellm_baseline_rps": {"value": base_rps, "source": base_note},
        "stats": stats,
        "summary": summary,
        "goal_check": goals,
    }
    return "\n".join(lines), data


# -- main -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sanity check, < 2 minutes")
    parser.add_argument("--concurrency", default="1,16,64", help="comma list (default 1,16,64)")
    parser.add_argument("--duration", type=float, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, help="seconds unrecorded before each point")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, pooled")
    parser.add_argument("--chunks", type=int, default=20, help="SSE content chunks per stream")
    parser.add_argument("--modes", default="plain,stream")
    parser.add_argument(
        "--targets",
        default="direct,router,router-aiohttp,minimal,litellm",
        help="subset of direct,router,router-aiohttp,router-httpx,router-ui,router-otel,"
        "minimal,litellm",
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--no-install", action="store_true", help="never install LiteLLM")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir of logs")
    args = parser.parse_args()

    rounds = args.rounds or (1 if args.quick else 2)
    duration = args.duration or (1.5 if args.quick else 4.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    concurrencies = [int(x) for x in args.concurrency.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    wanted = [t for t in args.targets.split(",") if t]
    if args.no_litellm and "litellm" in wanted:
        wanted.remove("litellm")
    max_requests = 300_000

    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    if pin:
        client_cpu: int | None = cpus[0]
        proxy_cpu: int | None = cpus[1]
        upstream_cpu: int | None = cpus[2] if len(cpus) >= 3 else cpus[0]
        pinning = (
            f"proxy on CPU {proxy_cpu}; load generator on CPU {client_cpu}; "
            f"fake upstream on CPU {upstream_cpu}"
        )
    else:
        client_cpu = proxy_cpu = upstream_cpu = None
        pinning = f"not pinned ({len(cpus)} CPU(s) available)"

    work = Path(tempfile.mkdtemp(prefix="router-overhead-"))
    procs: list[subprocess.Popen[bytes]] = []
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    load_before = loadavg()
    busy_before = busy_processes()
    started_at = time.time()
    try:
        upstream_port = free_port()
        log_path = work / "fake.log"
        fake = start(
            [
                sys.executable,
                str(HERE / "fake_upstream.py"),
                "--port",
                str(upstream_port),
                "--chunks",
                str(args.chunks),
            ],
            cpu=upstream_cpu,
            env=clean_env(),
            log_path=log_path,
        )
        procs.append(fake)
        if not wait_http(f"http://127.0.0.1:{upstream_port}/v1/models", fake, 15):
            log("the fake upstream did not start:\n" + tail(log_path))
            return 1
        if "direct" in wanted:
            targets.append(Target("direct", upstream_port, "direct", fake))

        router_bin = Path(sys.executable).with_name("router")
        router_cmd = (
            [str(router_bin)] if router_bin.exists() else [sys.executable, "-m", "router.cli"]
        )
        collector_port = None
        if "router-otel" in wanted:
            collector_port = free_port()
            collector = start(
                [sys.executable, str(HERE / "noop_collector.py"), "--port", str(collector_port)],
                cpu=upstream_cpu,
                env=clean_env(),
                log_path=work / "collector.log",
            )
            procs.append(collector)
            wait_http(f"http://127.0.0.1:{collector_port}/stats", collector, 15)
        for name, transport, ui in (
            ("router", "wire", False),
            ("router-aiohttp", "aiohttp", False),
            ("router-httpx", "httpx", False),
            ("router-ui", "wire", True),
            ("router-otel", "wire", False),
        ):
            if name not in wanted:
                continue
            tracing = (
                {
                    "ROUTER_TRACING": "1",
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
                    "OTEL_SERVICE_NAME": "hybrid-router-bench",
                }
                if name == "router-otel"
                else {}
            )
            port = free_port()
            records = work / f"decisions-{name}.jsonl"
            policy = work / f"policy-{name}.yaml"
            write_policy(policy, upstream_port, records, ui)
            log_path = work / f"{name}.log"
            proc = start(
                [
                    *router_cmd,
                    "serve",
                    "--policy",
                    str(policy),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cpu=proxy_cpu,
                env=clean_env(ROUTER_TRANSPORT=transport, **tracing),
                log_path=log_path,
            )
            procs.append(proc)
            t = Target(name, port, "router", proc, log_path, records=records)
            t.note = (
                f"ROUTER_TRANSPORT={transport}, 1 worker, decision records on, "
                f"status page {'on' if ui else 'off'}, "
                f"tracing {'on (OTLP/HTTP to a no-op collector)' if tracing else 'off'}"
            )
            targets.append(t)

        if "minimal" in wanted:
            # The floor: a 60-line Starlette app forwarding with one aiohttp session.
            port = free_port()
            log_path = work / "minimal.log"
            proc = start(
                [sys.executable, str(HERE / "minimal_proxy.py"), "--port", str(port),
                 "--upstream", f"http://127.0.0.1:{upstream_port}"],
                cpu=proxy_cpu,
                env=clean_env(),
                log_path=log_path,
            )  # fmt: skip
            procs.append(proc)
            t = Target("minimal", port, "router", proc, log_path)
            t.note = "Starlette + one shared aiohttp session, no policy, no records"
            targets.append(t)

        if "litellm" in wanted:
            binary, note = ensure_litellm(not args.no_install)
            if binary is None:
                skipped["litellm"] = note
                log(f"LiteLLM skipped: {note}")
            else:
                port = free_port()
                config = work / "litellm.yaml"
                write_litellm_config(config, upstream_port)
                log_path = work / "litellm.log"
                proc = start(
                    [
                        str(binary),
                        "--config",
                        str(config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--num_workers",
                        "1",
                    ],
                    cpu=proxy_cpu,
                    env=clean_env(
                        LITELLM_LOCAL_MODEL_COST_MAP="True",
                        LITELLM_LOG="ERROR",
                        LITELLM_MASTER_KEY=API_KEY,
                        LITELLM_TELEMETRY="False",
                        DISABLE_SCHEMA_UPDATE="True",
                        PYTHONUNBUFFERED="1",
                    ),
                    log_path=log_path,
                )
                procs.append(proc)
                t = Target("litellm", port, "litellm", proc, log_path)
                t.note = (
                    "LiteLLM proxy " + litellm_version() + ", 1 worker, no database, no callbacks"
                )
                targets.append(t)

        for t in targets:
            if t.kind == "direct":
                continue
            url = (
                f"http://127.0.0.1:{t.port}/healthz"
                if t.kind == "router"
                else f"http://127.0.0.1:{t.port}/health/liveliness"
            )
            timeout = 30 if t.kind == "router" else 180
            if not wait_http(url, t.proc, timeout):
                skipped[t.name] = "did not start: " + tail(t.log_path, 8).replace("\n", " | ")
                log(f"{t.name} did not start:\n{tail(t.log_path)}")
                stop(t.proc)
        targets = [t for t in targets if t.name not in skipped]

        if pin:
            os.sched_setaffinity(0, {client_cpu})  # type: ignore[arg-type]
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for t in list(targets):
                problem = runner.run(smoke(t, args.chunks))
                if problem:
                    skipped[t.name] = f"failed the smoke test: {problem}"
                    log(f"{t.name} failed the smoke test: {problem}\n{tail(t.log_path)}")
                    targets.remove(t)
            if not any(t.kind == "direct" for t in targets):
                log("the direct target is needed for the comparison")
                return 1
            est = rounds * len(modes) * len(concurrencies) * len(targets) * (warmup + duration)
            log(f"measuring {len(targets)} targets, about {est:.0f} s; pinning: {pinning}")
            runner.run(
                measure(
                    targets,
                    concurrencies,
                    modes,
                    rounds,
                    warmup,
                    duration,
                    args.chunks,
                    max_requests,
                )
            )

        for t in targets:
            if t.records is not None:
                time.sleep(0.5)
                # The file rotates at 100 MB: its older parts count too.
                parts = [t.records, *t.records.parent.glob(t.records.name + ".*")]
                count = sum(sum(1 for _ in part.open()) for part in parts if part.exists())
                t.note += f"; {count} decision records written"
            if t.name == "router-otel" and collector_port is not None:
                t.note += "; collector got " + collector_stats(collector_port)

        load_after = loadavg()
        meta = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "mode": "quick" if args.quick else "full",
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at)),
            "elapsed_s": round(time.time() - started_at, 1),
            "conditions": {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}",
                "pinning": pinning,
                "load average before / after (1, 5, 15 min)": f"{load_before} / {load_after}",
                "busiest processes at start (pid ni %cpu cmd)": "; ".join(busy_before[:4]),
                "per point": f"{warmup:g} s warm-up + {duration:g} s measured (longer, up to "
                f"{4 * duration:g} s, until max(50, 2 x c) answers) x {rounds} round(s), "
                "targets interleaved",
                "requests": f"POST /v1/chat/completions, {len(request_body(False))} B body; "
                f"stream = {args.chunks} SSE chunks + [DONE]",
                "skipped": "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "none",
            },
        }
        report, data = build_report(targets, concurrencies, modes, meta)
        print(report)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_finite(data), indent=2, default=str) + "\n")
        log(f"JSON written to {args.out}")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        if args.keep_logs:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def collector_stats(port: int) -> str:
    """What the no-op OTLP collector received (after the router's exporter flushed)."""
    time.sleep(6)  # the batch span processor exports every 5 s
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as response:
            stats = json.loads(response.read())
    except OSError as exc:
        return f"nothing readable ({exc})"
    return f"{stats['posts']} OTLP export requests, {stats['bytes']:,} B"


def _finite(value: Any) -> Any:
    """NaN (a point with no answers) as null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def litellm_version() -> str:
    try:
        out = subprocess.run(
            [
                str(LITELLM_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
