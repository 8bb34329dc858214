"""The `router` command line: one sub-command per module in `router.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines `add_parser(subparsers)` and sets `func=run` on its parser.
# Imported lazily so that `router policy check` does not pay for onnxruntime.
_COMMANDS = (
    "router.commands.serve",
    "router.commands.policy",
    "router.commands.cache",
    "router.commands.replay",
    "router.commands.train",
    "router.commands.score",
    "router.commands.calibrate",
    "router.commands.eval",
    "router.commands.judge",
    "router.commands.advise",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router", description="hybrid-router: route OpenAI traffic between models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
