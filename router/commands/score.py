"""`router score`: score a file of prompts with the routing classifier."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "score",
        help="score prompts with the routing classifier",
        description='Read {"id", "prompt"} JSON lines, write {"id", "score"} JSON lines.',
    )
    parser.add_argument("--in", dest="input", required=True, help="JSON lines with id and prompt")
    parser.add_argument("--out", required=True, help="where to write id and score JSON lines")
    parser.add_argument("--model", help="classifier directory (default: the shipped one)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per model run")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--embeddings", action="store_true", help="also write each prompt's embedding"
    )
    parser.set_defaults(func=run)


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(f"\rscoring [{bar:<30}] {done}/{self.total} {rate:.0f} prompts/s")
        self.stream.flush()

    def close(self) -> None:
        self.update(self.total, force=True)
        self.stream.write("\n")


def run(args: argparse.Namespace) -> int:
    from router.evaluation import read_jsonl
    from router.scoring import Scorer, ScorerLoadError

    try:
        records = list(read_jsonl(args.input))
    except (OSError, ValueError) as exc:
        print(f"router score: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    missing = [i for i, r in enumerate(records, 1) if not isinstance(r.get("prompt"), str)]
    if missing:
        print(f"router score: record {missing[0]} has no string 'prompt'", file=sys.stderr)
        return 2
    try:
        scorer = Scorer.from_path(
            args.model, max_batch=max(1, args.batch_size), threads=args.threads
        )
    except ScorerLoadError as exc:
        print(f"router score: {exc}", file=sys.stderr)
        return 1
    progress = Progress(len(records))
    size = max(1, args.batch_size)
    with open(args.out, "w", encoding="utf-8") as out:
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            scores, embeddings = scorer.score_batch([str(r["prompt"]) for r in chunk])
            for i, record in enumerate(chunk):
                row: dict[str, object] = {
                    "id": record.get("id"),
                    "score": round(float(scores[i]), 6),
                }
                if args.embeddings:
                    row["embedding"] = [round(float(v), 6) for v in embeddings[i]]
                out.write(json.dumps(row) + "\n")
            progress.update(start + len(chunk))
    progress.close()
    print(
        f"router score: {len(records)} prompts -> {args.out} "
        f"({scorer.model_name}, {scorer.provider})",
        file=sys.stderr,
    )
    return 0
