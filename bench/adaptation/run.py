"""Adaptation benchmark: how many of a team's labels does `router train` need?

    .venv/bin/python bench/adaptation/run.py [--seeds 5] [--l2 10] [--out bench/adaptation]

For MMLU and GSM8K in turn, the benchmark plays "the team's traffic":

1. k = 0: a head trained on `train.jsonl` *without* that benchmark (the
   shipped recipe's ridge on the per-benchmark-centred gain, alpha 300, then
   Platt scaling; the domain gate needs torch and is left out: the model card
   gives the plain ridge the same leave-one-out APGR as ridge + prior).
2. k = 100, 300, 1000, all: k of the benchmark's train rows, converted to
   decision records (`router.replay.convert`, quality of both answers), turned
   into labels by `router train`'s own `examples_from_records` and fitted by
   its own `fit_warm` on top of the k = 0 head (records fit in full: dev is the
   held-out set here, not `router train`'s 20%).
3. reference: the same recipe as k = 0 trained on every benchmark's rows.

Dev APGR of that benchmark per k: mean over `--seeds` draws of the k rows, and
the 5-95% range over the draws x 200 bootstrap resamples of dev. Goal: k = 300
recovers >= 75% of the gap between k = 0 and the reference.

The encoder pass (the shipped int8 model, each prompt alone) is cached by
`features.py`; everything else is numpy and runs in about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from features import Features, load_features

from router.evaluation import group_by_benchmark
from router.evaluation.metrics import bootstrap_apgr, evaluate
from router.replay.convert import JUDGE_SCALE, convert_routing_rows
from router.replay.svg import Series, line_chart
from router.replay.training import examples_from_records, fit_warm

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "routing"
KS = (0, 100, 300, 1000, None)  # None: all of the benchmark's train rows
BENCHMARKS = ("mmlu", "gsm8k")
ALPHA = 300.0


def _x(f: Features) -> np.ndarray:
    chars = np.log1p(np.asarray([len(str(r["prompt"])) for r in f.records], dtype=np.float64))
    return np.hstack([f.embeddings.astype(np.float64), chars[:, None]])


def _gain(f: Features) -> np.ndarray:
    return np.asarray(
        [
            (float(r["strong_score"]) - float(r["weak_score"]))  # type: ignore[arg-type]
            / JUDGE_SCALE.get(str(r["benchmark"]), 1.0)
            for r in f.records
        ]
    )


def _ridge_platt(x: np.ndarray, gain: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, float]:
    """The shipped recipe without the domain gate: centred-gain ridge, then Platt scaling."""
    target = gain.copy()
    for g in np.unique(groups):
        target[groups == g] -= target[groups == g].mean()
    mx, my = x.mean(0), target.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + ALPHA * np.eye(x.shape[1]), xc.T @ (target - my))
    b = my - mx @ w
    z = x @ w + b
    label = (gain > 0).astype(np.float64)
    mu, sd = z.mean(), z.std()
    design = np.stack([(z - mu) / sd, np.ones_like(z)], axis=1)
    theta = np.zeros(2)
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        theta -= np.linalg.solve(hess, design.T @ (p - label))
    a, c = theta[0] / sd, theta[1] - theta[0] * mu / sd
    return w * a, float(b * a + c)


def _spread(values: list[np.ndarray]) -> tuple[float, float]:
    pooled = np.concatenate(values)
    pooled = pooled[np.isfinite(pooled)]
    return float(np.percentile(pooled, 5)), float(np.percentile(pooled, 95))


def run(seeds: int, l2: float) -> dict[str, Any]:
    train, dev = load_features(DATA / "train.jsonl"), load_features(DATA / "dev.jsonl")
    xt, xd = _x(train), _x(dev)
    gt = _gain(train)
    bt = np.asarray([str(r["benchmark"]) for r in train.records])
    bd = np.asarray([str(r["benchmark"]) for r in dev.records])
    benches = group_by_benchmark(dev.records)
    label_map = {"strong": "cloud", "weak": "local"}
    w_all, b_all = _ridge_platt(xt, gt, bt)
    out: dict[str, Any] = {"l2": l2, "seeds": seeds, "alpha": ALPHA, "benchmarks": {}}
    for name in BENCHMARKS:
        bench, mask_d = benches[name], bd == name
        w0, b0 = _ridge_platt(xt[bt != name], gt[bt != name], bt[bt != name])
        base_t, base_d = xt @ w0 + b0, xd[mask_d] @ w0 + b0
        ref = xd[mask_d] @ w_all + b_all
        rows: dict[str, Any] = {}
        pool = np.flatnonzero(bt == name)
        for k in KS:
            size = len(pool) if k is None else min(k, len(pool))  # GSM8K has 784
            draws = 1 if size in (0, len(pool)) else seeds
            apgrs, boots = [], []
            for seed in range(draws):
                if size == 0:
                    logit = base_d
                else:
                    idx = np.random.default_rng(seed).choice(pool, size, replace=False)
                    rows_k = [train.records[i] for i in idx]
                    records = convert_routing_rows(rows_k, label_map)
                    examples, _ = examples_from_records(records, "cloud", "local")
                    y = np.asarray([ex.label for ex in examples])
                    head = fit_warm(base_t[idx], xt[idx], y, l2=l2)
                    logit = head.logit(base_d, xd[mask_d])
                apgrs.append(evaluate(bench, logit).apgr)
                boots.append(bootstrap_apgr(bench, logit, samples=200, seed=seed))
            lo, hi = _spread(boots)
            rows["all" if k is None else str(k)] = {
                "k": size,
                "apgr": float(np.mean(apgrs)),
                "per_draw": apgrs,
                "p5": lo,
                "p95": hi,
            }
        ref_apgr = evaluate(bench, ref).apgr
        lo, hi = _spread([bootstrap_apgr(bench, ref, samples=200)])
        k0 = rows["0"]["apgr"]
        for row in rows.values():
            gap = ref_apgr - k0
            row["recovered"] = (row["apgr"] - k0) / gap if gap > 0 else None
        shipped = evaluate(bench, dev.scores[mask_d]).apgr
        out["benchmarks"][name] = {
            "dev_n": len(bench),
            "train_n": len(pool),
            "k": rows,
            "reference": {"apgr": ref_apgr, "p5": lo, "p95": hi},
            "shipped_model_apgr": shipped,
            "goal_k300_recovers_75pct": bool(
                rows["300"]["recovered"] is not None and rows["300"]["recovered"] >= 0.75
            ),
        }
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        "| benchmark | k = 0 | 100 | 300 | 1000 | all | trained on everything | k = 300 recovers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, b in result["benchmarks"].items():
        cells = [f"{r['apgr']:.3f} ({r['p5']:.2f}-{r['p95']:.2f})" for r in b["k"].values()]
        ref = b["reference"]
        rec = b["k"]["300"]["recovered"]
        lines.append(
            f"| {name} (dev {b['dev_n']}, train {b['train_n']}) | "
            + " | ".join(cells)
            + f" | {ref['apgr']:.3f} ({ref['p5']:.2f}-{ref['p95']:.2f}) | "
            + ("-" if rec is None else f"{rec:.0%}")
            + " |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any]) -> str:
    series = []
    for name, b in result["benchmarks"].items():
        rows = list(b["k"].values())
        xs = [float(i) for i in range(len(rows))]
        labels = [f"k={r['k']}: {r['apgr']:.3f}" for r in rows]
        series.append(Series(f"{name}", xs, [r["apgr"] for r in rows], labels=labels))
        series.append(Series(f"{name} 5%", xs, [r["p5"] for r in rows], labels=labels, line=False))
        series.append(
            Series(f"{name} 95%", xs, [r["p95"] for r in rows], labels=labels, line=False)
        )
        series.append(
            Series(
                f"{name} trained on everything",
                [0.0, float(len(rows) - 1)],
                [b["reference"]["apgr"]] * 2,
            )
        )
    return line_chart(
        "Dev APGR after warm-starting on k team records",
        series,
        "k = 0, 100, 300, 1000, all of the benchmark's train rows",
        "dev APGR",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=10.0, help="router train's default")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args()
    result = run(args.seeds, args.l2)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "adaptation.svg").write_text(plot(result) + "\n")
    print(table(result))
    for name, b in result["benchmarks"].items():
        print(
            f"{name}: shipped model dev APGR {b['shipped_model_apgr']:.3f}; "
            f"goal (k=300 recovers >= 75%) met: {b['goal_k300_recovers_75pct']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
