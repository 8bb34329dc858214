"""The router's own CPU per request, with no network and no HTTP server.

    .venv/bin/python bench/overhead/inprocess.py [--requests 20000] [--stream] [--profile]

The app from `create_app` is called directly as ASGI with an in-memory transport
that answers at once (a canned completion, or a 20-chunk stream), under the
rule-only, records-on policy of bench/overhead/run.py. What is left is the
request path itself: parsing, the decision, the record, metrics, headers, and
the relay. `--profile` prints cProfile's top functions (which inflates every
call: read it for where, not how much).

This complements run.py, whose CPU per request also holds uvicorn's and
aiohttp's share; the difference between the router and the minimal proxy there
is roughly this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from router.app import create_app, tune_gc  # noqa: E402
from router.upstreams.transport import RawHeaders, UpstreamResponse  # noqa: E402

ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "fake-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A fake answer of a few words."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
}


def _stream_body(chunks: int = 20) -> bytes:
    events = []
    for i in range(chunks):
        delta = {"content": f"w{i} "} if i else {"role": "assistant", "content": ""}
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [], "usage": ANSWER["usage"]}  # fmt: skip
    events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    return b"".join(events) + b"data: [DONE]\n\n"


PLAIN = json.dumps(ANSWER).encode()
STREAM = _stream_body()


class _Answer:
    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.status_code = 200
        self.headers = RawHeaders(
            [(b"Content-Type", content_type), (b"x-request-id", b"req-1"), (b"Date", b"now")]
        )
        self.content = b""
        self._body = body

    async def aread(self) -> bytes:
        self.content = self._body
        return self._body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        pass


class InstantTransport:
    async def send(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], content: bytes
    ) -> UpstreamResponse:
        if b'"stream":true' in content:
            return _Answer(STREAM, b"text/event-stream")
        return _Answer(PLAIN, b"application/json")

    async def aclose(self) -> None:
        pass


def _policy(work: Path) -> Path:
    path = work / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "upstreams:\n"
        "  fake: {base_url: 'http://127.0.0.1:9/v1', model: fake-model, retries: 0}\n"
        "models: [auto]\n"
        "default: {target: fake}\n"
        f"record: {{path: '{work / 'decisions.jsonl'}', prompts: false}}\n"
        "ui: {enabled: false}\n"
    )
    return path


async def _run(args: argparse.Namespace, work: Path) -> None:
    instant = InstantTransport()
    app = create_app(str(_policy(work)), transport_factory=lambda _: instant, watch=False)
    body = json.dumps(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Summarise the benefits of routing requests."},
            ],
            "max_tokens": 64,
            "stream": args.stream,
        }
    ).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-bench"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def one() -> int:
        scope: dict[str, Any] = {
            "type": "http", "method": "POST", "path": "/v1/chat/completions",
            "headers": headers, "query_string": b"", "http_version": "1.1",
            "scheme": "http", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
            "root_path": "",
        }  # fmt: skip
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        done = asyncio.Event()
        status = 0

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)  # type: ignore[arg-type]
        done.set()
        return status

    await app.runtime.startup()
    try:
        assert await one() == 200
        for _ in range(min(2000, args.requests)):  # warm-up
            await one()
        profile = cProfile.Profile() if args.profile else None
        if profile is not None:
            profile.enable()
        began = time.process_time()
        for _ in range(args.requests):
            await one()
        cpu = time.process_time() - began
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        mode = "stream" if args.stream else "plain"
        print(f"{mode}: {cpu / args.requests * 1e6:.1f} us CPU per request "
              f"({args.requests} requests, in-process, records on)")  # fmt: skip
    finally:
        await app.runtime.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gc", type=int, default=20_000, help="as router serve; 0: Python's")
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    with tempfile.TemporaryDirectory() as tmp:
        tune_gc(args.gc)
        runner(_run(args, Path(tmp)))


if __name__ == "__main__":
    main()
