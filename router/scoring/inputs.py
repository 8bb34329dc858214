"""Turn prompt text into the classifier's token arrays, with bounded cost.

The tokenizer walks the whole string even when asked to truncate (about 30 ms
for 100k characters), so long prompts are cut in characters first. What the
model sees is the head and the tail of the prompt: instructions tend to sit at
the start, the actual question (and MMLU's options) at the end.

A text too long for the token window is not tokenized whole either: only a head
piece and a tail piece, cut at spaces, each long enough for its share of the
window. The WordPiece tokenizer's normalizer works character by character and
its pre-tokenizer splits at every space, so the tokens of a text cut at a space
are the tokens of the two pieces put together: the window comes out the same
as from the whole text. A piece that yields too few tokens (a text of long
space or control runs) falls back to the whole text, and so does every text for
a tokenizer of another kind (byte-level BPE keeps a space with the next word).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

__all__ = ["Batch", "InputSpec", "TextEncoder", "clip_text", "length_groups", "splits_at_spaces"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class InputSpec:
    """How much of a prompt the model sees. Stored in the model dir's config."""

    max_tokens: int = 256
    tail_tokens: int = 64
    head_chars: int = 2000
    tail_chars: int = 1000

    def __post_init__(self) -> None:
        if not 4 <= self.max_tokens <= 512:
            raise ValueError("max_tokens must be in [4, 512]")
        if not 0 <= self.tail_tokens < self.max_tokens - 2:
            raise ValueError("tail_tokens must leave room for the head and special tokens")


@dataclass(frozen=True)
class Batch:
    input_ids: IntArray
    attention_mask: IntArray
    #: log1p of each prompt's full length in characters, before any cut.
    log_chars: FloatArray

    def feeds(self) -> dict[str, npt.NDArray[np.generic]]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "log_chars": self.log_chars,
        }


#: Characters a piece gets per token it must yield. Dev and train prompts need
#: at most 6.5 (99th percentile 5.6 for the head's tokens, 6.1 for the tail's);
#: a piece that yields too few only costs a second, whole-text tokenizer call.
CHARS_PER_TOKEN = 7


def splits_at_spaces(tokenizer: Tokenizer) -> bool:
    """Whether the tokens of a text cut at a space are those of its two pieces, joined.

    True for BERT's WordPiece tokenizer: its normalizer maps characters one by
    one (a space stops NFD's reordering of accents), its pre-tokenizer splits at
    every space, and no added token holds a space.
    """
    try:
        config = json.loads(tokenizer.to_str())
    except (ValueError, TypeError):
        return False
    normalizer = config.get("normalizer") or {"type": "BertNormalizer"}
    pre_tokenizer = config.get("pre_tokenizer") or {}
    added = config.get("added_tokens") or []
    return bool(
        normalizer.get("type") == "BertNormalizer"
        and pre_tokenizer.get("type") == "BertPreTokenizer"
        and (config.get("model") or {}).get("type") == "WordPiece"
        and not any(ch.isspace() for token in added for ch in str(token.get("content", "")))
    )


def clip_text(text: str, spec: InputSpec) -> str:
    """Keep the first `head_chars` and last `tail_chars` characters."""
    if len(text) <= spec.head_chars + spec.tail_chars:
        return text
    return text[: spec.head_chars] + " " + text[len(text) - spec.tail_chars :]


class TextEncoder:
    """A WordPiece tokenizer plus the head-and-tail token window."""

    def __init__(self, tokenizer: Tokenizer, spec: InputSpec) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.spec = spec
        self._cls = self._token_id("[CLS]")
        self._sep = self._token_id("[SEP]")
        self._body = spec.max_tokens - 2
        self._head = self._body - spec.tail_tokens
        self._head_chars = self._head * CHARS_PER_TOKEN
        self._tail_chars = spec.tail_tokens * CHARS_PER_TOKEN
        self._split = splits_at_spaces(tokenizer)

    @classmethod
    def from_file(cls, path: str | Path, spec: InputSpec) -> TextEncoder:
        return cls(Tokenizer.from_file(str(path)), spec)

    def _token_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token} token")
        return int(token_id)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        # The ids alone: offsets are not needed (tokenizers >= 0.20 skips them).
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def _window(self, ids: list[int]) -> list[int]:
        if len(ids) > self._body:
            tail = self.spec.tail_tokens
            return [self._cls, *ids[: self._head], *ids[len(ids) - tail :], self._sep]
        return [self._cls, *ids, self._sep]

    def _pieces(self, text: str) -> tuple[str, str] | None:
        """A head piece and a tail piece of `text`, cut at spaces, or None to take it whole."""
        if not self._split or len(text) <= self._head_chars + self._tail_chars:
            return None
        cut = text.find(" ", self._head_chars)
        if cut < 0:
            return None
        if not self._tail_chars:
            return text[:cut], ""
        start = text.rfind(" ", cut, len(text) - self._tail_chars + 1)
        if start < 0:
            return None
        return text[:cut], text[start:]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, cut and windowed, with [CLS] and [SEP]."""
        pieces: list[str] = []
        plan: list[tuple[str, bool]] = []  # (clipped text, tokenized as head + tail pieces)
        for text in texts:
            clipped = clip_text(text, self.spec)
            halves = self._pieces(clipped)
            if halves is None:
                pieces.append(clipped)
            else:
                pieces.extend(halves)
            plan.append((clipped, halves is not None))
        ids = self._ids(pieces)
        rows: list[list[int]] = []
        at, head, tail = 0, self._head, self.spec.tail_tokens
        for clipped, split in plan:
            if not split:
                rows.append(self._window(ids[at]))
                at += 1
                continue
            first, last = ids[at], ids[at + 1]
            at += 2
            if len(first) >= head and len(last) >= tail:
                # The whole text has at least head + tail tokens: its window is
                # these pieces' ends (with exactly that many, both are all of it).
                rows.append([self._cls, *first[:head], *last[len(last) - tail :], self._sep])
            else:
                rows.append(self._window(self._ids([clipped])[0]))
        return rows

    @staticmethod
    def pack(rows: Sequence[list[int]], texts: Sequence[str]) -> Batch:
        """Right-pad `rows` into one batch; `texts` give the full lengths."""
        width = max(map(len, rows), default=2)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            n = len(row)
            input_ids[i, :n] = row
            attention_mask[i, :n] = 1
        # float32 in, float32 out: no second copy.
        log_chars = np.log1p(np.fromiter(map(len, texts), np.float32, len(texts)))
        return Batch(input_ids, attention_mask, log_chars)

    def encode(self, texts: Sequence[str]) -> Batch:
        return self.pack(self.tokenize(texts), texts)


def length_groups(lengths: Sequence[int], max_padding: float = 0.25) -> list[list[int]]:
    """Split indices into runs of similar length, shortest first.

    A batch is padded to its longest row, so one long prompt among short ones
    multiplies the work. A group grows while its padded size stays within
    `max_padding` of its real tokens.
    """
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
