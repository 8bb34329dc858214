"""The scoring hot path gives what it gave before: token ids, arrays, scores, embeddings.

The reference below is the implementation as it was before the tokenizer got
only head and tail pieces of long texts (issue #14): the whole clipped text
through `encode_batch`, the window cut from its ids, arrays padded row by row,
and a session made with the settings of that time.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from router.scoring import InputSpec, Scorer, TextEncoder, clip_text
from router.scoring.inputs import CHARS_PER_TOKEN, splits_at_spaces

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "dev.jsonl"
needs_dev = pytest.mark.skipif(
    not DEV.exists(), reason="routing data not laid out next to the repo"
)


# -- the reference: the code before the change ----------------------------------------


class Reference:
    def __init__(self, tokenizer_file: Path, spec: InputSpec) -> None:
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.spec = spec
        self.cls = self.tokenizer.token_to_id("[CLS]")
        self.sep = self.tokenizer.token_to_id("[SEP]")

    def window(self, ids: list[int]) -> list[int]:
        body = self.spec.max_tokens - 2
        if len(ids) > body:
            tail = self.spec.tail_tokens
            ids = ids[: body - tail] + (ids[len(ids) - tail :] if tail else [])
        return [self.cls, *ids, self.sep]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        clipped = [clip_text(t, self.spec) for t in texts]
        encodings = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        return [self.window(e.ids) for e in encodings]


def reference_pack(rows: Sequence[list[int]], texts: Sequence[str]) -> dict[str, np.ndarray]:
    width = max((len(r) for r in rows), default=2)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    log_chars = np.log1p(np.asarray([len(t) for t in texts], dtype=np.float32))
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "log_chars": log_chars.astype(np.float32),
    }


def reference_groups(lengths: Sequence[int], max_padding: float = 0.25) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if current and n * (len(current) + 1) > (1.0 + max_padding) * (real + n):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        groups.append(current)
    return groups


def reference_session(model: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


def reference_run(
    ref: Reference, session: ort.InferenceSession, texts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's `_run` as it was: length groups, one model run each."""
    rows = ref.tokenize(texts)
    scores = np.zeros(len(texts), np.float32)
    embeddings = np.zeros((len(texts), 384), np.float32)
    for idx in reference_groups([len(r) for r in rows]):
        feeds = reference_pack([rows[i] for i in idx], [texts[i] for i in idx])
        score, embedding = session.run(["score", "embedding"], feeds)
        scores[idx] = np.asarray(score, dtype=np.float32).reshape(len(idx))
        embeddings[idx] = np.asarray(embedding, dtype=np.float32).reshape(len(idx), -1)
    return scores, embeddings


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_path(threads=1)


@pytest.fixture(scope="module")
def reference(scorer: Scorer) -> Reference:
    return Reference(scorer.model.tokenizer_file, scorer.model.spec)


def dev_prompts() -> list[str]:
    with open(DEV, encoding="utf-8") as fh:
        return [json.loads(line)["prompt"] for line in fh]


def long_mixes(prompts: list[str], n: int, seed: int = 0) -> list[str]:
    """Long texts made of dev prompts run together (dev has few past the window)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = rng.sample(prompts, rng.randint(2, 12))
        out.append(rng.choice([" ", "\n\n", "\n", "  "]).join(parts))
    return out


def assert_same_arrays(encoder: TextEncoder, ref: Reference, texts: list[str]) -> None:
    rows = encoder.tokenize(texts)
    expected = ref.tokenize(texts)
    for text, got, want in zip(texts, rows, expected, strict=True):
        assert got == want, text[:200]
    batch = encoder.pack(rows, texts).feeds()
    want_feeds = reference_pack(expected, texts)
    for name, want_array in want_feeds.items():
        assert batch[name].dtype == want_array.dtype, name
        np.testing.assert_array_equal(batch[name], want_array)


def pieces_used(encoder: TextEncoder, texts: list[str]) -> int:
    return sum(encoder._pieces(clip_text(t, encoder.spec)) is not None for t in texts)


# -- token ids and arrays ---------------------------------------------------------------


def test_the_shipped_tokenizer_splits_at_spaces(scorer: Scorer) -> None:
    assert splits_at_spaces(scorer.encoder._tokenizer)


@needs_dev
def test_every_dev_prompt_tokenizes_as_before(scorer: Scorer, reference: Reference) -> None:
    prompts = dev_prompts()
    assert len(prompts) > 3000
    texts = prompts + long_mixes(prompts, 600)
    # The head-and-tail pieces must really be exercised, on real prompts too.
    assert pieces_used(scorer.encoder, prompts) >= 20
    assert pieces_used(scorer.encoder, texts) >= 400
    for start in range(0, len(texts), 256):
        assert_same_arrays(scorer.encoder, reference, texts[start : start + 256])


# Words that stress the cut: accents and combining marks (NFD), Greek capital
# sigma (lowercased by context in some libraries), CJK (split per character),
# control and zero-width characters (dropped by the normalizer, joining words),
# other Unicode spaces, special-token strings, a word past WordPiece's 100
# characters, punctuation runs, digits and emoji.
WORDS = [
    "the",
    "question",
    "Answer:",
    "A.",
    "B)",
    "x=3",
    "2024",
    "naïve",
    "CAFÉ",
    "e\u0301",
    "\u0301",
    "ΟΔΟΣ",
    "Σ",
    "中文",
    "日本語です",
    "한국어",
    "\x1c",
    "\x00",
    "\u200b",
    "\u200d",
    "\u00ad",
    "\ufffd",
    "[MASK]",
    "[CLS]",
    "[UNK]",
    "...",
    "!?",
    "—",
    "'s",
    "l" * 120,
    "🙂",
    "ǅ",
    "ﬁ",
    "Ⅻ",
    "İ",
    "ß",
    "ﬀ",
    "\u0130",
]
SEPARATORS = [
    " ",
    " ",
    " ",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\u00a0",
    "\u3000",
    "\u2028",
    "",
]

token = st.one_of(
    st.sampled_from(WORDS),
    st.text(min_size=1, max_size=12),
    st.text(alphabet="abcdefghij ", min_size=1, max_size=30),
)
piece = st.tuples(token, st.sampled_from(SEPARATORS)).map("".join)


@functools.cache
def small_encoder(tokenizer_file: Path, spec: InputSpec) -> tuple[TextEncoder, Reference]:
    return TextEncoder.from_file(tokenizer_file, spec), Reference(tokenizer_file, spec)


SMALL = InputSpec(max_tokens=24, tail_tokens=6, head_chars=400, tail_chars=200)
NO_TAIL = InputSpec(max_tokens=16, tail_tokens=0, head_chars=10_000, tail_chars=10_000)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(piece, min_size=40, max_size=200).map("".join), st.sampled_from([SMALL, NO_TAIL]))
def test_generated_texts_tokenize_as_before(scorer: Scorer, text: str, spec: InputSpec) -> None:
    # A small window makes the head and tail pieces kick in at a few hundred
    # characters, so that hypothesis reaches them with short, varied strings.
    encoder, ref = small_encoder(scorer.model.tokenizer_file, spec)
    assert_same_arrays(encoder, ref, [text, text.upper(), text.replace(" ", "  ")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(piece, min_size=200, max_size=900).map("".join))
def test_long_generated_texts_tokenize_as_before(
    scorer: Scorer, reference: Reference, text: str
) -> None:
    # The shipped window: texts past its 1,778 characters go in as two pieces.
    assert_same_arrays(scorer.encoder, reference, [text, text * 3, "short", text[::-1]])


def test_pieces_that_yield_too_few_tokens_fall_back(scorer: Scorer, reference: Reference) -> None:
    spec = scorer.model.spec
    sparse = ("a" + " " * 40) * 200  # 41 characters a token: both pieces come up short
    dense = "word " * 2000
    head_only_short = "a" + " " * 3000 + "tail " * 400
    texts = [sparse, dense, head_only_short, "x" * 5000, "y " * 50_000]
    assert spec.max_tokens - 2 - spec.tail_tokens == 190
    assert len(clip_text(sparse, spec)) > 190 * CHARS_PER_TOKEN
    assert pieces_used(scorer.encoder, texts) >= 3
    assert_same_arrays(scorer.encoder, reference, texts)


def test_other_tokenizers_take_texts_whole() -> None:
    from tokenizers import models, pre_tokenizers

    wordlevel = Tokenizer(models.WordLevel({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, unk_token="[UNK]"))
    wordlevel.pre_tokenizer = pre_tokenizers.Whitespace()
    assert not splits_at_spaces(wordlevel)
    encoder = TextEncoder(wordlevel, InputSpec(max_tokens=8, tail_tokens=2))
    assert encoder._pieces("w " * 1000) is None


# -- scores and embeddings --------------------------------------------------------------


@needs_dev
def test_scores_and_embeddings_are_unchanged(scorer: Scorer) -> None:
    prompts = dev_prompts()
    rng = random.Random(14)
    longest = sorted(prompts, key=len)[-30:]  # the ones that take the two-piece path
    texts = longest + rng.sample(prompts, 150) + long_mixes(prompts, 20, seed=1)
    ref = Reference(scorer.model.tokenizer_file, scorer.model.spec)
    session = reference_session(scorer.model.model_file)

    scores, embeddings = scorer.score_batch(texts)
    # score_batch: runs of max_batch prompts ordered by length; the same chunks here.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    want_scores = np.zeros(len(texts), np.float32)
    want_embeddings = np.zeros((len(texts), 384), np.float32)
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        want_scores[idx], want_embeddings[idx] = reference_run(
            ref, session, [texts[i] for i in idx]
        )
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(embeddings, want_embeddings, rtol=0, atol=1e-6)

    alone = texts[:15] + texts[30:45] + texts[-10:]  # a lone request: one prompt a run
    scores, embeddings = scorer.score_each(alone)
    for i, text in enumerate(alone):
        want_score, want_embedding = reference_run(ref, session, [text])
        assert abs(float(scores[i]) - float(want_score[0])) <= 1e-6
        np.testing.assert_allclose(embeddings[i], want_embedding[0], rtol=0, atol=1e-6)
