"""`router replay --live` against real loopback servers: a router in front of fake upstreams."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from conftest import Stack
from servers import FakeUpstream, serve

from router.cli import main
from router.replay.live import LiveOptions, replay_live


def _traffic(stack: Stack, n: int) -> Path:
    with httpx.Client(base_url=stack.url) as client:
        for i in range(n):
            headers = {"x-route": "cloud"} if i % 3 == 0 else {}
            r = client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": f"question {i}"}]},
                headers=headers,
            )
            assert r.status_code == 200
    stack.records()
    return stack.records_path


def test_live_replay_through_a_router(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    stack = make_stack(prompts=True)
    records = _traffic(stack, 6)
    # Copy: replaying through the same router appends to its records file.
    source = tmp_path / "source.jsonl"
    source.write_text(records.read_text())
    out = tmp_path / "live"
    code = main(
        [
            "replay",
            "--live",
            str(source),
            "--policy",
            str(stack.policy_path),
            "--target-url",
            f"{stack.url}/v1",
            "--rate",
            "100",
            "--concurrency",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    outcomes = [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == 6
    assert {o["status"] for o in outcomes} == {200}
    # Headers are not replayed, so the pinned-cloud requests now take the default route.
    assert {o["route"] for o in outcomes} == {"local"}
    assert all(o["rule"] == "default" and o["request_id"] for o in outcomes)
    assert all(o["tokens_in"] and o["tokens_out"] and o["answer"] for o in outcomes)
    assert all(o["cost_usd"] is not None for o in outcomes)
    assert {o["source_request_id"] for o in outcomes} == {
        json.loads(line)["request_id"] for line in source.read_text().splitlines()
    }
    summary = json.loads((out / "live.json").read_text())
    assert summary["sent"] == 6 and summary["ok"] == 6 and summary["routes"] == {"local": 6}


def test_live_replay_paces_and_bounds_concurrency(tmp_path: Path) -> None:
    upstream = FakeUpstream("up")
    upstream.faults.delay = 0.05
    records = [
        {"request_id": f"r{i}", "model": "m", "messages": [{"role": "user", "content": f"hi {i}"}]}
        for i in range(8)
    ] + [{"request_id": "no-prompt", "model": "m"}]
    with serve(upstream, lifespan="off") as url:
        t0 = time.perf_counter()
        summary = replay_live(
            records,
            LiveOptions(target_url=f"{url}/v1", rate=40, concurrency=2),
            tmp_path / "out.jsonl",
        )
        elapsed = time.perf_counter() - t0
    assert summary["sent"] == 8 and summary["ok"] == 8
    assert summary["skipped_without_prompt"] == 1
    # 8 tokens at 40/s: the last leaves 7/40 s after the first.
    assert elapsed >= 7 / 40
    # Two in flight at 50 ms each: at least four rounds.
    assert elapsed >= 4 * 0.05
    assert summary["routes"] == {"-": 8}  # an upstream sends no x-router-route


def test_live_replay_records_errors(tmp_path: Path) -> None:
    upstream = FakeUpstream("up")
    upstream.faults.status = 503
    records = [{"request_id": "a", "model": "m", "prompt": "hello"}]
    with serve(upstream, lifespan="off") as url:
        summary = replay_live(
            records, LiveOptions(target_url=f"{url}/v1", rate=100), tmp_path / "o.jsonl"
        )
    outcome = json.loads((tmp_path / "o.jsonl").read_text())
    assert outcome["status"] == 503 and outcome["error"]
    assert summary["ok"] == 0 and summary["status"] == {"503": 1}


def test_records_from_live_router_replay_offline(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(prompts=True)
    records = _traffic(stack, 6)
    candidate = tmp_path / "cand.yaml"
    text = stack.policy_path.read_text()
    candidate.write_text(text.replace("default:\n  target: local", "default:\n  target: cloud"))
    out = tmp_path / "off"
    assert main(["replay", str(records), "--policy", str(candidate), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    # Recorded: 2 pinned to cloud by header, 4 local. Without headers all 6 now go to cloud.
    assert report["baseline"]["count"] == {"cloud": 2, "local": 4}
    assert report["candidate"]["count"] == {"cloud": 6, "local": 0}
    assert report["changes"]["by_pair"] == {"local->cloud": 4}
    assert report["inputs"]["conversation_exact"] == 6
