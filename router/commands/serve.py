"""`router serve`: run the sidecar under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the router")
    parser.add_argument(
        "--policy",
        default=os.environ.get("ROUTER_POLICY"),
        help="policy YAML (default: $ROUTER_POLICY, else policies/default.yaml)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also start two demo upstreams on loopback and use policies/demo.yaml",
    )
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from router.logs import configure_logging
    from router.policy.loader import PolicyError, default_policy_path, load_policy

    configure_logging(args.log_level)
    import structlog

    log = structlog.get_logger("router")
    policy_path = args.policy or str(
        default_policy_path("demo.yaml" if args.demo else "default.yaml")
    )
    try:
        limits = load_policy(policy_path).limits
    except PolicyError as exc:
        for message in exc.messages:
            print(message)
        return 1
    if args.demo:
        from router.demo import DEMO_PORTS, DemoPortsBusy, start_demo_upstreams

        try:
            start_demo_upstreams()
        except DemoPortsBusy as exc:
            print(f"router serve --demo: {exc}", file=sys.stderr)
            return 1
        log.warning(
            "demo_mode",
            upstreams={n: f"http://127.0.0.1:{p}/v1" for n, p in DEMO_PORTS.items()},
            note="DEMO: answers come from built-in stand-ins, not real models",
        )
    os.environ["ROUTER_POLICY"] = policy_path
    os.environ["ROUTER_LOG_LEVEL"] = args.log_level
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker is a process: /metrics must add up all of them, not the one asked.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hybrid-router-metrics-")
    uvicorn.run(
        "router.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # httptools plus header timeout, header limits and a connection cap
        # (router.serving); each worker reads the limits from $ROUTER_POLICY.
        http="router.serving:RouterHttpProtocol",
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float works
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0
