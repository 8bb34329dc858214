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
        "sends --cloud-share of them to the strong model, and the policy rule to paste.",
    )
    parser.add_argument("--in", dest="input", required=True, help="JSON lines: prompts or records")
    parser.add_argument(
        "--cloud-share", type=float, required=True, help="share for the strong model, in (0, 1)"
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

    if not 0.0 < args.cloud_share < 1.0:
        print("router calibrate: --cloud-share must be in (0, 1)", file=sys.stderr)
        return 2
    try:
        records = list(read_jsonl(args.input))
        scores = _scores(records, args.model)
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
    print(policy_snippet(threshold, args.strong, args.weak), end="")
    return 0
