"""Hot reload on file change and on SIGHUP; a bad edit keeps the running policy."""

from __future__ import annotations

import time

import openai
from conftest import Stack


def route_of(stack: Stack) -> str:
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "which way"}]
    )
    return raw.headers["x-router-route"]


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_valid_edit_applies_to_new_requests(stack: Stack) -> None:
    assert route_of(stack) == "local"
    text = stack.policy_path.read_text().replace(
        "default:\n  target: local\n  fallbacks: [cloud]", "default:\n  target: cloud"
    )
    stack.write_policy(text)
    assert wait_for(lambda: route_of(stack) == "cloud")


def test_invalid_edit_keeps_running_policy(stack: Stack) -> None:
    good = stack.policy_path.read_text()
    from prometheus_client import REGISTRY

    def rejected() -> float:
        return REGISTRY.get_sample_value("router_policy_reloads_total", {"result": "invalid"}) or 0.0

    before = rejected()
    stack.write_policy(good.replace("target: local", "target: nowhere"))
    assert wait_for(lambda: rejected() > before)
    assert route_of(stack) == "local"
    assert stack.app.runtime.policy.default.target == "local"
    # Fixing the file applies again.
    stack.write_policy(
        good.replace("default:\n  target: local\n  fallbacks: [cloud]", "default:\n  target: cloud")
    )
    assert wait_for(lambda: route_of(stack) == "cloud")


def test_in_flight_request_finishes_on_old_policy(stack: Stack) -> None:
    import threading

    stack.local.faults.delay = 0.8
    result: dict[str, str] = {}
    t = threading.Thread(target=lambda: result.setdefault("route", route_of(stack)))
    t.start()
    time.sleep(0.2)
    stack.write_policy(
        stack.policy_path.read_text().replace(
            "default:\n  target: local\n  fallbacks: [cloud]", "default:\n  target: cloud"
        )
    )
    t.join(5)
    assert result["route"] == "local"  # started under the old policy, finished there
    stack.local.faults.delay = 0
    assert route_of(stack) == "cloud"


def test_sighup_reloads() -> None:
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import httpx
    from servers import FakeUpstream, serve

    with (
        serve(FakeUpstream("local"), lifespan="off") as lurl,
        serve(FakeUpstream("cloud"), lifespan="off") as curl,
        tempfile.TemporaryDirectory() as tmp,
    ):
        policy = Path(tmp) / "p.yaml"
        base = (
            "version: 1\nupstreams:\n"
            f"  local: {{base_url: {lurl}/v1, model: m}}\n"
            f"  cloud: {{base_url: {curl}/v1, model: m}}\n"
            "record: {path: null}\n"
        )
        policy.write_text(base + "default: {target: local}\n")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router.cli",
                "serve",
                "--policy",
                str(policy),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_for(lambda: _up(url), 15)
            body = {"model": "auto", "messages": [{"role": "user", "content": "x"}]}
            assert (
                httpx.post(f"{url}/v1/chat/completions", json=body).headers["x-router-route"]
                == "local"
            )
            # Same size and mtime granularity aside, SIGHUP forces the reload at once.
            policy.write_text(base + "default: {target: cloud}\n")
            proc.send_signal(signal.SIGHUP)
            assert wait_for(
                lambda: (
                    httpx.post(f"{url}/v1/chat/completions", json=body).headers["x-router-route"]
                    == "cloud"
                )
            )
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_record_path_change_moves_new_records_and_keeps_old_ones(stack: Stack) -> None:
    assert route_of(stack) == "local"
    old_path = stack.records_path
    assert len(stack.records()) == 1
    new_path = old_path.with_name("moved.jsonl")
    stack.write_policy(stack.policy_path.read_text().replace(str(old_path), str(new_path)))
    assert wait_for(lambda: stack.app.runtime.policy.record.path == str(new_path))
    route_of(stack)
    stack.records_path = new_path
    assert len(stack.records()) == 1  # the new request, in the new file
    assert len(old_path.read_text().splitlines()) == 1  # the old file was drained, not lost
