"""Frozen-encoder features for the routing data, cached on disk between runs."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from classifiers.encoder import Bert
from router.scoring.inputs import TextEncoder

__all__ = ["embed_texts"]


def _batches(texts: Sequence[str], size: int) -> list[list[int]]:
    # Similar lengths in one batch keep padding (and time) down.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.no_grad()
def embed_texts(
    bert: Bert, encoder: TextEncoder, texts: Sequence[str], cache: Path | None = None
) -> np.ndarray:
    """[n, hidden] normalised embeddings, from `cache` when it holds these texts."""
    key = hashlib.sha256("\x00".join(texts).encode() + repr(encoder.spec).encode()).hexdigest()
    path = cache / f"emb-{key[:16]}.npy" if cache else None
    if path and path.exists():
        return np.load(path)
    bert.eval()
    out = np.zeros((len(texts), bert.hidden), dtype=np.float32)
    batches = _batches(texts, 32)
    for n, idx in enumerate(batches):
        batch = encoder.encode([texts[i] for i in idx])
        emb = bert(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask))
        out[idx] = emb.numpy()
        if n % 20 == 0:
            print(f"  embedded {n * 32}/{len(texts)}", file=sys.stderr, flush=True)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out
