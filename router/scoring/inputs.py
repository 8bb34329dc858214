"""Turn prompt text into the classifier's token arrays, with bounded cost.

The tokenizer walks the whole string even when asked to truncate (about 30 ms
for 100k characters), so long prompts are cut in characters first. What the
model sees is the head and the tail of the prompt: instructions tend to sit at
the start, the actual question (and MMLU's options) at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

__all__ = ["Batch", "InputSpec", "TextEncoder", "clip_text", "length_groups"]

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

    @classmethod
    def from_file(cls, path: str | Path, spec: InputSpec) -> TextEncoder:
        return cls(Tokenizer.from_file(str(path)), spec)

    def _token_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token} token")
        return int(token_id)

    def _window(self, ids: list[int]) -> list[int]:
        body = self.spec.max_tokens - 2
        if len(ids) > body:
            tail = self.spec.tail_tokens
            ids = ids[: body - tail] + (ids[len(ids) - tail :] if tail else [])
        return [self._cls, *ids, self._sep]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, cut and windowed, with [CLS] and [SEP]."""
        clipped = [clip_text(t, self.spec) for t in texts]
        encodings = self._tokenizer.encode_batch(clipped, add_special_tokens=False)
        return [self._window(e.ids) for e in encodings]

    @staticmethod
    def pack(rows: Sequence[list[int]], texts: Sequence[str]) -> Batch:
        """Right-pad `rows` into one batch; `texts` give the full lengths."""
        width = max((len(r) for r in rows), default=2)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        log_chars = np.log1p(np.asarray([len(t) for t in texts], dtype=np.float32))
        return Batch(input_ids, attention_mask, log_chars.astype(np.float32))

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
