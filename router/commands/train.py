"""`router train`: retrain the routing head on the team's own labelled records."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("train", help="retrain the routing head on labelled records")
    parser.add_argument("--records", nargs="+", required=True)
    parser.add_argument("--base")
    parser.add_argument("--out", required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("router train: not implemented yet", file=sys.stderr)
    return 2
