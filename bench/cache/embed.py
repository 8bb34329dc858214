"""Embeddings for the benchmark: the real classifier when it is there, else a stand-in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "load_embedder"]

Matrix = npt.NDArray[np.float32]
Embedder = Callable[[list[str]], Matrix]

_DIM = 384


def _stand_in(texts: list[str]) -> Matrix:
    """Hashed character 3-5-grams and words, sublinear counts, L2-normalised.

    Lexical by nature, so near misses (one number or word changed) score higher
    than with a real sentence encoder: a harder test for the guards, an easier one
    for benign variants that keep every word.
    """
    out = np.zeros((len(texts), _DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        text = " ".join(text.casefold().split())
        counts: dict[int, float] = {}
        grams = [w for w in re.findall(r"\w+", text)]
        padded = f" {text} "
        for n in (3, 4, 5):
            grams += [padded[i : i + n] for i in range(len(padded) - n + 1)]
        for gram in grams:
            h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
            index, sign = h % _DIM, 1.0 if (h >> 63) & 1 else -1.0
            counts[index] = counts.get(index, 0.0) + sign
        for index, value in counts.items():
            out[row, index] = np.sign(value) * np.log1p(abs(value))
        out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
    return out


def load_embedder() -> tuple[str, Embedder]:
    """(description, embed function). The real classifier if it loads, else the stand-in."""
    try:
        from router.scoring import Scorer

        scorer = Scorer.from_path()
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        return (
            f"STAND-IN hashed char n-gram vectors (real classifier unavailable: {reason})",
            _stand_in,
        )

    def embed(texts: list[str]) -> Matrix:
        rows = []
        for start in range(0, len(texts), 64):
            _, embeddings = scorer.score_batch(texts[start : start + 64])
            rows.append(np.asarray(embeddings, dtype=np.float32))
        matrix = np.concatenate(rows) if rows else np.zeros((0, _DIM), np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(norms, 1e-9)).astype(np.float32)

    return f"real classifier {scorer.model_name} ({scorer.provider})", embed
