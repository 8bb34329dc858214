"""`router train`: retrain the routing head on the team's own labelled records."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train",
        help="retrain the routing head on labelled decision records",
        description="Warm-start the routing head on records labelled by feedback, rated "
        "shadow pairs or quality labels (the base head is kept and corrected, pulled towards "
        "itself); write a new classifier directory and compare it with the old one on "
        "held-out records.",
    )
    parser.add_argument("--records", nargs="+", required=True, help="decision record files")
    parser.add_argument("--base", help="classifier directory to start from (default: shipped)")
    parser.add_argument("--out", required=True, help="directory for the new classifier")
    parser.add_argument(
        "--label-map",
        default="strong=cloud,weak=local",
        help="which upstream is the strong and which the weak model (default: %(default)s)",
    )
    parser.add_argument(
        "--holdout", type=float, default=0.2, help="share of records held out (default 0.2)"
    )
    parser.add_argument(
        "--l2",
        type=float,
        help="L2 penalty: towards the base head when warm-starting (default 10), "
        "towards zero with --from-scratch (default 1)",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="replace the base head with a plain logistic head instead of correcting it "
        "(forgets the domain prior)",
    )
    parser.add_argument(
        "--no-kernel",
        action="store_true",
        help="warm-start with the linear correction only: no kernel over the records' "
        "embeddings, even where cross-validation on them says it helps",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router.replay.convert import parse_label_map
    from router.replay.records import load_records
    from router.replay.training import train
    from router.scoring import ScorerLoadError

    try:
        label_map = parse_label_map(args.label_map)
    except ValueError as exc:
        print(f"router train: {exc}", file=sys.stderr)
        return 2
    if not 0.0 <= args.holdout < 1.0:
        print("router train: --holdout must be in [0, 1)", file=sys.stderr)
        return 2
    loaded = load_records(args.records)
    try:
        result = train(
            loaded.records,
            args.out,
            base=args.base,
            strong=label_map["strong"],
            weak=label_map["weak"],
            holdout=args.holdout,
            l2=args.l2 if args.l2 is not None else (1.0 if args.from_scratch else 10.0),
            warm=not args.from_scratch,
            kernel=not args.no_kernel,
        )
    except (ValueError, ScorerLoadError) as exc:
        print(f"router train: {exc}", file=sys.stderr)
        return 1
    s = result.summary
    print(
        f"trained on {s['train']} records, held out {s['held_out']} "
        f"(strong needed: {s['strong_needed_rate']:.1%}); new classifier in {result.out}"
    )
    kernel = s.get("kernel")
    if kernel:
        stiff = f"l2 x {kernel['l2_factor']:g}" if kernel["l2_factor"] != 1 else "l2 as given"
        if kernel["kept"]:
            print(
                f"  linear correction ({stiff}) plus a kernel over {kernel['anchors']} records "
                f"(beta {kernel['beta']:g}, shrink {kernel['shrink']:g}, scale "
                f"{kernel['scale']:g}): cross-validated rank gain {kernel['cv_gain']:+.4f} "
                f"(se {kernel['cv_stderr']:.4f})"
            )
        else:
            print(
                f"  linear correction ({stiff}), no kernel: cross-validation on the records "
                "found no clear gain from one"
            )
    labels = s["held_out_labels"]
    if labels:
        for name in ("old", "new"):
            m = labels[name]
            auc = "-" if m["auc"] is None else f"{m['auc']:.3f}"
            print(
                f"  {name}: log loss {m['log_loss']:.4f}  accuracy {m['accuracy']:.3f}  AUC {auc}"
            )
    if result.table:
        print(result.table)
    print(json.dumps({"report": str(result.out / "train-report.json")}))
    return 0
