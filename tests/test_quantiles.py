"""Readable thresholds: `score: {top_percent: N}` through a quantile table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router import Features, PolicyError, RequestFacts, decide, parse_policy
from router.cli import main
from router.policy import load_policy
from router.policy.quantiles import QuantileTable
from router.replay.engine import Replay, prepare

BASE = """\
version: 1
upstreams:
  local: {base_url: http://127.0.0.1:1/v1, model: small, price: {input: 0.1, output: 0.2}}
  cloud: {base_url: http://127.0.0.1:2/v1, model: big, price: {input: 3, output: 15}}
"""


def _table(tmp_path: Path, scores: np.ndarray) -> Path:
    return QuantileTable.from_scores(scores, source="test").write(tmp_path / "q.json")


def _policy(table: Path, match: str) -> str:
    return BASE + (
        f"scoring: {{enabled: true, quantiles: {table}}}\n"
        "routes:\n"
        f"  - {{name: hard, match: {{score: {match}}}, target: cloud}}\n"
        "default: {target: local}\n"
    )


def _cloud_share(policy_text: str, scores: np.ndarray) -> float:
    policy = parse_policy(policy_text)
    facts = RequestFacts(request_id="r", tenant="t", model="auto", prompt_chars=10)
    hits = [decide(policy, facts, Features(score=float(s))).target == "cloud" for s in scores]
    return float(np.mean(hits))


def test_table_maps_shares_to_scores_and_back() -> None:
    scores = np.linspace(0.1, 0.3, 2001)
    table = QuantileTable.from_scores(scores, source="t")
    assert table.score_at_top(30) == pytest.approx(0.24, abs=1e-6)
    assert table.top_percent(0.24) == pytest.approx(30.0, abs=0.01)
    assert table.top_percent(0.05) == 100.0
    assert table.top_percent(0.31) == 0.0
    assert table.score_at_top(0) == pytest.approx(0.3)
    assert table.score_at_top(100) == pytest.approx(0.1)


def test_top_percent_splits_traffic_as_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 12, 5000)  # a narrow band, like the classifier's
    table = _table(tmp_path, scores)
    for percent in (5, 30, 72.5):
        share = _cloud_share(_policy(table, f"{{top_percent: {percent}}}"), scores)
        assert share == pytest.approx(percent / 100, abs=0.002)
    # bottom_percent is the exact complement
    text = _policy(table, "{bottom_percent: 70}")
    assert _cloud_share(text, scores) == pytest.approx(
        1 - _cloud_share(_policy(table, "{top_percent: 30}"), scores)
    )
    assert _cloud_share(_policy(table, "{top_percent: 0}"), scores) == 0.0
    assert _cloud_share(_policy(table, "{top_percent: 100}"), scores) == 1.0
    assert _cloud_share(_policy(table, "{bottom_percent: 0}"), scores) == 0.0
    # The resolved rule keeps what the author wrote, and the table rides on the policy.
    policy = parse_policy(_policy(table, "{top_percent: 30}"))
    score = policy.routes[0].match.score
    assert score is not None and score.top_percent == 30 and score.gte is not None
    assert policy.quantiles is not None and policy.quantiles.n == 5000


def test_percent_rules_are_checked(tmp_path: Path) -> None:
    table = _table(tmp_path, np.linspace(0, 1, 100))
    with pytest.raises(PolicyError) as info:
        parse_policy(_policy(table, "{top_percent: 130}"), source="p.yaml")
    assert "p.yaml:7:47: 'top_percent' must be between 0 and 100, got 130" in info.value.messages
    with pytest.raises(PolicyError) as info:
        parse_policy(_policy(table, "{top_percent: 30, gte: 0.2}"), source="p.yaml")
    assert any("cannot be combined" in m for m in info.value.messages)
    with pytest.raises(PolicyError) as info:
        parse_policy(_policy(tmp_path / "missing.json", "{top_percent: 30}"), source="p.yaml")
    assert any("need a quantile table" in m and "missing.json" in m for m in info.value.messages)


def test_shipped_model_has_a_table_and_default_policy_resolves_it() -> None:
    text = BASE + (
        "routes:\n  - {name: hard, match: {score: {top_percent: 30}}, target: cloud}\n"
        "default: {target: local}\n"
    )
    policy = parse_policy(text)
    assert policy.quantiles is not None and policy.quantiles.model == "minilm-router-v2"
    assert policy.quantiles.n == 9246  # the training prompts


def test_example_policies_split_dev_traffic_as_their_comments_say() -> None:
    """Each example's score rule, on the dev prompts' real scores (recorded in the fixture)."""
    fixture = json.loads(Path("tests/data/dev-scores.json").read_text())
    scores = np.asarray(fixture["scores"])
    expected = {  # route name -> share of prompts its score test admits
        "policies/examples/rollout-easy-10.yaml": ("easy", 0.70),
        "policies/examples/budget-capped-tenant.yaml": ("easy-local", 0.70),
        "policies/demo.yaml": ("hard-prompts", 0.30),
        "policies/default.yaml": ("hard-prompts", 0.30),
    }
    for path, (name, share) in expected.items():
        policy = load_policy(path)
        route = next(r for r in policy.routes if r.name == name)
        assert route.match.score is not None
        admitted = np.mean([route.match.score.contains(float(s)) for s in scores])
        assert admitted == pytest.approx(share, abs=0.03), path


def test_calibrate_writes_a_table_policies_read(tmp_path: Path) -> None:
    lines = [{"request_id": f"r{i}", "score": i / 1000} for i in range(1000)]
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "team-quantiles.json"
    assert main(["calibrate", "--in", str(src), "--write", str(out)]) == 0
    table = QuantileTable.load(out)
    assert table.n == 1000 and table.score_at_top(25) == pytest.approx(0.749, abs=1e-3)
    policy = parse_policy(_policy(out, "{top_percent: 25}"))
    score = policy.routes[0].match.score
    assert score is not None and score.gte == pytest.approx(0.749, abs=1e-3)
    assert main(["calibrate", "--in", str(src)]) == 2  # neither --write nor --cloud-share


def test_replay_sweep_speaks_percent(tmp_path: Path) -> None:
    scores = np.linspace(0.0, 0.999, 1000)
    table = _table(tmp_path, scores)
    policy = parse_policy(_policy(table, "{top_percent: 20}"))
    records = [
        {"request_id": f"r{i}", "v": 1, "score": float(s), "prompt_chars": 40, "route": "local"}
        for i, s in enumerate(scores)
    ]
    report = Replay(prepare(records), policy).run().report
    sweep = report["sweep"]
    assert sweep["written"] == {"top_percent": 20.0, "bottom_percent": None}
    assert sweep["current_top_percent"] == pytest.approx(20.0, abs=0.2)
    assert report["candidate"]["share"]["cloud"] == pytest.approx(0.2, abs=0.002)
    for point in sweep["points"]:
        assert point["top_percent"] == pytest.approx(point["table_top_percent"], abs=0.2)
