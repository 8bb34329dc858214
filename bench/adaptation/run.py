"""Adaptation benchmark: how many of a team's labels does `router train` need?

    .venv/bin/python bench/adaptation/run.py [--seeds 5] [--l2 10] [--margin 2] [--out DIR]

For MMLU and GSM8K in turn, the benchmark plays "the team's traffic":

1. k = 0: a head trained on `train.jsonl` *without* that benchmark (the
   shipped recipe's ridge on the per-benchmark-centred gain, alpha 300, then
   Platt scaling; the domain gate needs torch and is left out: the model card
   gives the plain ridge the same leave-one-out APGR as ridge + prior).
2. k = 100, 300, 1000, all: k of the benchmark's train rows, converted to
   decision records (`router.replay.convert`, quality of both answers), turned
   into labels and kernel targets by `router train`'s own
   `examples_from_records` / `kernel_targets` and fitted by its own
   `fit_adapted` on top of the k = 0 head (records fit in full: dev is the
   held-out set here, not `router train`'s 20%). Two rows per benchmark:
   `router train` as it ships (the linear warm start, plus the kernel
   correction where its cross-validation on the k records keeps one) and the
   linear warm start alone (`router train --no-kernel`, the old behaviour).
3. reference: the same recipe as k = 0 trained on every benchmark's rows.

Dev APGR of that benchmark per k: mean over `--seeds` draws of the k rows, and
the 5-95% range over the draws x 200 bootstrap resamples of dev. Goal: k = 300
recovers >= 75% of the gap between k = 0 and the reference.

The encoder pass (the shipped int8 model, each prompt alone) is cached by
`features.py`; everything else is numpy and runs in a few minutes (the kernel's
cross-validation refits the linear correction 30 times per draw).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from features import Features, load_features

from router.evaluation import group_by_benchmark
from router.evaluation.metrics import bootstrap_apgr, evaluate
from router.replay.convert import JUDGE_SCALE, convert_routing_rows
from router.replay.kernel import KernelGrid, kernel_targets
from router.replay.svg import Series, line_chart
from router.replay.training import DEFAULT_GRID, examples_from_records, fit_adapted

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


def _fit(
    team: list[dict[str, object]],
    idx: np.ndarray,
    feats: dict[str, np.ndarray],
    l2: float,
    grid: KernelGrid | None,
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """`router train`'s labels and fit on the team's rows; the dev logits and CV's choice."""
    records = convert_routing_rows(team, {"strong": "cloud", "weak": "local"})
    examples, _ = examples_from_records(records, "cloud", "local")
    y = np.asarray([ex.label for ex in examples])
    head = fit_adapted(
        feats["base_t"][idx],
        feats["xt"][idx],
        feats["et"][idx],
        y,
        kernel_targets(examples),
        l2=l2,
        grid=grid,
    )
    logit = head.logit(feats["base_d"], feats["xd"], feats["ed"])
    return logit, None if head.choice is None else head.choice.summary()


def _row(bench: Any, logits: list[np.ndarray], size: int) -> dict[str, Any]:
    apgrs = [evaluate(bench, z).apgr for z in logits]
    boots = [bootstrap_apgr(bench, z, samples=200, seed=s) for s, z in enumerate(logits)]
    lo, hi = _spread(boots)
    return {"k": size, "apgr": float(np.mean(apgrs)), "per_draw": apgrs, "p5": lo, "p95": hi}


def run(seeds: int, l2: float, grid: KernelGrid = DEFAULT_GRID) -> dict[str, Any]:
    train, dev = load_features(DATA / "train.jsonl"), load_features(DATA / "dev.jsonl")
    xt, xd = _x(train), _x(dev)
    et, ed = train.embeddings.astype(np.float64), dev.embeddings.astype(np.float64)
    gt = _gain(train)
    bt = np.asarray([str(r["benchmark"]) for r in train.records])
    bd = np.asarray([str(r["benchmark"]) for r in dev.records])
    benches = group_by_benchmark(dev.records)
    w_all, b_all = _ridge_platt(xt, gt, bt)
    out: dict[str, Any] = {
        "l2": l2,
        "seeds": seeds,
        "alpha": ALPHA,
        "kernel_grid": asdict(grid),
        "benchmarks": {},
    }
    for name in BENCHMARKS:
        bench, mask_d = benches[name], bd == name
        w0, b0 = _ridge_platt(xt[bt != name], gt[bt != name], bt[bt != name])
        feats = {
            "xt": xt,
            "et": et,
            "base_t": xt @ w0 + b0,
            "xd": xd[mask_d],
            "ed": ed[mask_d],
            "base_d": xd[mask_d] @ w0 + b0,
        }
        ref = xd[mask_d] @ w_all + b_all
        rows: dict[str, Any] = {}
        linear_rows: dict[str, Any] = {}
        pool = np.flatnonzero(bt == name)
        for k in KS:
            size = len(pool) if k is None else min(k, len(pool))  # GSM8K has 784
            draws = 1 if size in (0, len(pool)) else seeds
            shipped, linear, choices = [], [], []
            for seed in range(draws):
                if size == 0:
                    shipped.append(feats["base_d"])
                    linear.append(feats["base_d"])
                    continue
                idx = np.random.default_rng(seed).choice(pool, size, replace=False)
                team = [train.records[i] for i in idx]
                logit, choice = _fit(team, idx, feats, l2, grid)
                shipped.append(logit)
                choices.append(choice)
                linear.append(_fit(team, idx, feats, l2, None)[0])
            key = "all" if k is None else str(k)
            rows[key] = {**_row(bench, shipped, size), "kernel": choices}
            linear_rows[key] = _row(bench, linear, size)
        ref_apgr = evaluate(bench, ref).apgr
        lo, hi = _spread([bootstrap_apgr(bench, ref, samples=200)])
        for table_rows in (rows, linear_rows):
            k0, gap = table_rows["0"]["apgr"], ref_apgr - table_rows["0"]["apgr"]
            for row in table_rows.values():
                row["recovered"] = (row["apgr"] - k0) / gap if gap > 0 else None
        out["benchmarks"][name] = {
            "dev_n": len(bench),
            "train_n": len(pool),
            "k": rows,
            "k_linear_only": linear_rows,
            "reference": {"apgr": ref_apgr, "p5": lo, "p95": hi},
            "shipped_model_apgr": evaluate(bench, dev.scores[mask_d]).apgr,
            "goal_k300_recovers_75pct": bool(
                rows["300"]["recovered"] is not None and rows["300"]["recovered"] >= 0.75
            ),
        }
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        "| benchmark | `router train` | k = 0 | 100 | 300 | 1000 | all "
        "| trained on everything | k = 300 recovers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, b in result["benchmarks"].items():
        ref = b["reference"]
        for how, key in (("linear + kernel (default)", "k"), ("linear only", "k_linear_only")):
            cells = [f"{r['apgr']:.3f} ({r['p5']:.2f}-{r['p95']:.2f})" for r in b[key].values()]
            rec = b[key]["300"]["recovered"]
            lines.append(
                f"| {name} (dev {b['dev_n']}, train {b['train_n']}) | {how} | "
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
        lin = list(b["k_linear_only"].values())
        lin_labels = [f"k={r['k']}: {r['apgr']:.3f}" for r in lin]
        series.append(
            Series(f"{name} linear only", xs, [r["apgr"] for r in lin], labels=lin_labels)
        )
        series.append(
            Series(
                f"{name} trained on everything",
                [0.0, float(len(rows) - 1)],
                [b["reference"]["apgr"]] * 2,
            )
        )
    return line_chart(
        "Dev APGR after `router train` on k team records",
        series,
        "k = 0, 100, 300, 1000, all of the benchmark's train rows",
        "dev APGR",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=10.0, help="router train's default")
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_GRID.margin,
        help="standard errors the kernel must clear in CV (router train's default)",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args()
    result = run(args.seeds, args.l2, replace(DEFAULT_GRID, margin=args.margin))
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
