"""`router judge`: rate recorded shadow pairs with an LLM judge; write feedback lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "judge",
        help="rate shadow pairs in decision records with an LLM judge",
        description="Ask an OpenAI-compatible judge which of the two answers of each shadow "
        "pair is better, in both orders; append the verdicts to --out as feedback lines "
        "(source: judge) that replay, train and advise join by request_id. Pairs already "
        "in --out are skipped, so an interrupted run resumes.",
    )
    parser.add_argument("--records", nargs="+", required=True, help="decision record files")
    parser.add_argument("--out", required=True, help="feedback JSON lines (appended)")
    parser.add_argument(
        "--policy", help="take the judge from this policy: its most expensive upstream"
    )
    parser.add_argument("--url", help="judge base URL (overrides the policy's upstream)")
    parser.add_argument("--model", help="judge model name")
    parser.add_argument(
        "--api-key-env", default="JUDGE_API_KEY", help="env var holding the judge's key"
    )
    parser.add_argument("--rubric", help="file with the judge prompt ({prompt}, {answer_a}, ...)")
    parser.add_argument("--max-cost", type=float, help="stop starting pairs past this many USD")
    parser.add_argument("--rate", type=float, help="judge calls per second at most")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per judge call")
    parser.add_argument("--limit", type=int, help="rate at most this many pairs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router.policy import PolicyError, load_policy
    from router.replay.judge import DEFAULT_RUBRIC, JudgeConfig, judge_pairs, pairs_from_records
    from router.replay.progress import Progress
    from router.replay.records import load_records

    url, model, key = args.url, args.model, os.environ.get(args.api_key_env)
    price_in = price_out = 0.0
    if args.policy:
        try:
            policy = load_policy(args.policy)
        except PolicyError as exc:
            print(f"router judge: {exc}", file=sys.stderr)
            return 2
        strongest = max(
            policy.upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)
        )
        url = url or strongest.base_url
        model = model or strongest.model
        key = key or strongest.api_key
        price_in, price_out = strongest.price.input, strongest.price.output
    if not url or not model:
        print("router judge: give --policy, or --url and --model", file=sys.stderr)
        return 2
    rubric = DEFAULT_RUBRIC
    if args.rubric:
        rubric = Path(args.rubric).read_text(encoding="utf-8")
        missing = [k for k in ("{prompt}", "{answer_a}", "{answer_b}") if k not in rubric]
        if missing:
            print(f"router judge: the rubric lacks {', '.join(missing)}", file=sys.stderr)
            return 2
    loaded = load_records(args.records)
    pairs, textless = pairs_from_records(loaded.records)
    if args.limit is not None:
        pairs = pairs[: args.limit]
    cfg = JudgeConfig(
        base_url=url.rstrip("/"),
        model=model,
        api_key=key,
        rubric=rubric,
        price_in=price_in,
        price_out=price_out,
        max_cost_usd=args.max_cost,
        rate=args.rate,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
    )
    progress = Progress("judging", len(pairs), min_total=1)
    stats = asyncio.run(judge_pairs(pairs, cfg, Path(args.out), tick=progress.update))
    progress.close()
    summary = stats.as_dict() | {"pairs_without_text": textless, "out": args.out}
    print(
        f"{stats.rated} pairs rated ({stats.ties} ties, wins {stats.wins}), "
        f"{stats.skipped_done} already rated, {stats.unrated} left unrated "
        f"({stats.failed_calls} failed calls, {stats.unparseable} unreadable verdicts), "
        f"{stats.stopped_by_cost} not started (cost cap); judge cost ${stats.cost_usd:.4f}"
    )
    print(json.dumps(summary))
    return 0
