"""Routing evaluation records: one prompt with the quality of each model's answer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Benchmark", "group_by_benchmark", "read_jsonl"]

FloatArray = npt.NDArray[np.float64]


def read_jsonl(path: str | Path) -> Iterator[dict[str, object]]:
    """Yield the JSON object on each non-blank line of `path`."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            yield record


@dataclass(frozen=True)
class Benchmark:
    """The records of one benchmark, as parallel arrays.

    Qualities are in the unit the data README reports: accuracy in % for the
    0/1-scored benchmarks, the mean judge score (1-10) for MT Bench.
    """

    name: str
    ids: list[str]
    prompts: list[str]
    strong: FloatArray
    weak: FloatArray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def strong_quality(self) -> float:
        return float(self.strong.mean())

    @property
    def weak_quality(self) -> float:
        return float(self.weak.mean())


def _quality_unit(name: str) -> float:
    # MT Bench scores are already judge points; the others are 0/1 correctness.
    return 1.0 if name == "mt_bench" else 100.0


def group_by_benchmark(records: Iterable[dict[str, object]]) -> dict[str, Benchmark]:
    """Split records by their `benchmark` field, in order of first appearance."""
    columns: dict[str, tuple[list[str], list[str], list[float], list[float]]] = {}
    for record in records:
        name = str(record.get("benchmark", "all"))
        ids, prompts, strong, weak = columns.setdefault(name, ([], [], [], []))
        ids.append(str(record["id"]))
        prompts.append(str(record["prompt"]))
        strong.append(float(record["strong_score"]))  # type: ignore[arg-type]
        weak.append(float(record["weak_score"]))  # type: ignore[arg-type]
    out: dict[str, Benchmark] = {}
    for name, (ids, prompts, strong, weak) in columns.items():
        unit = _quality_unit(name)
        out[name] = Benchmark(
            name=name,
            ids=ids,
            prompts=prompts,
            strong=np.asarray(strong, dtype=np.float64) * unit,
            weak=np.asarray(weak, dtype=np.float64) * unit,
        )
    return out
