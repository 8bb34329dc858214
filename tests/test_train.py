"""`router train` on a small synthetic labelled set: a new ONNX head that Scorer loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from router.cli import main
from router.policy.quantiles import QuantileTable
from router.replay.labels import labels_of, strong_needed
from router.replay.onnxhead import HeadSwapError, head_input_name, replace_head
from router.replay.training import examples_from_records, fit_logistic, fit_warm
from router.scoring import Scorer
from router.scoring.model_dir import default_model_dir

EASY = [
    "hi there",
    "thanks a lot",
    "what time is it",
    "say hello in french",
    "tell me a joke",
    "good morning",
]
HARD = [
    "Prove that the sum of the reciprocals of the primes diverges, giving every step",
    "Derive the closed form of the integral of x^3 e^{-x^2} and justify convergence",
    "Write a lock-free concurrent queue in C++ with memory-order annotations",
    "Solve y'' + 4y = sin(2t) with y(0)=0, y'(0)=1 and explain resonance",
]


def synthetic_records(path: Path, n: int = 100) -> Path:
    """Half hard prompts (strong needed), labelled three ways: quality, feedback, shadow pairs."""
    rng = random.Random(7)
    lines = []
    for i in range(n):
        hard = i % 2 == 0
        text = f"{rng.choice(HARD if hard else EASY)} (case {i})"
        rec: dict[str, object] = {
            "request_id": f"s{i}",
            "tenant": "t",
            "model": "auto",
            "prompt_chars": len(text),
            "group": "syn",
        }
        if i % 3 == 0:
            rec["prompt"] = text
            rec["quality"] = {"cloud": 1.0, "local": 0.0 if hard else 1.0}
        elif i % 3 == 1:
            # The weak model answered and the user rated it.
            rec["messages"] = [{"role": "user", "content": text}]
            rec["route"] = "local"
            rec["feedback"] = [
                {"score": 0.0 if hard else 1.0, "label": None, "source": "thumbs", "ts": 1.0}
            ]
        else:
            # A shadow pair: cloud answered, local shadowed, a judge rated both.
            rec["prompt"] = text
            rec["route"] = "cloud"
            rec["shadow_result"] = {
                "upstream": "local",
                "answer": "..",
                "status": 200,
                "latency_ms": 5.0,
                "tokens_in": 9,
                "tokens_out": 9,
                "cost_usd": None,
            }
            rec["feedback"] = [
                {"score": 0.9, "label": None, "source": "judge", "ts": 1.0},
                {
                    "score": 0.2 if hard else 0.9,
                    "label": None,
                    "source": "judge",
                    "ts": 1.0,
                    "upstream": "local",
                },
            ]
        lines.append(json.dumps(rec))
    lines.append(json.dumps({"request_id": "unlabelled", "prompt": "no label"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_labels_to_strong_needed(tmp_path: Path) -> None:
    records = [
        json.loads(x) for x in synthetic_records(tmp_path / "r.jsonl", 6).read_text().splitlines()
    ]
    got = [strong_needed(labels_of(r), "cloud", "local") for r in records]
    # quality (hard), feedback on weak (easy), shadow pair (hard), quality (easy), feedback (hard), pair (easy)
    assert got == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, None]
    examples, textless = examples_from_records(records, "cloud", "local")
    assert len(examples) == 6 and textless == 0


def test_fit_logistic_separates() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(np.float64)
    head = fit_logistic(x, y, l2=0.01)
    assert ((head.predict(x) >= 0.5) == (y == 1)).mean() > 0.97


def test_head_swap_rejects_other_graphs() -> None:
    with pytest.raises(HeadSwapError):
        replace_head(b"\x08\x08", np.zeros(3), 0.0)
    assert (
        head_input_name(default_model_dir().joinpath("model.onnx").read_bytes())
        == "/head/Concat_output_0"
    )


def test_train_writes_a_classifier_that_scorer_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = synthetic_records(tmp_path / "records.jsonl", 120)
    out = tmp_path / "minilm-router-team"
    code = main(["train", "--records", str(records), "--out", str(out), "--holdout", "0.3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "old:" in printed and "new:" in printed
    assert {"model.onnx", "tokenizer.json", "classifier.json", "train-report.json"} <= {
        p.name for p in out.iterdir()
    }
    report = json.loads((out / "train-report.json").read_text())
    assert report["held_out"] > 10 and report["onnx_head_max_diff"] < 1e-3
    assert report["held_out_labels"]["new"]["accuracy"] >= 0.9
    assert report["held_out_labels"]["new"]["auc"] >= report["held_out_labels"]["old"]["auc"]
    routing = report["held_out_routing"]["syn"]["routers"]
    assert {"old", "new", "random", "length"} <= set(routing)
    scorer = Scorer.from_path(out, threads=1)
    assert json.loads((out / "classifier.json").read_text())["name"] == out.name
    scores, embeddings = scorer.score_batch([HARD[0], EASY[0]])
    assert embeddings.shape == (2, 384)
    assert scores[0] > 0.5 > scores[1]


def test_train_refuses_too_few_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text(
        json.dumps({"request_id": "a", "prompt": "x", "quality": {"cloud": 1, "local": 0}}) + "\n"
    )
    assert main(["train", "--records", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "at least 10" in capsys.readouterr().err


def test_fit_warm_stays_at_the_base_head_without_evidence() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4))
    base = x[:, 0] * 2.0
    y = (rng.random(400) < 1 / (1 + np.exp(-base))).astype(np.float64)
    # Labels that agree with the base head leave it (nearly) alone ...
    head = fit_warm(base, x, y, l2=10.0)
    assert head.scale == pytest.approx(1.0, abs=0.25)
    assert np.abs(head.weight).max() < 0.3
    # ... labels that depend on something else move it, more with a weaker pull.
    y2 = (x[:, 1] > 0).astype(np.float64)
    strong_pull, weak_pull = fit_warm(base, x, y2, l2=100.0), fit_warm(base, x, y2, l2=0.1)
    assert 0 < strong_pull.weight[1] < weak_pull.weight[1]
    assert weak_pull.scale < strong_pull.scale


def test_warm_start_keeps_the_shipped_head_and_stacks(tmp_path: Path) -> None:
    records = synthetic_records(tmp_path / "records.jsonl", 120)
    out = tmp_path / "team-1"
    assert main(["train", "--records", str(records), "--out", str(out)]) == 0
    report = json.loads((out / "train-report.json").read_text())
    assert report["warm_start"] is True and report["onnx_head_max_diff"] < 1e-3
    assert "kept whole" in json.loads((out / "classifier.json").read_text())["score"]
    # A warm-started model warm-starts again (the corrections stack) ...
    again = tmp_path / "team-2"
    assert main(["train", "--records", str(records), "--out", str(again), "--base", str(out)]) == 0
    assert json.loads((again / "train-report.json").read_text())["onnx_head_max_diff"] < 1e-3
    # ... and each one ships the quantile table its percent rules need.
    table = QuantileTable.load(again / "quantiles.json")
    assert table.model == "team-2" and table.n > 50


ROUTING = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing"


@pytest.mark.skipif(not ROUTING.exists(), reason="routing data not laid out next to the repo")
def test_warm_start_on_one_kind_of_prompt_keeps_the_others(tmp_path: Path) -> None:
    """A team's 150 GSM8K labels must not wipe out what the head knows about MMLU."""
    from router.evaluation import read_jsonl
    from router.replay.convert import convert_routing_rows

    rows = [r for r in read_jsonl(ROUTING / "train.jsonl") if r["benchmark"] == "gsm8k"][:150]
    records = tmp_path / "team.jsonl"
    converted = convert_routing_rows(rows, {"strong": "cloud", "weak": "local"})
    records.write_text("".join(json.dumps(r) + "\n" for r in converted))
    warm, scratch = tmp_path / "warm", tmp_path / "scratch"
    assert main(["train", "--records", str(records), "--out", str(warm)]) == 0
    assert main(["train", "--records", str(records), "--out", str(scratch), "--from-scratch"]) == 0
    mmlu = [str(r["prompt"]) for r in read_jsonl(ROUTING / "dev.jsonl") if r["benchmark"] == "mmlu"]
    mmlu = mmlu[::10]

    def ranks(model: Path | None) -> np.ndarray:
        scores, _ = Scorer.from_path(model, threads=1).score_batch(mmlu)
        return np.argsort(np.argsort(scores)).astype(np.float64)

    base = ranks(None)
    warm_corr = np.corrcoef(base, ranks(warm))[0, 1]
    scratch_corr = np.corrcoef(base, ranks(scratch))[0, 1]
    assert warm_corr > 0.9 > scratch_corr
