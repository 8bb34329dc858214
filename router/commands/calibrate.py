"""`router calibrate`: the score threshold that sends a given share to the strong model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["add_parser", "policy_snippet", "run", "threshold_for_share"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="find the score threshold for a target cloud share",
        description="Read prompts or decision records (JSON lines); use each record's "
        "recorded 'score' when present, else score its 'prompt'. Print the threshold that "
        "sends --cloud-share of them to the strong model, and the policy rule to paste; "
        "with --write, save their quantile table, which `score: {top_percent: N}` rules "
        "read (policy `scoring: {quantiles: FILE}`, or quantiles.json beside the model).",
    )
    parser.add_argument("--in", dest="input", required=True, help="JSON lines: prompts or records")
    parser.add_argument("--cloud-share", type=float, help="share for the strong model, in (0, 1)")
    parser.add_argument(
        "--write", metavar="FILE", help="write the scores' quantile table (JSON) to FILE"
    )
    parser.add_argument("--model", help="classifier directory (default: the shipped one)")
    parser.add_argument("--strong", default="cloud", help="target name of the strong model")
    parser.add_argument("--weak", default="local", help="target name of the weak model")
    parser.set_defaults(func=run)


def threshold_for_share(scores: Sequence[float] | np.ndarray, share: float) -> float:
    """The (1 - share) quantile, rounded down to 4 decimals for the policy file.

    `score >= threshold` then covers about `share` (at least it, barring ties).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to calibrate on")
    # The epsilon keeps float noise (0.69299999...) from costing a whole step.
    return float(np.floor(np.quantile(values, 1.0 - share) * 1e4 + 1e-6) / 1e4)


def policy_snippet(threshold: float, strong: str = "cloud", weak: str = "local") -> str:
    return (
        "routes:\n"
        "  - name: hard-prompts\n"
        f"    match: {{score: {{gte: {threshold:.4f}}}}}\n"
        f"    target: {strong}\n"
        f"default: {{target: {weak}}}\n"
    )


def _scores(records: list[dict[str, object]], model: str | None) -> np.ndarray:
    recorded: list[float | None] = []
    for r in records:
        value = r.get("score")
        recorded.append(float(value) if isinstance(value, int | float) else None)
    need = [i for i, v in enumerate(recorded) if v is None]
    if need:
        texts = []
        for i in need:
            prompt = records[i].get("prompt")
            if not isinstance(prompt, str):
                raise ValueError(f"record {i + 1} has neither a 'score' nor a 'prompt'")
            texts.append(prompt)
        from router.scoring import Scorer

        fresh, _ = Scorer.from_path(model).score_each(texts)
        for i, value in zip(need, fresh, strict=True):
            recorded[i] = float(value)
    return np.asarray(recorded, dtype=np.float64)


def run(args: argparse.Namespace) -> int:
    from router.evaluation import read_jsonl
    from router.scoring import ScorerLoadError

    if args.cloud_share is None and args.write is None:
        print("router calibrate: give --cloud-share, --write or both", file=sys.stderr)
        return 2
    if args.cloud_share is not None and not 0.0 < args.cloud_share < 1.0:
        print("router calibrate: --cloud-share must be in (0, 1)", file=sys.stderr)
        return 2
    try:
        records = list(read_jsonl(args.input))
        scores = _scores(records, args.model)
        if args.write is not None:
            _write_table(scores, args)
        if args.cloud_share is None:
            return 0
        threshold = threshold_for_share(scores, args.cloud_share)
    except (OSError, ValueError, ScorerLoadError) as exc:
        print(f"router calibrate: {exc}", file=sys.stderr)
        return 2
    actual = float(np.mean(scores >= threshold))
    print(f"threshold: {threshold:.4f}")
    print(
        f"# {len(scores)} prompts; score >= {threshold:.4f} sends {actual:.1%} to "
        f"{args.strong} (asked for {args.cloud_share:.1%})"
    )
    print(
        f"# in percent of traffic (resolved through the quantile table when the policy "
        f"loads): score: {{top_percent: {100 * args.cloud_share:g}}}"
    )
    print(policy_snippet(threshold, args.strong, args.weak), end="")
    return 0


def _write_table(scores: np.ndarray, args: argparse.Namespace) -> None:
    from router.policy.quantiles import QuantileTable
    from router.scoring.model_dir import ModelDir, default_model_dir

    model = ModelDir.load(args.model or default_model_dir()).name
    table = QuantileTable.from_scores(scores, source=str(args.input), model=model)
    path = table.write(args.write)
    p = [table.score_at_top(x) for x in (10, 30, 50)]
    print(
        f"# wrote {path}: quantiles of {table.n} scores; top 10% >= {p[0]:.4f}, "
        f"top 30% >= {p[1]:.4f}, top 50% >= {p[2]:.4f}"
    )
