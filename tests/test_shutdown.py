"""Shutdown (SIGTERM under `router serve`) keeps the records still waiting on a
shadow answer: it waits for the shadows a bounded time, then writes each record,
with a shadow error for those it had to cut."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from conftest import policy_text
from servers import FakeUpstream, serve

from router.app import create_app

SHADOW = "default:\n  target: cloud\n  shadow: {percent: 100, target: local}\n"


def run_and_shut_down(tmp_path: Path, shadow_delay: float, wait_s: float, n: int = 20) -> tuple[list[dict], float]:  # type: ignore[type-arg]
    local, cloud = FakeUpstream("local"), FakeUpstream("cloud")
    local.faults.delay = shadow_delay  # the shadow target answers late (or never)
    records = tmp_path / "r.jsonl"
    with serve(local, lifespan="off") as lurl, serve(cloud, lifespan="off") as curl:
        policy = policy_text(lurl, curl, records, prompts=True).replace(
            "default:\n  target: local\n  fallbacks: [cloud]\n", SHADOW
        ) + f"server: {{shutdown_shadow_wait_s: {wait_s}}}\n"
        path = tmp_path / "policy.yaml"
        path.write_text(policy)
        app = create_app(str(path), scorer_factory=None)
        with serve(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            for i in range(n):
                client.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"q{i}"}])
            if shadow_delay > 30:
                # Each shadow starts just after its client got the answer; a stalled
                # one is still pending at shutdown. (Quick ones may already be done.)
                deadline = time.monotonic() + 5
                while app.runtime.shadow is None or app.runtime.shadow.pending < n:
                    assert time.monotonic() < deadline, "the shadows did not start"
                    time.sleep(0.01)
            started = time.monotonic()
        took = time.monotonic() - started  # the server's exit: lifespan shutdown included
    lines = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
    return lines, took


def test_records_waiting_on_a_stalled_shadow_are_written_at_shutdown(tmp_path: Path) -> None:
    lines, took = run_and_shut_down(tmp_path, shadow_delay=60, wait_s=0.5)
    assert len(lines) == 20
    assert all(r["status"] == 200 and r["shadow_result"]["error"] == "shutdown" for r in lines)
    assert took < 5  # the wait is bounded


@pytest.mark.parametrize("delay", [1.0])
def test_shutdown_waits_for_shadows_that_answer_in_time(tmp_path: Path, delay: float) -> None:
    lines, _ = run_and_shut_down(tmp_path, shadow_delay=delay, wait_s=15)
    assert len(lines) == 20
    assert all(r["shadow_result"]["status"] == 200 for r in lines)
    assert all(r["shadow_result"]["answer"] for r in lines)
