"""`router cache stats|clear`: look into or empty the shared (Redis) cache."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("cache", help="inspect or clear the semantic cache in Redis")
    parser.add_argument("action", choices=["stats", "clear"])
    parser.add_argument("--tenant", help="only this tenant's entries")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--policy", metavar="FILE", help="read the cache settings of a policy")
    source.add_argument("--redis-url", metavar="URL", help="the Redis to use")
    parser.add_argument("--namespace", help="key prefix (default: the policy's, or 'hr')")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from router.cache import CacheConfig
    from router.policy import load_policy

    if args.policy:
        # The policy loader reads the cache section, so the CLI and the server agree.
        config = load_policy(args.policy).cache or CacheConfig(enabled=False)
    else:
        config = CacheConfig(redis_url=args.redis_url)
    if args.namespace:
        config = replace(config, namespace=args.namespace)
    # A command may wait for Redis longer than a request would.
    return replace(config, lookup_timeout_ms=5000, store_timeout_ms=5000)


async def _run(args: argparse.Namespace) -> int:
    from router.cache import build_cache

    config = _config(args)
    if not config.redis_url:
        print(
            "no redis_url: the in-memory cache lives inside each server process "
            "(give --redis-url or a policy whose cache section sets redis_url)",
            file=sys.stderr,
        )
        return 2
    cache = build_cache(config)
    try:
        if args.action == "stats":
            stats = await cache.stats(args.tenant)
            print(json.dumps({"tenant": args.tenant, **stats}, indent=2))
        else:
            removed = await cache.clear(args.tenant)
            who = f"tenant {args.tenant!r}" if args.tenant else "all tenants"
            print(f"removed {removed} entries ({who})")
    finally:
        await cache.close()
    return 0


def run(args: argparse.Namespace) -> int:
    from router.policy import PolicyError

    try:
        return asyncio.run(_run(args))
    except PolicyError as error:
        for message in error.messages:
            print(message, file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"router cache: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # redis errors: a message, not a traceback
        print(f"router cache: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
