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
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
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
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(20)
