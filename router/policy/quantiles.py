"""Score quantiles: what share of traffic lies above a classifier score.

Raw scores are probabilities that sit in a narrow band (held-out prompts:
0.10-0.25), so `score: {gte: 0.3}` says little to a policy author. A quantile
table maps a share of traffic to a score and back: `score: {top_percent: 30}`
is resolved to `score >= q(0.70)` once, when the policy loads, so `decide()`
keeps comparing a number with a number and stays pure.

The table that ships beside a classifier (`quantiles.json`) comes from its
training prompts (`router calibrate --in train.jsonl --write ...`); `router
calibrate --write` over recorded traffic refreshes it for a team's own mix.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FILE_NAME", "QuantileTable", "QuantileTableError"]

FILE_NAME = "quantiles.json"
# 0.0%, 0.1%, ..., 100.0%: a policy can ask for 2.5% and get it.
_STEPS = 1000


class QuantileTableError(ValueError):
    """The table file is missing or malformed."""


@dataclass(frozen=True)
class QuantileTable:
    """`scores[i]` is the score below which `i / 1000` of the reference traffic lies."""

    scores: tuple[float, ...]
    n: int
    source: str
    model: str = ""

    @property
    def grid(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(self.scores))

    @classmethod
    def from_scores(
        cls, scores: Sequence[float] | np.ndarray, source: str, model: str = ""
    ) -> QuantileTable:
        values = np.asarray(scores, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise QuantileTableError("no scores to build a quantile table from")
        edges = np.quantile(values, np.linspace(0.0, 1.0, _STEPS + 1))
        return cls(tuple(float(v) for v in edges), int(values.size), source, model)

    def score_at_top(self, percent: float) -> float:
        """The score at or above which the top `percent`% of the reference traffic lies."""
        q = 1.0 - percent / 100.0
        return float(np.interp(q, self.grid, np.asarray(self.scores)))

    def top_percent(self, score: float) -> float:
        """The share (%) of the reference traffic scoring at or above `score`."""
        s = np.asarray(self.scores)
        if score <= s[0]:
            return 100.0
        if score > s[-1]:
            return 0.0
        # The first entry reaching `score` (scores repeat where the table is flat),
        # interpolated linearly from the entry before it.
        i = int(np.searchsorted(s, score, side="left"))
        step = 1.0 / (len(s) - 1)
        below = (i - 1) * step + step * float((score - s[i - 1]) / (s[i] - s[i - 1]))
        return 100.0 * (1.0 - below)

    def to_json(self) -> dict[str, object]:
        return {
            "version": 1,
            "model": self.model,
            "source": self.source,
            "n": self.n,
            "percentiles": "scores[i] is the (i/10)th percentile of the reference scores",
            "scores": [round(v, 7) for v in self.scores],
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> QuantileTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise QuantileTableError(f"cannot read quantile table {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise QuantileTableError(f"{path} is not JSON: {exc}") from None
        scores = data.get("scores") if isinstance(data, dict) else None
        if (
            not isinstance(scores, list)
            or len(scores) < 2
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in scores)
            or any(b < a for a, b in itertools.pairwise(scores))
        ):
            raise QuantileTableError(f"{path}: 'scores' must be a non-decreasing list of numbers")
        return cls(
            scores=tuple(float(v) for v in scores),
            n=int(data.get("n", 0)),
            source=str(data.get("source", path)),
            model=str(data.get("model", "")),
        )
