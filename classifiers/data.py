"""The routing training data: prompts, per-benchmark labels and quality gaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.evaluation.data import read_jsonl

__all__ = ["BENCHMARKS", "Split", "default_data_dir", "load_split"]

BENCHMARKS = ("mmlu", "gsm8k", "mt_bench")


def default_data_dir() -> Path:
    """`../shared/data/routing` next to the repository, where the data is laid."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "routing"


@dataclass(frozen=True)
class Split:
    records: list[dict[str, object]]
    prompts: list[str]
    benchmark: np.ndarray  # str per record
    gain: np.ndarray  # strong - weak, scaled so each benchmark spans about [-1, 1]
    label: np.ndarray  # 1.0 where the strong model did better
    domain: np.ndarray  # str per record: benchmark, then MMLU subject or MT Bench category


def load_split(data_dir: Path, name: str) -> Split:
    records = list(read_jsonl(data_dir / f"{name}.jsonl"))
    bench = np.asarray([str(r["benchmark"]) for r in records])
    strong = np.asarray([float(r["strong_score"]) for r in records])  # type: ignore[arg-type]
    weak = np.asarray([float(r["weak_score"]) for r in records])  # type: ignore[arg-type]
    # MT Bench judge scores run 1-10; bring their gap to the 0/1 benchmarks' scale.
    scale = np.where(bench == "mt_bench", 1.0 / 9.0, 1.0)
    gain = (strong - weak) * scale
    return Split(
        records=records,
        prompts=[str(r["prompt"]) for r in records],
        benchmark=bench,
        gain=gain,
        label=(strong > weak).astype(np.float64),
        domain=np.asarray([_domain(r) for r in records]),
    )


def _domain(record: dict[str, object]) -> str:
    kind = record.get("subject") or record.get("category")
    return f"{record['benchmark']}/{kind}" if kind else str(record["benchmark"])
