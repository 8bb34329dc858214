"""Offline replay: hand-computed shares, costs, quality, changes, sweep and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router.cli import main
from router.evaluation import evaluate, group_by_benchmark, read_jsonl
from router.ingress.request import parse_chat_request
from router.policy.decide import decide
from router.policy.loader import parse_policy
from router.replay import convert_routing_rows, load_records, parse_label_map
from router.replay.engine import Replay, prepare
from router.replay.facts import facts_of
from router.replay.report import render_html

PRICES = """
upstreams:
  local: {base_url: "http://127.0.0.1:1/v1", model: l, price: {input: 1, output: 2}}
  cloud: {base_url: "http://127.0.0.1:2/v1", model: c, price: {input: 10, output: 20}}
"""
CANDIDATE = (
    "version: 1\n"
    + PRICES
    + """
routes:
  - name: easy
    match: {score: {lt: 0.5}}
    target: local
default: {target: cloud}
"""
)
BASELINE = "version: 1\n" + PRICES + "default: {target: cloud}\n"


def _record(rid: str, score: float | None, tin: int, tout: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "request_id": rid,
        "ts": 1.0,
        "tenant": "default",
        "model": "auto",
        "stream": False,
        "rule": "default",
        "route": "cloud",
        "targets": ["cloud"],
        "status": 200,
        "tokens_in": tin,
        "tokens_out": tout,
        "prompt_chars": 40,
        "v": 1,
        **extra,
    }
    if score is not None:
        rec["score"] = score
    else:
        rec["score_error"] = "scoring failed: timeout"
    return rec


def write_records(path: Path) -> Path:
    lines = [
        _record("r1", 0.1, 1000, 500, quality={"cloud": 1.0, "local": 1.0}),
        _record(
            "r2",
            0.4,
            2000,
            1000,
            feedback=[{"score": 0.8, "label": "good", "source": "thumbs", "ts": 2.0}],
        ),
        _record("r3", 0.9, 1000, 1000),
        _record("r4", None, 100, 100),
        _record(
            "r5",
            0.2,
            500,
            0,
            shadow_result={
                "upstream": "local",
                "answer": "x",
                "status": 200,
                "latency_ms": 3.0,
                "tokens_in": 500,
                "tokens_out": 7,
                "cost_usd": None,
            },
            feedback=[
                {"score": 1.0, "label": None, "source": "judge", "ts": 3.0, "upstream": "local"}
            ],
        ),
        # Standalone feedback for r2, rating the local answer of a shadow pair.
        {
            "kind": "feedback",
            "request_id": "r2",
            "score": 0.2,
            "label": "bad",
            "source": "judge",
            "upstream": "local",
        },
        {"kind": "feedback", "request_id": "nobody", "score": 1.0},
        {"kind": "budget_event", "tenant": "x"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n\n"
    path.write_text(text)
    return path


def run_replay(tmp_path: Path, baseline: bool = True) -> dict[str, Any]:
    loaded = load_records(write_records(tmp_path / "rec.jsonl"))
    prepared = prepare(loaded.records)
    engine = Replay(prepared, parse_policy(CANDIDATE), parse_policy(BASELINE) if baseline else None)
    return engine.run().report


def test_reader_joins_feedback_and_skips_unknown(tmp_path: Path) -> None:
    loaded = load_records(write_records(tmp_path / "rec.jsonl"))
    assert [r["request_id"] for r in loaded.records] == ["r1", "r2", "r3", "r4", "r5"]
    assert loaded.feedback_joined == 1
    assert loaded.feedback_orphans == 1
    assert loaded.skipped_kinds == {"budget_event": 1}
    assert loaded.bad_lines == 1
    assert len(loaded.records[1]["feedback"]) == 2


def test_shares_costs_quality_and_changes(tmp_path: Path) -> None:
    r = run_replay(tmp_path)
    cand, base = r["candidate"], r["baseline"]
    # r1, r2, r5 score < 0.5 -> local; r3 -> cloud; r4 unscored -> on_classifier_error = cloud.
    assert cand["share"] == {"cloud": 0.4, "local": 0.6}
    assert cand["on_classifier_error"] == 1
    assert cand["cost_usd"] == pytest.approx(0.002 + 0.004 + 0.03 + 0.003 + 0.0005)
    assert base["cost_usd"] == pytest.approx(0.02 + 0.04 + 0.03 + 0.003 + 0.005)
    # Quality of the chosen upstream where rated: r1 local 1.0, r2 local 0.2, r5 local 1.0.
    assert cand["quality"] == pytest.approx(2.2 / 3)
    assert cand["quality_coverage"] == pytest.approx(0.6)
    assert base["quality"] == pytest.approx(0.9)  # r1 cloud 1.0, r2 cloud 0.8
    assert base["quality_coverage"] == pytest.approx(0.4)
    # Paired records (both upstreams rated): r1, r2.
    assert cand["quality_paired"] == pytest.approx(0.6)
    assert base["quality_paired"] == pytest.approx(0.9)
    assert r["changes"]["count"] == 3
    assert r["changes"]["by_pair"] == {"cloud->local": 3}
    assert {c["request_id"] for c in r["changes"]["sample"]} == {"r1", "r2", "r5"}
    lab = r["labels"]
    assert (lab["labelled_records"], lab["paired_records"]) == (3, 2)
    assert (lab["feedback_entries"], lab["shadow_pairs"]) == (3, 1)
    oracle = r["oracle"]
    # r1: both 1.0, local is cheaper; r2: cloud 0.8 beats local 0.2.
    assert oracle["quality"] == pytest.approx(0.9)
    assert oracle["cost_usd"] == pytest.approx(0.002 + 0.04)
    assert oracle["share"] == {"cloud": 0.5, "local": 0.5}


def test_without_baseline_compares_with_recorded_decisions(tmp_path: Path) -> None:
    r = run_replay(tmp_path, baseline=False)
    assert r["compared_with"] == "recorded decisions"
    assert r["changes"]["by_pair"] == {"cloud->local": 3}


def test_threshold_sweep(tmp_path: Path) -> None:
    sweep = run_replay(tmp_path)["sweep"]
    assert (sweep["rule"], sweep["op"], sweep["current"]) == ("easy", "lt", 0.5)
    by_t = {p["threshold"]: p for p in sweep["points"]}
    assert by_t[0.5]["cost_usd"] == pytest.approx(0.0395)
    # score < 0.1 holds for nobody: everything goes to the cloud.
    assert by_t[0.1]["share"] == {"cloud": 1.0, "local": 0.0}
    # score < 0.9: all scored but r3 go local.
    assert by_t[0.9]["share"] == {"cloud": 0.4, "local": 0.6}
    costs = [p["cost_usd"] for p in sweep["points"]]
    assert costs == sorted(costs, reverse=True)


def test_rollout_replays_like_live() -> None:
    policy = parse_policy(
        "version: 1\n"
        + PRICES
        + "default:\n  target: cloud\n  rollout: {percent: 30, target: local, sticky: conversation}\n"
    )
    records = []
    for i in range(400):
        messages = [{"role": "user", "content": f"conversation {i % 50}"}]
        records.append(_record(f"q{i}", 0.5, 10, 10, messages=messages))
    prepared = prepare(records)
    report = Replay(prepared, policy).run().report
    # Same conversation key as the live router, so the sample is the live sample.
    for rec in records[:50]:
        live = parse_chat_request(
            json.dumps({"model": "auto", "messages": rec["messages"]}).encode()
        )
        facts, exact = facts_of(rec)
        assert exact and facts.conversation == live.conversation_key
    local = sum(decide(policy, facts_of(r)[0]).target == "local" for r in records)
    assert report["candidate"]["count"]["local"] == local
    assert report["candidate"]["rollout"]["in"] == local
    assert 0 < local < 400 and local % 8 == 0  # whole conversations move together


def test_label_map_and_converter() -> None:
    assert parse_label_map("strong=cloud, weak=local") == {"strong": "cloud", "weak": "local"}
    for bad in ("strong=cloud", "strong=a,weak=a", "big=a,weak=b", "strong"):
        with pytest.raises(ValueError):
            parse_label_map(bad)
    rows = [
        {"id": "mmlu/x/1", "benchmark": "mmlu", "prompt": "Q?", "strong_score": 1, "weak_score": 0},
        {
            "id": "mt_bench/81",
            "benchmark": "mt_bench",
            "prompt": "Write",
            "strong_score": 9.5,
            "weak_score": 7.0,
        },
    ]
    recs = convert_routing_rows(rows, {"strong": "cloud", "weak": "local"})
    assert recs[0]["quality"] == {"cloud": 1.0, "local": 0.0}
    assert recs[1]["quality"] == {"cloud": 0.95, "local": 0.7}
    assert recs[1]["group"] == "mt_bench" and recs[1]["prompt_chars"] == 5
    assert recs[0]["messages"] == [{"role": "user", "content": "Q?"}]
    assert "score" not in recs[0]


DEV = Path("/work/shared/data/routing/dev.jsonl")


@pytest.mark.skipif(not DEV.exists(), reason="routing data not present")
def test_replay_reproduces_eval_on_dev_with_length_scores() -> None:
    rows = list(read_jsonl(DEV))
    records = convert_routing_rows(rows, {"strong": "cloud", "weak": "local"})
    for rec in records:
        rec["score"] = float(rec["prompt_chars"])
    policy = parse_policy(
        "version: 1\n" + PRICES + "routes:\n  - name: easy\n    match: {score: {lt: 300}}\n"
        "    target: local\ndefault: {target: cloud}\n"
    )
    ev = Replay(prepare(records), policy).run().report["eval"]
    benches = group_by_benchmark(rows)
    readme = {"mt_bench": 0.739, "mmlu": 0.598, "gsm8k": 0.673}
    for name, bench in benches.items():
        ref = evaluate(bench, np.asarray([len(p) for p in bench.prompts], dtype=np.float64))
        assert ev[name]["apgr"] == pytest.approx(ref.apgr, abs=1e-9)
        assert ev[name]["cpt50"] == pytest.approx(ref.cpt50, abs=1e-9)
        assert ev[name]["cpt80"] == pytest.approx(ref.cpt80, abs=1e-9)
        assert round(ev[name]["apgr"], 3) == readme[name]


def test_cli_writes_self_contained_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = write_records(tmp_path / "rec.jsonl")
    (tmp_path / "cand.yaml").write_text(CANDIDATE)
    (tmp_path / "base.yaml").write_text(BASELINE)
    out = tmp_path / "out"
    code = main(
        [
            "replay",
            str(records),
            "--policy",
            str(tmp_path / "cand.yaml"),
            "--baseline",
            str(tmp_path / "base.yaml"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "changed routes: 3" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["candidate"]["share"]["local"] == 0.6
    assert report["assumptions"]
    assert len((out / "changes.jsonl").read_text().splitlines()) == 3
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html
    assert html.count("<svg") >= 3
    for title in ("Cost vs quality over thresholds", "Share per route", "Score histogram"):
        assert title in html


def test_html_renders_without_labels_or_sweep(tmp_path: Path) -> None:
    records = [_record(f"n{i}", None, 10, 10) for i in range(3)]
    report = Replay(prepare(records), parse_policy(BASELINE)).run().report
    assert report["sweep"] is None and report["oracle"] is None
    html = render_html(report)
    assert "Share per route" in html and "Score histogram" in html
