"""The shipped classifier through the real onnxruntime: shapes, batching, failures."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from router.cli import main
from router.scoring import InputSpec, Scorer, ScorerLoadError, TextEncoder, prompt_text
from router.scoring.inputs import length_groups
from router.scoring.model_dir import default_model_dir

PROMPTS = [
    "hi",
    "What is the capital of France?",
    "Prove that there are infinitely many primes, step by step.",
    "Write a Python function that merges two sorted lists. " * 6,
    "Translate 'good morning' into Spanish.",
    "Solve for x: 3x + 7 = 22, and explain each step.",
]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_path(threads=1)


def test_default_model_is_found_and_names_itself(scorer: Scorer) -> None:
    assert default_model_dir().name == scorer.model_name == "minilm-router-v2"
    assert scorer.provider == scorer.session.get_providers()[0]
    assert scorer.provider.endswith("ExecutionProvider")


def test_score_batch_shapes_and_ranges(scorer: Scorer) -> None:
    scores, emb = scorer.score_batch(PROMPTS)
    assert scores.shape == (len(PROMPTS),) and scores.dtype == np.float32
    assert emb.shape == (len(PROMPTS), 384) and emb.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    empty_scores, empty_emb = scorer.score_batch([])
    assert empty_scores.shape == (0,) and empty_emb.shape == (0, 384)


def test_embeddings_are_semantic(scorer: Scorer) -> None:
    _, emb = scorer.score_batch(
        [
            "How do I bake bread at home?",
            "What is a simple recipe for homemade bread?",
            "Who won the 1998 World Cup?",
        ]
    )
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


_SCENARIOS = (
    "For which of these two scenarios does the main character (who uses I/me/my) do "
    "something clearly morally wrong, according to ordinary moral standards in the US "
    "as of 2020? Scenario 1 | {} Scenario 2 | {}\n"
    "A. Wrong, Wrong\nB. Wrong, Not wrong\nC. Not wrong, Wrong\nD. Not wrong, Not wrong\nAnswer:"
)
MORAL_SCENARIOS = [
    _SCENARIOS.format(*pair)
    for pair in [
        ("I borrowed my neighbor's ladder and returned it.", "I posted my sister's diary online."),
        ("I kept the extra change the cashier gave me.", "I walked my dog before work."),
        ("I told my friend her haircut looked nice.", "I let the air out of my coworker's tires."),
    ]
]
SCHOOL_ALGEBRA = [
    "If 3x + 5 = 20, what is the value of 2x - 1?\nA. 7\nB. 9\nC. 11\nD. 13\nAnswer:",
    "What is the slope of the line through (2, 3) and (6, 11)?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
    "How many positive integers below 50 are multiples of 4 and 6?\nA. 2\nB. 4\nC. 6\nD. 8\nAnswer:",
]


def test_scores_follow_where_the_strong_model_helps(scorer: Scorer) -> None:
    # In the training data GPT-4 gains most over Mixtral on MMLU's moral scenarios
    # (+0.38 accuracy) and least on high-school mathematics (-0.29): hand-written
    # prompts of those two kinds (none from the data) must land on either side.
    moral = [float(scorer.score_batch([p])[0][0]) for p in MORAL_SCENARIOS]
    algebra = [float(scorer.score_batch([p])[0][0]) for p in SCHOOL_ALGEBRA]
    assert min(moral) > max(algebra) + 0.1, (moral, algebra)


def test_huge_prompt_is_cut_before_tokenizing(scorer: Scorer) -> None:
    text = "lorem ipsum dolor sit amet " * 20_000
    batch = scorer.encoder.encode([text, "short"])
    assert batch.input_ids.shape == (2, scorer.model.spec.max_tokens)
    assert batch.log_chars[0] == pytest.approx(np.log1p(len(text)))
    started = time.perf_counter()
    scores, _ = scorer.score_batch([text])
    assert time.perf_counter() - started < 2.0
    assert 0.0 <= scores[0] <= 1.0


def test_window_keeps_head_and_tail_tokens(scorer: Scorer) -> None:
    spec = InputSpec(max_tokens=12, tail_tokens=3, head_chars=10_000, tail_chars=10_000)
    encoder = TextEncoder.from_file(scorer.model.tokenizer_file, spec)
    words = " ".join(f"w{i}" for i in range(40))
    ids = encoder.encode([words]).input_ids[0].tolist()
    full = encoder.encode([" ".join(f"w{i}" for i in range(40))])
    assert len(ids) == 12 and ids[0] == 101 and ids[-1] == 102
    assert full.input_ids.shape[1] == 12
    head_only = TextEncoder.from_file(scorer.model.tokenizer_file, InputSpec())
    reference = head_only.encode([words]).input_ids[0].tolist()
    body = [t for t in reference if t not in (0, 101, 102)]
    assert ids[1:8] == body[:7] and ids[8:11] == body[-3:]


def test_prompt_text_uses_system_and_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at this"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
                {"type": "text", "text": "and describe it"},
            ],
        },
    ]
    assert prompt_text(messages) == "Be terse.\n\nLook at this\nand describe it"
    assert prompt_text([{"role": "user", "content": "hello"}]) == "hello"
    assert prompt_text([{"role": "user", "content": None}]) == ""
    assert prompt_text([]) == ""


def test_concurrent_requests_share_model_runs(scorer: Scorer) -> None:
    texts = [f"{PROMPTS[i % len(PROMPTS)]} (variant {i})" for i in range(48)]

    async def go() -> tuple[list[float | None], list[np.ndarray | None], int]:
        s = Scorer.from_path(threads=1, max_batch=16, max_wait_ms=5.0)
        await s.start()
        before = s.runs
        feats = await asyncio.gather(*(s.score(t) for t in texts))
        runs = s.runs - before
        await s.close()
        return [f.score for f in feats], [f.embedding for f in feats], runs

    scores, embeddings, runs = asyncio.run(go())
    assert runs < len(texts) / 4
    alone = [scorer.score_batch([t]) for t in texts]
    for got, emb, (ref, ref_emb) in zip(scores, embeddings, alone, strict=True):
        assert got is not None and emb is not None
        # Dynamic int8 quantizes activations with one scale per run, so a
        # prompt's outputs move slightly with its batch-mates (see MODEL_CARD.md).
        assert got == pytest.approx(float(ref[0]), abs=0.03)
        assert float(emb @ ref_emb[0]) > 0.97


def test_a_lone_request_runs_at_once(scorer: Scorer) -> None:
    async def go() -> float:
        s = Scorer.from_path(threads=1, max_wait_ms=500.0)
        await s.start()
        started = time.perf_counter()
        features = await s.score("hello there")
        elapsed = time.perf_counter() - started
        await s.close()
        assert features.scored
        return elapsed

    assert asyncio.run(go()) < 0.4


def test_missing_model_dir_is_a_clear_load_error(tmp_path: Path) -> None:
    with pytest.raises(ScorerLoadError, match="does not exist"):
        Scorer.from_path(tmp_path / "nope")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "tokenizer.json").write_text("{}")
    with pytest.raises(ScorerLoadError, match=r"lacks model\.onnx, classifier\.json"):
        Scorer.from_path(tmp_path / "partial")


def _copy_model(dst: Path) -> Path:
    src = default_model_dir()
    dst.mkdir()
    for name in ("model.onnx", "tokenizer.json", "classifier.json"):
        shutil.copyfile(src / name, dst / name)
    return dst


def test_corrupt_model_is_a_clear_load_error(tmp_path: Path) -> None:
    model = _copy_model(tmp_path / "m")
    (model / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ScorerLoadError, match="cannot load classifier"):
        Scorer.from_path(model)
    (model / "classifier.json").write_text('{"input": {"max_tokens": 9999}}')
    with pytest.raises(ScorerLoadError, match=r"classifier\.json is invalid"):
        Scorer.from_path(model)


def test_a_failing_run_returns_features_with_error(tmp_path: Path) -> None:
    model = _copy_model(tmp_path / "m")
    # A token id past the end of the embedding table makes onnxruntime's Gather fail.
    vocab = {"[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "boom": 10**6}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(model / "tokenizer.json"))
    broken = Scorer.from_path(model, threads=1)

    async def go() -> tuple[str | None, float | None, str | None]:
        await broken.start()
        failed, fine = await asyncio.gather(broken.score("boom"), broken.score("fine"))
        await broken.close()
        closed = await broken.score("fine")
        return failed.error, fine.score if fine.error is None else None, closed.error

    error, _, closed_error = asyncio.run(go())
    assert error is not None and error.startswith("scoring failed:")
    assert closed_error == "scorer is closed"


def test_score_command_writes_id_and_score(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS))
    )
    out = tmp_path / "out.jsonl"
    assert main(["score", "--in", str(src), "--out", str(out), "--batch-size", "4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(len(PROMPTS))]
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)


def test_length_groups_bound_padding() -> None:
    lengths = [10, 12, 11, 50, 52, 200, 30, 31]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        padded = max(lengths[i] for i in g) * len(g)
        assert padded <= 1.25 * sum(lengths[i] for i in g)
    assert length_groups([]) == []


def test_unavailable_gpu_provider_falls_back_to_cpu() -> None:
    from router.scoring.session import _gpu_driver_present

    if _gpu_driver_present():
        pytest.skip("a GPU is present: CUDA would really be used")
    # Asking for CUDA on a host without a GPU (whether onnxruntime-gpu or the CPU
    # build is installed) must still give a working CPU session.
    scorer = Scorer.from_path(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert scorer.provider == "CPUExecutionProvider"
    scores, _ = scorer.score_batch(["still scored"])
    assert 0.0 <= scores[0] <= 1.0
