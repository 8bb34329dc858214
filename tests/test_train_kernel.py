"""The kernel correction of `router train`: its choice, and its ONNX form matching numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train import synthetic_records

from router.cli import main
from router.replay.kernel import (
    KernelCorrection,
    KernelGrid,
    choose_correction,
    kernel_offsets,
    kernel_targets,
    rank_gain,
)
from router.replay.onnxhead import HeadSwapError, kernel_head, warm_head
from router.replay.records import load_records
from router.replay.training import Example, fit_adapted, fit_warm, train
from router.scoring import Scorer
from router.scoring.model_dir import default_model_dir

SMALL = KernelGrid(betas=(3.0, 8.0), shrinks=(1.0,), scales=(4.0, 16.0), repeats=1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clusters(n: int, rng: np.random.Generator, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings around 8 centres, and each record's centre."""
    centres = _unit(rng.normal(size=(8, d)))
    which = rng.integers(0, 8, n)
    return _unit(centres[which] + 0.3 * rng.normal(size=(n, d))), which


def test_kernel_offsets_shrink_to_zero_far_from_the_records() -> None:
    anchors = _unit(np.eye(4)[:2])
    weights = np.asarray([1.0, -1.0])
    # On top of an anchor: its weight, shrunk by `shrink` against the kernel mass.
    on = kernel_offsets(anchors[:1] @ anchors.T, weights, beta=50.0, shrink=1.0)
    assert on[0] == pytest.approx(0.5, abs=1e-6)
    # Far from every record: no correction.
    far = kernel_offsets(_unit(np.eye(4)[2:3]) @ anchors.T, weights, beta=50.0, shrink=1.0)
    assert abs(far[0]) < 1e-9


def test_targets_say_which_answer_was_better() -> None:
    examples = [
        Example("a", "x", 1.0, "g", 1.0, 0.0),
        Example("b", "x", 0.0, "g", 0.0, 1.0),  # the weak model was better: -1
        Example("c", "x", 0.0, "g", 1.0, 1.0),
        Example("d", "x", 1.0, "g", None, 0.2),  # one rating: the label
        Example("e", "x", 0.0, "g", None, 0.9),
        Example("f", "x", 1.0, "g", 8.0, 3.0),  # judge points: only the sign counts
    ]
    assert kernel_targets(examples).tolist() == [1.0, -1.0, 0.0, 1.0, 0.0, 1.0]


def test_rank_gain_rewards_ranking_the_strong_needed_first() -> None:
    t = np.asarray([1.0, 0.0, -1.0]) - 0.0
    good, bad = rank_gain(np.asarray([3.0, 2.0, 1.0]), t), rank_gain(np.asarray([1.0, 2.0, 3.0]), t)
    assert good.mean() > 0 > bad.mean()


def test_cross_validation_keeps_the_kernel_only_where_there_is_local_structure() -> None:
    rng = np.random.default_rng(0)
    emb, which = _clusters(400, rng)
    # Half the clusters need the strong model 60% of the time, half 5%: local structure
    # that a base head knowing nothing (random scores) cannot see.
    rate = np.where(which % 2 == 0, 0.6, 0.05)
    y = (rng.random(400) < rate).astype(np.float64)
    base = rng.normal(size=400)
    noise_head = dict(enumerate(rng.normal(size=400)))

    def oof(folds: np.ndarray, factor: float) -> np.ndarray:
        # The linear correction's held-out logits: a head that learned nothing.
        return np.asarray([noise_head[i] for i in range(len(folds))])

    kept = choose_correction(emb, y, oof, SMALL)
    assert kept.params is not None and kept.gain > 2 * kept.stderr
    # The same embeddings with labels that ignore them: no correction. (Noise
    # clears the 2-standard-error gate now and then; these seeds are fixed.)
    noise = (rng.random(400) < 0.3).astype(np.float64)
    dropped = choose_correction(emb, noise, oof, SMALL)
    assert dropped.params is None and dropped.l2_factor == 1.0
    # fit_adapted serves what it chose: the strong-needed clusters score higher.
    head = fit_adapted(base, emb, emb, y, y, l2=10.0, grid=SMALL)
    assert head.kernel is not None
    logit = head.logit(base, emb, emb)
    assert logit[which % 2 == 0].mean() > logit[which % 2 == 1].mean() + 0.5


def test_without_a_grid_fit_adapted_is_fit_warm() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    base = x[:, 0]
    y = (rng.random(200) < 0.3).astype(np.float64)
    head = fit_adapted(base, x, _unit(x), y, y, l2=10.0, grid=None)
    plain = fit_warm(base, x, y, l2=10.0)
    assert head.kernel is None and head.choice is None
    np.testing.assert_allclose(head.logit(base, x, _unit(x)), plain.logit(base, x))


def test_kernel_head_in_onnx_matches_numpy(tmp_path: Path) -> None:
    """Serving-time scores (onnxruntime) are what training computed (numpy)."""
    base_dir = default_model_dir()
    texts = ["hello there", "Prove that sqrt(2) is irrational.", "Summarise the French revolution"]
    base = Scorer.from_path(base_dir, threads=1)
    old, emb = base.score_batch(texts)
    anchor_texts = ["what is 2 + 2", "tell me about Napoleon", "hi", "integrate x^2 dx"]
    _, anchors = base.score_batch(anchor_texts)
    rng = np.random.default_rng(2)
    kernel = KernelCorrection.fit(anchors, rng.normal(size=4), beta=5.0, shrink=0.5, scale=3.0)
    model = base_dir.joinpath("model.onnx").read_bytes()
    # A warm round, then the kernel, then a second kernel: corrections stack.
    model = warm_head(model, 0.9, np.zeros(385), 0.1)
    model = kernel_head(model, kernel.anchors, kernel.weights, kernel.beta, kernel.shrink)
    model = kernel_head(model, kernel.anchors, kernel.weights, kernel.beta, kernel.shrink)
    out = tmp_path / "team"
    out.mkdir()
    for name in ("tokenizer.json", "classifier.json"):
        (out / name).write_bytes(base_dir.joinpath(name).read_bytes())
    (out / "model.onnx").write_bytes(model)
    new, new_emb = Scorer.from_path(out, threads=1).score_batch(texts)
    np.testing.assert_array_equal(new_emb, emb)  # the encoder is untouched
    old_logit = np.log(old / (1 - old)).astype(np.float64)
    expected = 1 / (1 + np.exp(-(0.9 * old_logit + 0.1 + 2 * kernel.offset(emb))))
    np.testing.assert_allclose(new, expected, atol=1e-4)
    assert np.abs(kernel.offset(emb)).max() > 0.05  # the check is not vacuous
    with pytest.raises(HeadSwapError):
        kernel_head(model, kernel.anchors, np.zeros(3), 5.0, 0.5)


def test_router_train_serves_the_kernel_it_fitted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kernel travels in the ONNX graph and scores what numpy fitted."""
    records = synthetic_records(tmp_path / "records.jsonl", 120)
    # One candidate and no gate: the kernel is kept whatever CV says, so the
    # artifact path is exercised.
    forced = KernelGrid(
        betas=(5.0,), shrinks=(1.0,), scales=(4.0,), l2_factors=(1.0,), repeats=1, margin=-1e9
    )
    out = tmp_path / "team"
    result = train(load_records(records).records, out, grid=forced)
    kernel = result.summary["kernel"]
    assert kernel["kept"] and kernel["anchors"] == result.summary["train"]
    assert result.summary["onnx_head_max_diff"] < 1e-3  # serving computes what training fitted
    assert "kernel correction" in json.loads((out / "classifier.json").read_text())["score"]
    # The CLI: the default grid decides (and says so), --no-kernel skips it.
    cli_out = tmp_path / "cli"
    assert main(["train", "--records", str(records), "--out", str(cli_out)]) == 0
    assert "linear correction" in capsys.readouterr().out
    assert json.loads((cli_out / "train-report.json").read_text())["kernel"]["cv_records"] > 0
    plain = tmp_path / "plain"
    assert main(["train", "--records", str(records), "--out", str(plain), "--no-kernel"]) == 0
    assert json.loads((plain / "train-report.json").read_text())["kernel"] is None
