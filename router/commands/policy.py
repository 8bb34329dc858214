"""`router policy check FILE`: validate a policy; exit 1 with every error, 0 when valid."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("policy", help="work with policy files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a policy file")
    check.add_argument("file")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from router.policy.loader import PolicyError, load_policy

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        print(f"{len(exc.messages)} error(s)", file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok ({len(policy.upstreams)} upstreams, {len(policy.routes)} routes"
        f" + default, models: {', '.join(policy.models)})"
    )
    return 0
