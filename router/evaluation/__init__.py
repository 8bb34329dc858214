"""Offline evaluation of routers on strong/weak quality data (pure numpy)."""

from router.evaluation.baselines import length_scores, random_router
from router.evaluation.data import Benchmark, group_by_benchmark, read_jsonl
from router.evaluation.metrics import (
    Curve,
    RouterMetrics,
    apgr,
    cpt,
    evaluate,
    quality_cost_curve,
)
from router.evaluation.report import compare, format_table, to_json

__all__ = [
    "Benchmark",
    "Curve",
    "RouterMetrics",
    "apgr",
    "compare",
    "cpt",
    "evaluate",
    "format_table",
    "group_by_benchmark",
    "length_scores",
    "quality_cost_curve",
    "random_router",
    "read_jsonl",
    "to_json",
]
