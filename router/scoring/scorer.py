"""The in-process classifier: one ONNX pass gives a routing score and an embedding."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort

from router.features import Features
from router.scoring.batcher import BatchResult, MicroBatcher
from router.scoring.inputs import TextEncoder, length_groups
from router.scoring.model_dir import ModelDir, ScorerLoadError, default_model_dir
from router.scoring.session import create_session

__all__ = ["Scorer"]

_WARMUP_TEXTS = ["hello", "Explain, step by step, how a hash map handles collisions. " * 8]


class Scorer:
    """Scores prompts with the classifier in `model_dir`.

    `score()` never raises for a model failure: it returns `Features(error=...)`
    so that the request can still be routed by the rest of the policy.
    """

    def __init__(
        self,
        model: ModelDir,
        session: ort.InferenceSession,
        encoder: TextEncoder,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
    ) -> None:
        self.model = model
        self.model_name = model.name
        self.session = session
        self.encoder = encoder
        self.provider: str = session.get_providers()[0]
        self._batcher = MicroBatcher(self._run, max_batch=max_batch, max_wait_ms=max_wait_ms)
        self._closed = False

    @classmethod
    def from_path(
        cls,
        model_dir: str | Path | None = None,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> Scorer:
        """Load a classifier directory (None: the shipped default).

        Raises ScorerLoadError with the reason when the directory is unusable.
        """
        model = ModelDir.load(default_model_dir() if model_dir is None else model_dir)
        try:
            session = create_session(model.model_file, threads=threads, providers=providers)
            encoder = TextEncoder.from_file(model.tokenizer_file, model.spec)
        except Exception as exc:
            raise ScorerLoadError(f"cannot load classifier {model.path}: {exc}") from exc
        return cls(model, session, encoder, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @property
    def runs(self) -> int:
        """Model runs made by the micro-batcher so far."""
        return self._batcher.runs

    def _run(self, texts: list[str]) -> BatchResult:
        rows = self.encoder.tokenize(texts)
        scores = np.zeros(len(texts), np.float32)
        embeddings = np.zeros((len(texts), self.model.embedding_dim), np.float32)
        # Similar lengths per model run: padding a short prompt to a long
        # batch-mate costs more than the extra run.
        for idx in length_groups([len(r) for r in rows]):
            batch = TextEncoder.pack([rows[i] for i in idx], [texts[i] for i in idx])
            score, embedding = self.session.run(["score", "embedding"], batch.feeds())
            scores[idx] = np.asarray(score, dtype=np.float32).reshape(len(idx))
            embeddings[idx] = np.asarray(embedding, dtype=np.float32).reshape(len(idx), -1)
        return scores, embeddings

    def score_batch(self, texts: list[str]) -> BatchResult:
        """Scores [n] and embeddings [n, d] for `texts`, in the calling thread.

        Runs in chunks of `max_batch` prompts of similar length: one huge run
        would pad everything to the longest prompt and hold n x tokens^2
        attention scores in memory.
        """
        scores = np.zeros(len(texts), np.float32)
        embeddings = np.zeros((len(texts), self.model.embedding_dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        size = self._batcher.max_batch
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            scores[idx], embeddings[idx] = self._run([texts[i] for i in idx])
        return scores, embeddings

    def score_each(self, texts: list[str]) -> BatchResult:
        """Like `score_batch`, one prompt a run: the figures a lone live request gets.

        int8 activations are scaled per run, so batch-mates nudge a score by up to
        ~0.02; evaluation and calibration use this so that their figures do not
        depend on how prompts happened to be grouped.
        """
        scores = np.zeros(len(texts), np.float32)
        embeddings = np.zeros((len(texts), self.model.embedding_dim), np.float32)
        for i, text in enumerate(texts):
            scores[i : i + 1], embeddings[i : i + 1] = self._run([text])
        return scores, embeddings

    async def start(self) -> None:
        """Warm the session up (first runs allocate) and start the micro-batcher."""
        self._closed = False
        await self._batcher.run_in_thread(_WARMUP_TEXTS)
        self._batcher.start()

    async def score(self, text: str) -> Features:
        if self._closed:
            return Features(error="scorer is closed")
        try:
            if not self._batcher.running:
                self._batcher.start()
            score, embedding = await self._batcher.submit(text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Features(error=f"scoring failed: {type(exc).__name__}: {exc}")
        if not np.isfinite(score):
            return Features(error="scoring failed: the classifier returned a non-finite score")
        return Features(score=score, embedding=embedding)

    async def close(self) -> None:
        self._closed = True
        await self._batcher.close()
