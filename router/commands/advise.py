"""`router advise`: the next migration step for a policy, as a diff with its predicted effect."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "advise",
        help="recommend the next migration step from records, labels and the live policy",
        description="Replay the next candidate steps of a migration (widen a rollout, move "
        "a score threshold, start a rollout or a shadow) over decision records and their "
        "labels (feedback and judge lines joined by request_id), and print the recommended "
        "step as a diff of the policy file with its predicted cost and quality change, "
        "bootstrap intervals and label coverage; or say that there are not enough labels.",
    )
    parser.add_argument("records", nargs="+", help="decision records, then feedback/judge files")
    parser.add_argument("--policy", required=True, help="the live policy file")
    parser.add_argument(
        "--min-labels",
        type=int,
        default=30,
        help="rated requests a step needs among those it can move (default %(default)s)",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=0.05,
        help="largest quality loss per moved request a step may risk, in label points, "
        "at the 5%% bound (default %(default)s; judge labels are 0..1)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="print the advice as JSON")
    parser.add_argument(
        "--write", metavar="FILE", help="write the recommended policy to FILE (may be --policy)"
    )
    parser.add_argument(
        "--out", help="also write advice.json and a replay report of the step with the advice"
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"router advise: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from router.policy.loader import PolicyError, load_policy
    from router.replay.advise import AdviceOptions, advise
    from router.replay.engine import prepare
    from router.replay.records import load_records

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1
    if args.min_labels < 1 or args.bootstrap < 1 or args.max_drop < 0:
        return _fail("--min-labels and --bootstrap must be >= 1, --max-drop >= 0")
    loaded = load_records(args.records)
    if not loaded.records:
        return _fail("no records")
    text = Path(args.policy).read_text(encoding="utf-8")
    prepared = prepare(loaded.records, default_tenant=policy.auth.default_tenant)
    options = AdviceOptions(args.min_labels, args.max_drop, args.bootstrap, args.seed)
    try:
        advice, chosen = advise(prepared, policy, text, args.policy, options)
    except ValueError as exc:
        return _fail(str(exc))
    advice["inputs"] = loaded.summary()
    if args.write and advice.get("policy_text"):
        Path(args.write).write_text(advice["policy_text"], encoding="utf-8")
        advice["written"] = args.write
    if args.out:
        _write_out(Path(args.out), advice, prepared, policy, chosen, args.policy)
    if args.json:
        print(json.dumps({k: v for k, v in advice.items() if k != "policy_text"}, indent=2))
    else:
        print(render_text(advice))
    return 0


def _write_out(
    out: Path, advice: dict[str, Any], prepared: Any, policy: Any, chosen: Any, path: str
) -> None:
    from router.replay.engine import Replay
    from router.replay.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "advice.json").write_text(json.dumps(advice, indent=2) + "\n")
    # The recommended step replayed against the live policy; the live policy alone without one.
    result = Replay(prepared, chosen or policy, policy if chosen is not None else None).run()
    result.report.update(policy=path, baseline_policy=path if chosen else None, advice=advice)
    write_report(result, out, title=f"Advice for {Path(path).name}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _range(iv: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    if iv is None:
        return "-"
    if iv.get("low") is None:
        return fmt(iv["value"])
    return f"{fmt(iv['value'])} ({fmt(iv['low'])} .. {fmt(iv['high'])})"


def render_text(advice: dict[str, Any]) -> str:
    """The advice for a terminal: every candidate's figures, then the verdict and the diff."""
    lab = advice["labels"]
    cur = advice["current"]
    lines = [
        f"{advice['records']} records; {lab['rated_pairs']} rated by both "
        f"{advice['strong']} and {advice['weak']} ({lab['shadow_pairs']} shadow pairs, "
        f"{lab['unrated_shadow_pairs']} not rated); policy {advice['policy']}: "
        f"{cur['share'].get(advice['weak'], 0.0):.1%} to {advice['weak']}, "
        f"${cur['cost_per_1k_usd']:.4f} per 1k requests",
        "",
        "candidate steps (cost: served + shadow, 5-95% bootstrap; quality: label points "
        "per moved request; coverage: rated / requests the step can move)",
    ]
    for c in advice["candidates"]:
        lines += _candidate_lines(c)
    lines.append("")
    lines += _verdict_lines(advice)
    lines += [f"  -> {t}" for t in advice["todo"]]
    if advice.get("diff"):
        lines += ["", advice["diff"].rstrip("\n")]
    if advice.get("written"):
        lines.append(f"wrote {advice['written']}")
    return "\n".join(lines)


def _candidate_lines(c: dict[str, Any]) -> list[str]:
    q = c["quality_change"]
    cov = c["coverage"]
    return [
        f"  {c['title']}",
        f"      moves {c['moved_share']:.1%}  cost {_range(c['cost_change']['relative'], _pct)}"
        f"  quality {_range(q['moved'] if q else None, _num)}"
        f"  coverage {cov['rated']}/{cov['reach']}  [{_mark(c)}]",
    ]


def _mark(c: dict[str, Any]) -> str:
    """Why a candidate is or is not the pick, in a word or two."""
    if c["kind"] == "start_shadow":
        return "measures"
    if not c["moved"]:
        return "moves nothing"
    if c["cost_change"]["usd"] >= 0:
        return "costs more"
    return "ok" if c["safe"] else ("few labels" if not c["coverage"]["enough"] else "too risky")


def _verdict_lines(advice: dict[str, Any]) -> list[str]:
    """The verdict as a heading, with the recommended step's figures when there is one."""
    opts = advice["options"]
    heading = {
        "step": "Recommended",
        "not_enough_labels": f"Not enough labels (a step needs {opts['min_labels']} rated "
        "requests among those it can move)",
        "hold": "Hold",
        "done": "Nothing left to move",
    }[advice["verdict"]]
    if not advice.get("recommended"):
        return [heading]
    rec = advice["candidates"][advice["recommended_index"]]
    lines = [
        f"{heading}: {advice['recommended']}",
        f"  cost {_range(rec['cost_change']['relative'], _pct)}"
        f" ({rec['cost_change']['per_1k_usd']:+.4f} USD per 1k requests)",
    ]
    if rec["quality_change"]:
        per_req = rec["quality_change"].get("per_request")
        lines.append(
            f"  quality {_range(rec['quality_change']['moved'], _num)} per moved request, "
            f"{_range(per_req, _num)} per request overall"
        )
    lines.append(
        f"  coverage {rec['coverage']['rated']} rated of {rec['coverage']['reach']} "
        f"requests it can move ({rec['coverage']['share']:.1%}; minimum {opts['min_labels']})"
    )
    return lines
