"""`router judge` against a fake judge on loopback that prefers a known answer."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router.cli import main
from router.replay.judge import parse_verdict
from router.replay.labels import labels_of, strong_needed
from router.replay.records import load_records
from tests.servers import serve


def fake_judge(calls: list[str]) -> Starlette:
    """Prefers the answer that contains GOOD; stalls or babbles when the request asks."""

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        prompt = body["messages"][0]["content"]
        calls.append(prompt)
        if "[stall]" in prompt:
            await asyncio.sleep(5)
        if "[babble]" in prompt:
            text = "Both answers have merit; I cannot decide."
        elif "[position-bias]" in prompt:
            text = "VERDICT: A"  # always the first: only the swap exposes it
        else:
            a = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", prompt, re.S)
            assert a is not None
            text = "Reasoning...\nVERDICT: " + ("A" if "GOOD" in a.group(1) else "B")
        return JSONResponse(
            {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _pair(rid: str, prompt: str, served: str, shadow: str) -> dict[str, Any]:
    return {
        "v": 1,
        "request_id": rid,
        "tenant": "t",
        "model": "auto",
        "route": "cloud",
        "targets": ["cloud"],
        "status": 200,
        "prompt": prompt,
        "answer": served,
        "shadow": "local",
        "shadow_result": {"upstream": "local", "status": 200, "answer": shadow},
        "score": 0.2,
    }


def _policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nupstreams:\n"
        "  local: {base_url: http://127.0.0.1:9/v1, model: small, price: {input: 0.1, output: 0.2}}\n"
        f"  cloud: {{base_url: {url}/v1, model: judge-large, price: {{input: 2, output: 10}}}}\n"
        "default: {target: cloud}\n"
    )
    return path


def test_verdict_parsing_never_guesses() -> None:
    assert parse_verdict("blah\nVERDICT: b") == "B"
    assert parse_verdict("VERDICT: A ... on reflection VERDICT: **TIE**") == "TIE"
    assert parse_verdict("I prefer A.") is None


def test_judge_rates_pairs_both_orders_resumes_and_feeds_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        _pair("r1", "2+2?", "4 GOOD", "5"),  # cloud better
        _pair("r2", "capital of France?", "Lyon", "Paris GOOD"),  # local better
        _pair("r3", "[position-bias] hi", "hello", "hey"),  # judge always says A: tie
        _pair("r4", "[babble] why?", "because", "why not"),  # no verdict: unrated
        _pair("r5", "[stall] slow", "a", "b"),  # timeout: unrated
        {"v": 1, "request_id": "r6", "route": "cloud", "status": 200, "prompt": "no shadow"},
    ]
    rec_path = tmp_path / "records.jsonl"
    rec_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "judge.jsonl"
    calls: list[str] = []
    with serve(fake_judge(calls)) as url:
        policy = _policy(tmp_path, url)
        args = ["judge", "--records", str(rec_path), "--out", str(out), "--policy", str(policy)]
        assert main([*args, "--timeout", "0.5"]) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["pairs"] == 5 and summary["rated"] == 3 and summary["ties"] == 1
        assert summary["wins"] == {"cloud": 1, "local": 1}
        assert summary["unrated"] == 2 and summary["failed_calls"] == 2
        assert summary["unparseable"] == 2 and summary["calls"] == 10
        # 8 answered calls x (1000 in, 100 out) at the cloud upstream's prices (timeouts: no usage)
        assert summary["cost_usd"] == pytest.approx(8 * (1000 * 2 + 100 * 10) / 1e6)
        # Each pair was shown in both orders.
        r1 = [c for c in calls if "2+2?" in c]
        assert len(r1) == 2 and r1[0].index("4 GOOD") != r1[1].index("4 GOOD")

        # A second run rates only what is missing.
        calls.clear()
        assert main([*args, "--timeout", "0.5"]) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["skipped_done"] == 3 and summary["rated"] == 0
        assert len(calls) == 4 and not any("2+2?" in c for c in calls)

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["request_id"] for x in lines} == {"r1", "r2", "r3"}
    assert all(x["kind"] == "feedback" and x["source"] == "judge" for x in lines)
    loaded = load_records([str(rec_path), str(out)])
    by_id = {r["request_id"]: r for r in loaded.records}
    assert strong_needed(labels_of(by_id["r1"]), "cloud", "local") == 1.0
    assert strong_needed(labels_of(by_id["r2"]), "cloud", "local") == 0.0
    assert labels_of(by_id["r3"]).quality == {"cloud": 0.5, "local": 0.5}
    assert labels_of(by_id["r4"]).quality == {}


def test_judge_cost_cap_rate_limit_and_rubric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [_pair(f"r{i}", f"q{i}", "GOOD", "bad") for i in range(6)]
    rec_path = tmp_path / "records.jsonl"
    rec_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rubric = tmp_path / "rubric.txt"
    rubric.write_text(
        "Custom rubric.\n{prompt}\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}\n"
    )
    calls: list[str] = []
    with serve(fake_judge(calls)) as url:
        base = ["judge", "--records", str(rec_path), "--policy", str(_policy(tmp_path, url))]
        # One pair costs 2 x 0.003 USD: a 0.005 cap lets the first pair (and the ones
        # already started beside it) through and no more.
        out = tmp_path / "capped.jsonl"
        assert main([*base, "--out", str(out), "--max-cost", "0.005", "--concurrency", "1"]) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["rated"] == 1 and summary["stopped_by_cost"] == 5
        calls.clear()
        out2 = tmp_path / "paced.jsonl"
        args = [*base, "--out", str(out2), "--rate", "20", "--rubric", str(rubric), "--limit", "3"]
        t0 = time.perf_counter()
        assert main(args) == 0
        assert time.perf_counter() - t0 >= 5 / 20  # 6 calls, at most 20 a second
        assert len(calls) == 6 and all(c.startswith("Custom rubric.") for c in calls)
        bad = tmp_path / "bad.txt"
        bad.write_text("no placeholders")
        assert main([*base, "--out", str(out2), "--rubric", str(bad)]) == 2
