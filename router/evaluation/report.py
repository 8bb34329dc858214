"""Side-by-side metrics of a router and the reference routers, per benchmark."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from router.evaluation.baselines import length_scores, random_router
from router.evaluation.data import Benchmark
from router.evaluation.metrics import RouterMetrics, evaluate

__all__ = ["compare", "format_table", "to_json"]

Report = dict[str, dict[str, RouterMetrics]]


def compare(
    benchmarks: Mapping[str, Benchmark],
    scores: Mapping[str, npt.ArrayLike],
    name: str = "classifier",
) -> Report:
    """Metrics per benchmark for `scores` (keyed by benchmark), random and length."""
    out: Report = {}
    for bench_name, bench in benchmarks.items():
        row: dict[str, RouterMetrics] = {}
        if bench_name in scores:
            row[name] = evaluate(bench, np.asarray(scores[bench_name], dtype=np.float64))
        row["random"] = random_router(bench)
        row["length"] = evaluate(bench, length_scores(bench))
        out[bench_name] = row
    return out


def format_table(report: Report, benchmarks: Mapping[str, Benchmark]) -> str:
    lines = [
        f"{'benchmark':<10} {'n':>5} {'router':<12} {'APGR':>6} {'CPT20':>7} {'CPT50':>7} "
        f"{'CPT80':>7}"
    ]
    for bench_name, row in report.items():
        n = len(benchmarks[bench_name])
        for router, m in row.items():
            flag = " t" if m.curve.ties_broken else ""
            lines.append(
                f"{bench_name:<10} {n:>5} {router:<12} {m.apgr:>6.3f} {m.cpt20:>6.2f}% "
                f"{m.cpt50:>6.2f}% {m.cpt80:>6.2f}%{flag}"
            )
    return "\n".join(lines)


def to_json(report: Report, benchmarks: Mapping[str, Benchmark]) -> dict[str, object]:
    return {
        bench_name: {
            "n": len(benchmarks[bench_name]),
            "weak_quality": benchmarks[bench_name].weak_quality,
            "strong_quality": benchmarks[bench_name].strong_quality,
            "routers": {router: m.as_dict() for router, m in row.items()},
        }
        for bench_name, row in report.items()
    }
