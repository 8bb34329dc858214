"""The shipped classifier's score and embedding for every routing-data prompt, cached.

Embedding 12k prompts takes minutes on a small CPU; every other step of the
adaptation benchmark is a few numpy solves, so the encoder pass runs once per
(model, data file) and lands in `bench/results/adaptation/` (gitignored).
Each prompt is scored alone (`Scorer.score_each`), as a lone live request is.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.evaluation import read_jsonl
from router.scoring import Scorer
from router.scoring.model_dir import default_model_dir

__all__ = ["Features", "load_features"]

CACHE = Path(__file__).resolve().parents[1] / "results" / "adaptation"


@dataclass(frozen=True)
class Features:
    records: list[dict[str, object]]
    scores: np.ndarray  # [n] the shipped model's score
    embeddings: np.ndarray  # [n, 384]


def _key(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_features(data: str | Path, model: str | Path | None = None) -> Features:
    data = Path(data)
    model_dir = Path(model) if model is not None else default_model_dir()
    records = list(read_jsonl(data))
    path = CACHE / f"{data.stem}-{_key(data, model_dir / 'model.onnx')}.npz"
    if path.exists():
        cached = np.load(path)
        return Features(records, cached["scores"], cached["embeddings"])
    scorer = Scorer.from_path(model_dir, threads=1)
    texts = [str(r["prompt"]) for r in records]
    scores = np.zeros(len(texts), np.float32)
    embeddings = np.zeros((len(texts), scorer.model.embedding_dim), np.float32)
    step = 256
    for start in range(0, len(texts), step):
        s, e = scorer.score_each(texts[start : start + step])
        scores[start : start + step], embeddings[start : start + step] = s, e
        print(f"  {data.name}: scored {start + len(s)}/{len(texts)}", file=sys.stderr, flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, embeddings=embeddings)
    return Features(records, scores, embeddings)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        f = load_features(name)
        print(name, len(f.records), float(f.scores.mean()))
