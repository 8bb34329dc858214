"""`router replay`: what a candidate policy would have done with recorded traffic.

Offline by default (no upstream is called); `--live` re-sends the recorded
prompts to a real endpoint instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.replay.engine import Prepared, ReplayResult

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="replay decision records against a candidate policy",
        description="Replay decision records through the live router's decide() with a "
        "candidate policy; report shares, cost, quality and changed routes.",
    )
    parser.add_argument("records", nargs="*", help="decision record files (JSON lines)")
    parser.add_argument("--policy", required=True, help="the candidate policy")
    parser.add_argument("--baseline", help="the current policy (default: the recorded decisions)")
    parser.add_argument("--out", required=True, help="directory for report.json and report.html")
    parser.add_argument(
        "--rescore", action="store_true", help="score the recorded prompts again with --model"
    )
    parser.add_argument("--model", help="classifier directory (default: the shipped one)")
    parser.add_argument(
        "--from-routing-data",
        metavar="FILE",
        help="convert strong/weak routing data (shared/data/routing/*.jsonl) into records "
        "(scored with --model) and replay those",
    )
    parser.add_argument(
        "--label-map",
        default="strong=cloud,weak=local",
        help="which upstream stands for the strong and the weak model (default: %(default)s)",
    )
    parser.add_argument("--sweep-rule", help="the score rule to sweep (default: the first one)")
    parser.add_argument(
        "--tokens-out",
        type=float,
        help="answer tokens assumed where a record has none (default: mean of the records)",
    )
    live = parser.add_argument_group("live replay")
    live.add_argument("--live", action="store_true", help="re-send the recorded prompts")
    live.add_argument("--target-url", help="OpenAI-compatible base URL, e.g. http://host:8080/v1")
    live.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    live.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    live.add_argument("--api-key", help="bearer key for the target (default: none)")
    live.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    live.add_argument("--limit", type=int, help="send at most this many records")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"router replay: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from router.policy.loader import PolicyError, load_policy

    try:
        candidate = load_policy(args.policy)
        baseline = load_policy(args.baseline) if args.baseline else None
    except PolicyError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1
    if args.live:
        return _run_live(args, candidate)
    return _run_offline(args, candidate, baseline)


def _run_live(args: argparse.Namespace, candidate: Any) -> int:
    from router.replay.live import LiveOptions, replay_live
    from router.replay.records import load_records

    if not args.target_url:
        return _fail("--live needs --target-url")
    if not args.records:
        return _fail("--live needs a records file")
    loaded = load_records(args.records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = LiveOptions(
        target_url=args.target_url,
        rate=args.rate,
        concurrency=args.concurrency,
        api_key=args.api_key,
        timeout=args.timeout,
        limit=args.limit,
    )
    summary = replay_live(loaded.records, options, out / "outcomes.jsonl", candidate)
    (out / "live.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def _run_offline(args: argparse.Namespace, candidate: Any, baseline: Any) -> int:
    from router.replay.convert import parse_label_map
    from router.replay.engine import prepare
    from router.replay.report import write_report

    try:
        label_map = parse_label_map(args.label_map)
    except ValueError as exc:
        return _fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    got = _offline_records(args, label_map)
    if isinstance(got, str):
        return _fail(got)
    records, rescore, loaded = got
    if rescore:
        code = _rescore_offline(args, records, out)
        if code:
            return code
    t0 = time.perf_counter()
    prepared: Prepared = prepare(
        records, default_tenant=candidate.auth.default_tenant, tokens_out=args.tokens_out
    )
    try:
        result = _replay_with_progress(args, prepared, candidate, baseline, label_map)
    except ValueError as exc:
        return _fail(str(exc))
    elapsed = time.perf_counter() - t0
    report = result.report
    report["policy"] = args.policy
    report["baseline_policy"] = args.baseline
    report["inputs"].update(loaded, rescored=rescore, replay_seconds=round(elapsed, 3))
    report["assumptions"] = _assumptions(prepared, report)
    write_report(result, out, title=f"Replay of {Path(args.policy).name}")
    _print_summary(report, out)
    return 0


def _offline_records(
    args: argparse.Namespace, label_map: dict[str, str]
) -> tuple[list[dict[str, Any]], bool, dict[str, Any]] | str:
    """The records, whether to rescore them, and where they came from; or why there are none."""
    from router.evaluation import read_jsonl
    from router.replay.convert import convert_routing_rows
    from router.replay.records import load_records

    if args.from_routing_data:
        records = convert_routing_rows(read_jsonl(args.from_routing_data), label_map)
        loaded: dict[str, Any] = {"records": len(records), "converted_from": args.from_routing_data}
        rescore = True
    elif args.records:
        record_set = load_records(args.records)
        records, rescore, loaded = record_set.records, args.rescore, record_set.summary()
    else:
        return "give a records file or --from-routing-data"
    if not records:
        return "no records to replay"
    return records, rescore, loaded


def _rescore_offline(args: argparse.Namespace, records: list[dict[str, Any]], out: Path) -> int:
    # Converted evaluation data is scored as `router eval` scores it.
    code = _rescore(records, args.model, alone=bool(args.from_routing_data))
    if code:
        return code
    if args.from_routing_data:
        # Scores included, so a later replay of the same data needs no model.
        with open(out / "records.jsonl", "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    return 0


def _replay_with_progress(
    args: argparse.Namespace,
    prepared: Prepared,
    candidate: Any,
    baseline: Any,
    label_map: dict[str, str],
) -> ReplayResult:
    from router.replay.engine import Replay
    from router.replay.progress import Progress

    # One pass for the candidate, one for the sweep, one for a baseline policy.
    passes = 2 + (1 if baseline is not None else 0)
    progress = Progress("replay", passes * len(prepared))
    try:
        return Replay(
            prepared,
            candidate,
            baseline,
            strong=label_map["strong"] if label_map["strong"] in candidate.upstreams else None,
            weak=label_map["weak"] if label_map["weak"] in candidate.upstreams else None,
            sweep_rule=args.sweep_rule,
            tick=progress.update,
        ).run()
    finally:
        progress.close()


def _rescore(records: list[dict[str, Any]], model: str | None, alone: bool = False) -> int:
    from router.replay.progress import Progress
    from router.replay.rescore import rescore
    from router.scoring import Scorer, ScorerLoadError

    try:
        scorer = Scorer.from_path(model)
    except ScorerLoadError as exc:
        return _fail(str(exc))
    progress = Progress("scoring", len(records), min_total=500)
    try:
        rescore(records, scorer, tick=progress.update, alone=alone)
    finally:
        progress.close()
    return 0


def _assumptions(prepared: Any, report: dict[str, Any]) -> list[str]:
    n = len(prepared)
    notes = [
        "Decisions come from the live router's decide(); the first target is taken as the "
        "answering upstream (upstream failures and fallbacks are not replayed).",
        "A request that moves to another upstream is priced with its recorded tokens at the "
        "new upstream's prices (the other model's answer length is unknown).",
        "Budgets are not replayed: every tenant is treated as within budget.",
    ]
    if prepared.tokens_estimated:
        notes.append(
            f"{prepared.tokens_estimated} of {n} records lack token counts: prompt tokens are "
            "estimated at 4 characters a token, answer tokens at the mean of the others "
            "(or --tokens-out)."
        )
    if prepared.conversation_exact < n:
        notes.append(
            f"{n - prepared.conversation_exact} records have neither messages nor a conversation "
            "key: sticky-by-conversation rollouts sample them by request id instead (same "
            "share, different sample)."
        )
    notes.append(
        "Headers are not in v1 records: header rules match only records that carry a "
        "`headers` object; sticky header:<name> falls back to the conversation key."
    )
    unscored = n - report["inputs"]["scored_records"]
    if unscored:
        notes.append(
            f"{unscored} records have no score: score rules send them to on_classifier_error "
            "(use --rescore with recorded prompts)."
        )
    return notes


def _print_summary(report: dict[str, Any], out: Path) -> None:
    ups = report["upstreams"]
    print(f"{report['records']} records, compared with {report['compared_with']}")
    head = f"{'':<10} {'cost USD':>10} {'quality':>8} {'coverage':>8} " + " ".join(
        f"{u:>8}" for u in ups
    )
    print(head)
    for name in ("baseline", "candidate"):
        s = report[name]
        q = "-" if s["quality"] is None else f"{s['quality']:.4f}"
        shares = " ".join(f"{s['share'].get(u, 0.0):>8.1%}" for u in ups)
        print(f"{name:<10} {s['cost_usd']:>10.4f} {q:>8} {s['quality_coverage']:>8.1%} {shares}")
    oracle = report.get("oracle")
    if oracle:
        print(f"oracle     {oracle['cost_usd']:>10.4f} {oracle['quality']:>8.4f}")
    ch = report["changes"]
    print(f"changed routes: {ch['count']} ({ch['share']:.1%}) {ch['by_pair']}")
    for group, m in (report.get("eval") or {}).items():
        print(
            f"{group:<10} APGR {m['apgr']:.3f}  CPT(50%) {m['cpt50']:.2f}%  "
            f"CPT(80%) {m['cpt80']:.2f}%"
        )
    print(f"wrote {out / 'report.json'} and {out / 'report.html'}")
