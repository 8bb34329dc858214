"""Reference routers that every evaluation reports next to the classifier."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from router.evaluation.data import Benchmark
from router.evaluation.metrics import RouterMetrics, average_curves, metrics_of, quality_cost_curve

__all__ = ["length_scores", "random_router"]

RANDOM_REPETITIONS = 10


def length_scores(bench: Benchmark) -> npt.NDArray[np.float64]:
    """The prompt's length in characters: longer prompts are assumed harder."""
    return np.asarray([len(p) for p in bench.prompts], dtype=np.float64)


def random_router(
    bench: Benchmark, repetitions: int = RANDOM_REPETITIONS, seed: int = 0
) -> RouterMetrics:
    """Uniform random scores, curves averaged point-wise over `repetitions` runs."""
    rng = np.random.default_rng(seed)
    curves = [quality_cost_curve(bench, rng.uniform(size=len(bench))) for _ in range(repetitions)]
    return metrics_of(average_curves(curves))
