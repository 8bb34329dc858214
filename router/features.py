"""What one scoring pass yields for a prompt: the routing score and the embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Embedding", "Features"]

Embedding = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Features:
    """The classifier's output for one prompt.

    `score` is in [0, 1]: higher means the prompt needs the strong (cloud) model more.
    `embedding` is L2-normalised, so a dot product is the cosine similarity.
    Both are None when the prompt was not scored; `error` says why it failed.
    """

    score: float | None = None
    embedding: Embedding | None = None
    error: str | None = None

    @property
    def scored(self) -> bool:
        return self.score is not None
