"""Score records again with a classifier, from the prompt text they recorded."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["BatchScorer", "record_text", "rescore"]


class BatchScorer(Protocol):
    def score_batch(
        self, texts: list[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

    def score_each(
        self, texts: list[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...


def record_text(record: MutableMapping[str, Any]) -> str | None:
    """What the live router scored: the recorded `prompt`, else rebuilt from `messages`."""
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        from router.scoring import prompt_text

        return prompt_text(messages)
    return None


def rescore(
    records: Sequence[MutableMapping[str, Any]],
    scorer: BatchScorer,
    *,
    batch: int = 64,
    tick: Callable[[int], None] | None = None,
    keep_embeddings: bool = False,
    alone: bool = False,
) -> tuple[int, npt.NDArray[np.float32] | None]:
    """Set `score` on every record with text; returns how many were scored.

    Prompts are scored in order of length so a batch pads to similar widths:
    with a transformer, padding is most of the cost of a mixed batch.
    With `keep_embeddings`, also returns the embeddings (rows of unscored
    records are zero). With `alone`, each prompt gets a run of its own, as
    `router eval` scores them, so that figures do not depend on batch-mates.
    """
    texts: list[tuple[int, str]] = []
    for i, record in enumerate(records):
        text = record_text(record)
        if text is not None:
            texts.append((i, text))
    texts.sort(key=lambda item: len(item[1]))
    embeddings: npt.NDArray[np.float32] | None = None
    done = 0
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        run = scorer.score_each if alone else scorer.score_batch
        scores, emb = run([t for _, t in chunk])
        if keep_embeddings and embeddings is None:
            embeddings = np.zeros((len(records), emb.shape[1]), dtype=np.float32)
        for k, (i, _) in enumerate(chunk):
            records[i]["score"] = round(float(scores[k]), 6)
            records[i].pop("score_error", None)
            if embeddings is not None:
                embeddings[i] = emb[k]
        done += len(chunk)
        if tick is not None:
            tick(done)
    return done, embeddings
