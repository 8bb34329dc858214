"""Turn strong/weak routing data (shared/data/routing/*.jsonl) into decision records.

Each row becomes one record that the policy can route, with the quality of both
models' answers as a `quality` label: `--label-map strong=cloud,weak=local`
names which upstream stands for which model. Scores are put on one 0..1 scale:
MMLU and GSM8K are already 0/1 correctness, MT Bench judge points (1-10) are
divided by 10. APGR and CPT do not change under that rescaling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["JUDGE_SCALE", "convert_routing_rows", "parse_label_map"]

#: Benchmarks scored by a judge on 1-10, and the divisor that brings them to 0..1.
JUDGE_SCALE = {"mt_bench": 10.0}


def parse_label_map(text: str) -> dict[str, str]:
    """`strong=cloud,weak=local` -> {"strong": "cloud", "weak": "local"}."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ("strong", "weak") or not value:
            raise ValueError(f"bad label map entry {part!r}: expected strong=NAME,weak=NAME")
        out[key] = value
    if set(out) != {"strong", "weak"}:
        raise ValueError("the label map needs both strong=NAME and weak=NAME")
    if out["strong"] == out["weak"]:
        raise ValueError("strong and weak must be different upstreams")
    return out


def convert_routing_rows(
    rows: Iterable[Mapping[str, Any]],
    label_map: Mapping[str, str],
    *,
    tenant: str = "default",
    model: str = "auto",
) -> list[dict[str, Any]]:
    """Records without a score (add one with `rescore`) carrying `quality` and `group`."""
    strong, weak = label_map["strong"], label_map["weak"]
    out = []
    for row in rows:
        prompt = str(row["prompt"])
        bench = str(row.get("benchmark", "all"))
        scale = JUDGE_SCALE.get(bench, 1.0)
        out.append(
            {
                "request_id": str(row["id"]),
                "ts": 0.0,
                "tenant": tenant,
                "model": model,
                "stream": False,
                "status": 200,
                "prompt_chars": len(prompt),
                "prompt": prompt,
                "messages": [{"role": "user", "content": prompt}],
                "group": bench,
                "quality": {
                    strong: float(row["strong_score"]) / scale,
                    weak: float(row["weak_score"]) / scale,
                },
                "v": 1,
            }
        )
    return out
