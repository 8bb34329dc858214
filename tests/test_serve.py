"""`router serve` as a process: several workers, metrics summed over them, policy from env."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from servers import FakeUpstream, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_workers_share_metrics_and_policy_comes_from_env(tmp_path: Path) -> None:
    with serve(FakeUpstream("local"), lifespan="off") as url:
        policy = tmp_path / "p.yaml"
        policy.write_text(
            f"upstreams: {{local: {{base_url: '{url}/v1', model: m}}}}\n"
            f"default: {{target: local}}\nrecord: {{path: '{tmp_path / 'r.jsonl'}'}}\n"
            "server: {header_timeout_s: 0.5}\n"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env["ROUTER_POLICY"] = str(policy)
        proc = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, proc)
            body = {"model": "auto", "messages": [{"role": "user", "content": "count me"}]}
            for _ in range(12):
                # A new connection each time spreads the requests over both workers.
                with httpx.Client() as c:
                    assert c.post(f"{base}/v1/chat/completions", json=body).status_code == 200
            total = 0.0
            for _ in range(3):  # every scrape, whichever worker answers, sees all of them
                text = httpx.get(f"{base}/metrics").text
                found = re.findall(
                    r'^router_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text, re.M
                )
                total = sum(float(v) for v in found)
                assert total == 12
            # The workers run the router's protocol: a silent connection is cut off.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
                assert silent.recv(65536).startswith(b"HTTP/1.1 408")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(20)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 40) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "router serve exited"
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("router serve did not become ready")


def test_quick_start_demo_serves_every_feature(tmp_path: Path) -> None:
    import openai

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["demo"] is True and ready["scoring"]["status"] == "ok"
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        ask = {
            "model": "auto",
            "messages": [{"role": "user", "content": "Hello"}],
            "extra_headers": {"x-user-id": "bob"},
        }
        first = client.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
        assert first.headers["x-router-route"] == "local"  # bob is in the demo's 50% rollout
        assert (
            first.headers["x-router-cache"] == "miss"
            and float(first.headers["x-router-score"]) >= 0
        )
        assert first.parse().choices[0].message.content.startswith("[DEMO local model]")
        time.sleep(0.3)
        again = client.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
        assert again.headers["x-router-cache"] == "hit"
        pinned = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-route": "cloud"},
        )
        assert pinned.choices[0].message.content.startswith("[DEMO cloud model]")
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=20)[0].decode()
    assert '"event": "demo_mode"' in output and "DEMO" in output
    records = (tmp_path / "records" / "demo-decisions.jsonl").read_text().splitlines()
    assert len(records) == 3


def test_demo_refuses_busy_ports(tmp_path: Path) -> None:
    from router.demo import DEMO_PORTS

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", DEMO_PORTS["local"]))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "router.cli", "serve", "--demo", "--port", str(free_port())],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert "in use" in done.stderr


def test_serve_workers_tune_the_garbage_collector() -> None:
    """`router serve`'s app factory freezes start-up objects and raises the young
    generation's threshold; ROUTER_GC_THRESHOLD=0 keeps Python's (a child process,
    so that this test process keeps its own collector)."""
    code = (
        "import gc, os\n"
        "from router.app import app_from_env\n"
        "before = gc.get_threshold()\n"
        "app_from_env()\n"
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 0, before[0])\n"
    )
    policy = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"
    env = {**os.environ, "ROUTER_POLICY": str(policy)}
    env.pop("ROUTER_GC_THRESHOLD", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["20000", "True", "700"]
    env["ROUTER_GC_THRESHOLD"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["700", "False", "700"]
