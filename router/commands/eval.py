"""`router eval`: RouteLLM metrics of the classifier next to random and length routers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluate the routing classifier on strong/weak quality data",
        description="Per benchmark: quality/cost curve, APGR, CPT(50%) and CPT(80%) of "
        "the classifier, a random router and a prompt-length router, all computed in this "
        "run. Records need id, prompt, strong_score, weak_score (and benchmark).",
    )
    parser.add_argument("--data", required=True, help="JSON lines with quality per prompt")
    parser.add_argument("--out", help="directory for eval.json and eval.png")
    parser.add_argument("--model", help="classifier directory (default: the shipped one)")
    parser.add_argument(
        "--scores", help="JSON lines of id and score to evaluate instead of running the model"
    )
    parser.set_defaults(func=run)


def _scores_from_file(path: str) -> dict[str, float]:
    from router.evaluation import read_jsonl

    return {str(r["id"]): float(r["score"]) for r in read_jsonl(path)}  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from router.evaluation import compare, format_table, group_by_benchmark, read_jsonl, to_json
    from router.evaluation.plot import plot_available, plot_curves
    from router.scoring import Scorer, ScorerLoadError

    try:
        benches = group_by_benchmark(read_jsonl(args.data))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"router eval: cannot read {args.data}: {exc}", file=sys.stderr)
        return 2
    if not benches:
        print(f"router eval: {args.data} has no records", file=sys.stderr)
        return 2
    name = "scores"
    scores: dict[str, np.ndarray] = {}
    try:
        if args.scores:
            given = _scores_from_file(args.scores)
            for b, bench in benches.items():
                scores[b] = np.asarray([given[i] for i in bench.ids])
        else:
            scorer = Scorer.from_path(args.model)
            name = scorer.model_name
            for b, bench in benches.items():
                scores[b] = scorer.score_each(bench.prompts)[0]
    except KeyError as exc:
        print(f"router eval: no score for id {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ScorerLoadError) as exc:
        print(f"router eval: {exc}", file=sys.stderr)
        return 2

    report = compare(benches, scores, name=name)
    print(format_table(report, benches))
    if any(m.curve.ties_broken for row in report.values() for m in row.values()):
        print("t: equal scores made quantile edges coincide; ties broken by a hash of the id")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"data": str(args.data), "router": name, "benchmarks": to_json(report, benches)}
        (out / "eval.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out / 'eval.json'}", file=sys.stderr)
        if plot_available():
            print(f"wrote {plot_curves(report, out / 'eval.png')}", file=sys.stderr)
        else:
            print(
                "router eval: matplotlib is not installed (pip install 'hybrid-router[plots]');"
                " skipped eval.png",
                file=sys.stderr,
            )
    return 0
