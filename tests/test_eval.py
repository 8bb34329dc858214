"""RouteLLM metrics: a hand-computed toy case, ties, and the data README's check table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router.cli import main
from router.evaluation import (
    evaluate,
    group_by_benchmark,
    length_scores,
    random_router,
    read_jsonl,
)

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "dev.jsonl"

# Five prompts scored 1..5. Thresholds are the deciles of the scores with linear
# interpolation: 1, 1.4, ..., 4.6, 5, so 100, 80, 80, 60, 60, 60, 40, 40, 20, 20
# and (top quantile) 0 % go strong. Always-weak scores 40 %, always-strong 80 %.
TOY = [
    {"id": "a", "benchmark": "toy", "prompt": "p", "strong_score": 1, "weak_score": 1},
    {"id": "b", "benchmark": "toy", "prompt": "pp", "strong_score": 0, "weak_score": 0},
    {"id": "c", "benchmark": "toy", "prompt": "ppp", "strong_score": 1, "weak_score": 0},
    {"id": "d", "benchmark": "toy", "prompt": "pppp", "strong_score": 1, "weak_score": 0},
    {"id": "e", "benchmark": "toy", "prompt": "ppppp", "strong_score": 1, "weak_score": 1},
]


def test_toy_curve_apgr_and_cpt_by_hand() -> None:
    bench = group_by_benchmark(TOY)["toy"]
    m = evaluate(bench, [1, 2, 3, 4, 5])
    assert m.curve.x.tolist() == [0, 20, 20, 40, 40, 60, 60, 60, 80, 80, 100]
    assert m.curve.y.tolist() == [40, 40, 40, 60, 60, 80, 80, 80, 80, 80, 80]
    # Trapezoid area over x in [0, 1]: 8 + 10 + 14 + 16 + 16 = 64.
    assert m.apgr == pytest.approx((64 - 40) / (80 - 40))
    assert m.cpt20 == pytest.approx(28.0)  # target 48 % between (20, 40) and (40, 60)
    assert m.cpt80 == pytest.approx(52.0)  # target 72 % between (40, 60) and (60, 80)
    assert not m.curve.ties_broken


def test_reversed_scores_route_the_wrong_prompts_first() -> None:
    bench = group_by_benchmark(TOY)["toy"]
    assert evaluate(bench, [5, 4, 3, 2, 1]).apgr < evaluate(bench, [1, 2, 3, 4, 5]).apgr


def test_equal_scores_are_tie_broken_and_flagged() -> None:
    bench = group_by_benchmark(TOY)["toy"]
    m = evaluate(bench, [0.5] * 5)
    assert m.curve.ties_broken
    assert m.curve.x.tolist() == [0, 20, 20, 40, 40, 60, 60, 60, 80, 80, 100]
    assert evaluate(bench, [0.5] * 5).apgr == m.apgr  # deterministic


def test_mt_bench_quality_is_the_mean_judge_score() -> None:
    records = [
        {
            "id": "mt_bench/1",
            "benchmark": "mt_bench",
            "prompt": "x",
            "strong_score": 9.5,
            "weak_score": 7.0,
        },
        {
            "id": "mt_bench/2",
            "benchmark": "mt_bench",
            "prompt": "y",
            "strong_score": 8.0,
            "weak_score": 8.5,
        },
    ]
    bench = group_by_benchmark(records)["mt_bench"]
    assert bench.strong_quality == pytest.approx(8.75)
    assert bench.weak_quality == pytest.approx(7.75)


def test_random_router_is_near_half() -> None:
    rng = np.random.default_rng(1)
    records = [
        {
            "id": f"r{i}",
            "benchmark": "b",
            "prompt": "x",
            "strong_score": int(s),
            "weak_score": int(w),
        }
        for i, (s, w) in enumerate(zip(rng.random(2000) < 0.8, rng.random(2000) < 0.6, strict=True))
    ]
    m = random_router(group_by_benchmark(records)["b"])
    assert m.apgr == pytest.approx(0.5, abs=0.03)
    assert m.cpt50 == pytest.approx(50, abs=5)


@pytest.mark.skipif(not DEV.exists(), reason="routing data not laid out next to the repo")
@pytest.mark.parametrize(
    ("bench", "apgr", "cpt20", "cpt50", "cpt80"),
    [
        ("mt_bench", 0.739, 13.71, 18.65, 32.07),
        ("mmlu", 0.598, 14.90, 35.52, 61.12),
        ("gsm8k", 0.673, 9.01, 30.86, 54.12),
    ],
)
def test_length_router_matches_the_data_readme(
    bench: str, apgr: float, cpt20: float, cpt50: float, cpt80: float
) -> None:
    b = group_by_benchmark(read_jsonl(DEV))[bench]
    m = evaluate(b, length_scores(b))
    assert round(m.apgr, 3) == apgr
    assert (round(m.cpt20, 2), round(m.cpt50, 2), round(m.cpt80, 2)) == (cpt20, cpt50, cpt80)


def test_eval_command_on_given_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TOY))
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        "".join(json.dumps({"id": r["id"], "score": i}) + "\n" for i, r in enumerate(TOY))
    )
    out = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--scores", str(scores), "--out", str(out)]) == 0
    doc = json.loads((out / "eval.json").read_text())
    routers = doc["benchmarks"]["toy"]["routers"]
    assert set(routers) == {"scores", "random", "length"}
    assert routers["scores"]["apgr"] == pytest.approx(0.6)
    assert routers["length"]["apgr"] == pytest.approx(0.6)  # lengths are 1..5 too
    assert "toy" in capsys.readouterr().out
    png = (out / "eval.png").read_bytes()  # matplotlib comes with the test extra
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_eval_command_runs_the_classifier(tmp_path: Path) -> None:
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TOY))
    assert main(["eval", "--data", str(data), "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["router"] == "minilm-router-v2"
    assert "minilm-router-v2" in doc["benchmarks"]["toy"]["routers"]
