"""Retrain the routing head on labelled decision records.

Labels come from the records (`router.replay.labels`): a record is "strong
needed" when the strong upstream's answer was rated higher than the weak one's,
or when a lone rating of the weak answer was poor. The encoder is kept; its
embedding plus `log1p(prompt chars)` (the shipped head's own input) feed an
L2-regularised logistic regression fitted by Newton's method in numpy, warm-
started from the old head; where cross-validation on the records says so, a
kernel correction over their embeddings is added (`router.replay.kernel`). The
new head is written into a copy of the old ONNX graph
(`router.replay.onnxhead`), so the new artifact is a drop-in classifier
directory for `Scorer`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router.evaluation.data import Benchmark
from router.evaluation.report import compare, format_table, to_json
from router.policy.quantiles import FILE_NAME as QUANTILES_FILE
from router.policy.quantiles import QuantileTable
from router.replay.kernel import (
    KernelChoice,
    KernelCorrection,
    KernelGrid,
    average_ranks,
    choose_correction,
    kernel_targets,
)
from router.replay.labels import labels_of, strong_needed
from router.replay.onnxhead import kernel_head, replace_head, warm_head
from router.replay.rescore import record_text

__all__ = [
    "AdaptedHead",
    "Example",
    "LogisticHead",
    "TrainResult",
    "WarmHead",
    "examples_from_records",
    "fit_adapted",
    "fit_logistic",
    "fit_warm",
    "is_holdout",
    "train",
]

if TYPE_CHECKING:
    from router.scoring.model_dir import ModelDir

FloatArray = npt.NDArray[np.float64]

DEFAULT_GRID = KernelGrid()


@dataclass(frozen=True)
class Example:
    request_id: str
    text: str
    label: float  # 1.0: strong needed
    group: str
    strong_q: float | None
    weak_q: float | None


def is_holdout(request_id: str, fraction: float) -> bool:
    """A stable split by id hash, so reruns hold out the same records."""
    digest = hashlib.sha256(f"router-train-holdout:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def examples_from_records(
    records: Sequence[Mapping[str, Any]], strong: str, weak: str
) -> tuple[list[Example], int]:
    """Labelled examples with text; also how many labelled records had no text."""
    out: list[Example] = []
    textless = 0
    for record in records:
        labels = labels_of(record)
        label = strong_needed(labels, strong, weak)
        if label is None:
            continue
        text = record_text(dict(record))
        if text is None:
            textless += 1
            continue
        out.append(
            Example(
                request_id=str(record["request_id"]),
                text=text,
                label=label,
                group=str(record.get("group") or "all"),
                strong_q=labels.quality.get(strong),
                weak_q=labels.quality.get(weak),
            )
        )
    return out, textless


@dataclass(frozen=True)
class LogisticHead:
    weight: FloatArray
    bias: float

    def predict(self, x: FloatArray) -> FloatArray:
        z = x @ self.weight + self.bias
        out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return out


def fit_logistic(x: FloatArray, y: FloatArray, l2: float = 1.0, steps: int = 30) -> LogisticHead:
    """Minimise log loss + l2/2 |w|^2 (bias not penalised) by Newton's method."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return LogisticHead(weight=w[:-1], bias=float(w[-1]))


@dataclass(frozen=True)
class WarmHead:
    """`logit = scale * base_logit + x @ weight + bias`: a correction on top of the base head."""

    scale: float
    weight: FloatArray
    bias: float

    def logit(self, base_logit: FloatArray, x: FloatArray) -> FloatArray:
        out: FloatArray = self.scale * base_logit + x @ self.weight + self.bias
        return out

    def predict(self, base_logit: FloatArray, x: FloatArray) -> FloatArray:
        z = np.clip(self.logit(base_logit, x), -40, 40)
        out: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return out


def fit_warm(
    base_logit: FloatArray, x: FloatArray, y: FloatArray, l2: float = 1.0, steps: int = 30
) -> WarmHead:
    """Logistic regression that starts from the base head and is pulled back to it.

    Minimises log loss + l2/2 (|w|^2 + (scale - 1)^2): the prior is the base
    head itself (scale 1, no correction), so a few hundred records move it a
    little and many move it far, while whatever the base head knows that a
    linear map cannot hold (the shipped domain prior) is kept. The bias is
    free: a team's traffic may simply need the strong model more or less often.
    """
    n, d = x.shape
    design = np.hstack([base_logit[:, None], x, np.ones((n, 1))])
    prior = np.zeros(d + 2)
    prior[0] = 1.0
    penalty = np.full(d + 2, l2)
    penalty[-1] = 0.0
    w = prior.copy()
    w[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -40, 40)))
        grad = design.T @ (p - y) + penalty * (w - prior)
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hess + 1e-9 * np.eye(d + 2), grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return WarmHead(scale=float(w[0]), weight=w[1:-1], bias=float(w[-1]))


@dataclass(frozen=True)
class AdaptedHead:
    """A warm-started head plus, where the records show local structure, a kernel correction."""

    warm: WarmHead
    kernel: KernelCorrection | None
    choice: KernelChoice | None  # None: the kernel was not tried

    def logit(self, base_logit: FloatArray, x: FloatArray, emb: FloatArray) -> FloatArray:
        out = self.warm.logit(base_logit, x)
        if self.kernel is not None:
            out = out + self.kernel.offset(emb)
        return out

    def predict(self, base_logit: FloatArray, x: FloatArray, emb: FloatArray) -> FloatArray:
        z = np.clip(self.logit(base_logit, x, emb), -40, 40)
        out: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return out


def fit_adapted(
    base_logit: FloatArray,
    x: FloatArray,
    emb: FloatArray,
    y: FloatArray,
    targets: FloatArray,
    *,
    l2: float = 10.0,
    grid: KernelGrid | None = DEFAULT_GRID,
) -> AdaptedHead:
    """`fit_warm` on every record, plus a kernel correction where cross-validation keeps one.

    `emb` are the records' unit embeddings and `targets` their `kernel_targets`.
    Cross-validation (`choose_correction`) also picks the linear correction's
    l2 (`l2` or a multiple of it). It runs on at most `grid.max_anchors`
    records (a seeded sample: they are also what the served graph stores).
    `grid=None`: `fit_warm` alone, as before the kernel existed.
    """
    if grid is None:
        return AdaptedHead(warm=fit_warm(base_logit, x, y, l2=l2), kernel=None, choice=None)
    keep = _anchor_sample(len(y), grid.max_anchors)
    b, xs, ys = base_logit[keep], x[keep], y[keep]

    def warm_oof(folds: npt.NDArray[np.int64], factor: float) -> FloatArray:
        out = np.zeros(len(ys))
        for f in np.unique(folds):
            held = folds == f
            fit = fit_warm(b[~held], xs[~held], ys[~held], l2=l2 * factor)
            out[held] = fit.logit(b[held], xs[held])
        return out

    choice = choose_correction(emb[keep], targets[keep], warm_oof, grid)
    kernel = None
    if choice.params is not None:
        beta, shrink, scale = choice.params
        kernel = KernelCorrection.fit(emb[keep], targets[keep], beta, shrink, scale)
    warm = fit_warm(base_logit, x, y, l2=l2 * choice.l2_factor)
    return AdaptedHead(warm=warm, kernel=kernel, choice=choice)


def _anchor_sample(n: int, cap: int) -> npt.NDArray[np.int64]:
    # Every anchor adds 1.5 KB to the graph and a dot product to each request;
    # a seeded sample of a few thousand keeps what a kernel learns (in the
    # adaptation benchmark 4,096 of MMLU's 8,419 rows reach the reference).
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, cap, replace=False))


def _logit(p: npt.NDArray[np.floating[Any]]) -> FloatArray:
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    out: FloatArray = np.log(q / (1 - q))
    return out


def _log_loss(p: FloatArray, y: FloatArray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _auc(p: FloatArray, y: FloatArray) -> float | None:
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if not pos or not neg:
        return None
    # Mann-Whitney U with tied scores counted as half a win.
    ranks = average_ranks(p)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _label_metrics(p: FloatArray, y: FloatArray) -> dict[str, Any]:
    return {
        "log_loss": _log_loss(p, y),
        "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
        "auc": _auc(p, y),
    }


@dataclass
class TrainResult:
    out: Path
    summary: dict[str, Any]
    table: str


def _benchmarks(examples: Sequence[Example]) -> dict[str, tuple[Benchmark, list[int]]]:
    """Held-out examples rated for both upstreams, per group, as `router eval` benchmarks."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        if ex.strong_q is not None and ex.weak_q is not None:
            groups.setdefault(ex.group, []).append(i)
    out = {}
    for group, idx in groups.items():
        if len(idx) < 11:
            continue  # too few for the 11 quantile thresholds
        out[group] = (
            Benchmark(
                name=group,
                ids=[examples[i].request_id for i in idx],
                prompts=[examples[i].text for i in idx],
                strong=np.asarray([examples[i].strong_q for i in idx], dtype=np.float64),
                weak=np.asarray([examples[i].weak_q for i in idx], dtype=np.float64),
            ),
            idx,
        )
    return out


def train(
    records: Sequence[Mapping[str, Any]],
    out: str | Path,
    *,
    base: str | Path | None = None,
    strong: str = "cloud",
    weak: str = "local",
    holdout: float = 0.2,
    l2: float = 10.0,
    warm: bool = True,
    kernel: bool = True,
    grid: KernelGrid = DEFAULT_GRID,
    scorer_factory: Any = None,
) -> TrainResult:
    """Fit a head on the labelled `records` and write a classifier directory to `out`.

    `warm` (the default) keeps the base head, domain prior included, and fits a
    correction pulled towards it (`fit_warm`); `warm=False` replaces it with a
    plain logistic head fitted on the records alone (`fit_logistic`). With
    `warm` and `kernel` (the default) a kernel correction over the records'
    embeddings is added where cross-validation on them says it helps
    (`fit_adapted`, candidates from `grid`); its choice is in the report under
    "kernel".
    """
    from router.scoring import Scorer
    from router.scoring.model_dir import ModelDir, default_model_dir

    make = scorer_factory or Scorer.from_path
    base_dir = Path(base) if base is not None else default_model_dir()
    old_meta = ModelDir.load(base_dir)
    examples, textless = examples_from_records(records, strong, weak)
    _require_fit_set(examples, holdout, textless)
    texts = [ex.text for ex in examples]
    old_scores, emb = _score_all(make(base_dir), texts)
    y = np.asarray([ex.label for ex in examples])
    is_held = np.asarray([is_holdout(ex.request_id, holdout) for ex in examples])
    targets = kernel_targets(examples)
    fitted, expected = _fit_head(
        old_scores,
        _features(emb, texts),
        emb.astype(np.float64),
        y,
        targets,
        is_held,
        l2=l2,
        warm=warm,
        grid=grid if kernel else None,
    )

    out = Path(out)
    _write_classifier(out, base_dir, old_meta, fitted, n_train=int((~is_held).sum()), l2=l2)

    new_scores, _ = _score_all(make(out), texts)
    drift = _head_drift(new_scores, expected)
    # Percent rules (`score: {top_percent: N}`) need the new model's own quantiles;
    # the records' prompts are the team's traffic.
    QuantileTable.from_scores(
        new_scores, source=f"router train: {len(texts)} record prompts", model=out.name
    ).write(out / QUANTILES_FILE)
    held_labels, held_routing, table = _held_out(examples, is_held, y, old_scores, new_scores)
    summary: dict[str, Any] = {
        "base": str(base_dir),
        "warm_start": warm,
        "kernel": _kernel_summary(fitted),
        "l2": l2,
        "out": str(out),
        "examples": len(examples),
        "train": int((~is_held).sum()),
        "held_out": int(is_held.sum()),
        "strong_needed_rate": float(y.mean()),
        "labelled_without_text": textless,
        "onnx_head_max_diff": drift,
        "held_out_labels": held_labels,
        "held_out_routing": held_routing,
    }
    (out / "train-report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return TrainResult(out=out, summary=summary, table=table)


def _require_fit_set(examples: Sequence[Example], holdout: float, textless: int) -> None:
    fit_set = [ex for ex in examples if not is_holdout(ex.request_id, holdout)]
    if len(fit_set) < 10 or len({ex.label for ex in fit_set}) < 2:
        raise ValueError(
            f"need at least 10 training examples with both labels; have {len(fit_set)} "
            f"({textless} labelled records lack prompt text: record with prompts: true)"
        )


def _features(emb: npt.NDArray[np.float32], texts: Sequence[str]) -> FloatArray:
    """The shipped head's input: the embedding plus `log1p(prompt chars)`."""
    log_chars = np.log1p(np.asarray([len(t) for t in texts], dtype=np.float64))
    return np.hstack([emb.astype(np.float64), log_chars[:, None]])


def _fit_head(
    old_scores: npt.NDArray[np.float32],
    x: FloatArray,
    emb: FloatArray,
    y: FloatArray,
    targets: FloatArray,
    is_held: npt.NDArray[np.bool_],
    *,
    l2: float,
    warm: bool,
    grid: KernelGrid | None,
) -> tuple[AdaptedHead | LogisticHead, FloatArray]:
    """The head fitted on the non-held-out rows, and its scores for every row."""
    fit = ~is_held
    if warm:
        base_logit = _logit(old_scores)
        adapted = fit_adapted(
            base_logit[fit],
            x[fit],
            emb[fit],
            y[fit],
            targets[fit],
            l2=l2,
            grid=grid,
        )
        return adapted, adapted.predict(base_logit, x, emb)
    cold_fit = fit_logistic(x[fit], y[fit], l2=l2)
    return cold_fit, cold_fit.predict(x)


def _kernel_summary(fitted: AdaptedHead | LogisticHead) -> dict[str, Any] | None:
    if not isinstance(fitted, AdaptedHead) or fitted.choice is None:
        return None
    out = fitted.choice.summary()
    out["anchors"] = 0 if fitted.kernel is None else len(fitted.kernel.weights)
    return out


def _write_classifier(
    out: Path,
    base_dir: Path,
    old_meta: ModelDir,
    fitted: AdaptedHead | LogisticHead,
    *,
    n_train: int,
    l2: float,
) -> None:
    """The base directory's tokenizer and metadata with the fitted head in its graph."""
    if out.resolve() == base_dir.resolve():
        raise ValueError("--out must differ from the base classifier directory")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(old_meta.tokenizer_file, out / "tokenizer.json")
    base_model = old_meta.model_file.read_bytes()
    if isinstance(fitted, AdaptedHead):
        w = fitted.warm
        model = warm_head(base_model, w.scale, w.weight, w.bias)
        used = l2 * (fitted.choice.l2_factor if fitted.choice is not None else 1.0)
        how = (
            f"{old_meta.name}'s head (kept whole) plus a logistic correction warm-started "
            f"from it and fitted by `router train` on {n_train} labelled "
            f"records (l2={used:g} towards the base head)"
        )
        if fitted.kernel is not None:
            k = fitted.kernel
            model = kernel_head(model, k.anchors, k.weights, k.beta, k.shrink)
            how += f", plus a kernel correction over {len(k.weights)} of those records"
    else:
        model = replace_head(base_model, fitted.weight, fitted.bias)
        how = (
            f"logistic head retrained from scratch by `router train` on "
            f"{n_train} labelled records (l2={l2}), encoder of {old_meta.name}"
        )
    (out / "model.onnx").write_bytes(model)
    meta = json.loads((base_dir / "classifier.json").read_text(encoding="utf-8"))
    meta.update(name=out.name, score=f"P(strong needed): {how}", base_classifier=old_meta.name)
    (out / "classifier.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _head_drift(new_scores: npt.NDArray[np.float32], expected: FloatArray) -> float:
    # The ONNX head must compute what numpy fitted (float32 rounding aside).
    drift = float(np.abs(new_scores - expected).max()) if len(new_scores) else 0.0
    if drift > 1e-3:
        raise RuntimeError(f"the written head disagrees with the fitted one (max diff {drift})")
    return drift


def _held_out(
    examples: Sequence[Example],
    is_held: npt.NDArray[np.bool_],
    y: FloatArray,
    old_scores: npt.NDArray[np.float32],
    new_scores: npt.NDArray[np.float32],
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Old against new head on the held-out records: label metrics, routing, its table."""
    if not is_held.any():
        return {}, {}, ""
    labels = {
        "old": _label_metrics(old_scores[is_held].astype(np.float64), y[is_held]),
        "new": _label_metrics(new_scores[is_held].astype(np.float64), y[is_held]),
    }
    held = [ex for ex, h in zip(examples, is_held.tolist(), strict=True) if h]
    routing = _held_out_routing(held, is_held, old_scores, new_scores)
    if routing is None:
        return labels, {}, ""
    return labels, routing[0], routing[1]


def _held_out_routing(
    held: Sequence[Example],
    is_held: npt.NDArray[np.bool_],
    old_scores: npt.NDArray[np.float32],
    new_scores: npt.NDArray[np.float32],
) -> tuple[dict[str, Any], str] | None:
    """Old against new head as `router eval` reports them, or None without a benchmark."""
    benches = _benchmarks(held)
    if not benches:
        return None
    held_idx = np.flatnonzero(is_held)
    bench_map = {g: b for g, (b, _) in benches.items()}
    old_s = {g: old_scores[held_idx[idx]] for g, (_, idx) in benches.items()}
    new_s = {g: new_scores[held_idx[idx]] for g, (_, idx) in benches.items()}
    report = compare(bench_map, old_s, name="old")
    for g, row in compare(bench_map, new_s, name="new").items():
        report[g] = {
            "old": report[g]["old"],
            "new": row["new"],
            **{k: v for k, v in report[g].items() if k != "old"},
        }
    return to_json(report, bench_map), format_table(report, bench_map)


def _score_all(
    scorer: Any, texts: list[str]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    scores, embs = [], []
    for start in range(0, len(texts), 64):
        s, e = scorer.score_batch(texts[start : start + 64])
        scores.append(s)
        embs.append(e)
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(scores), np.concatenate(embs)
