"""Real HTTP servers on loopback for tests: uvicorn in a thread, and fake upstreams."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from router.demo import DemoUpstream, read_body


@contextmanager
def serve(app: ASGIApp, lifespan: str = "on", **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port; yield its base URL.

    `options` go to `uvicorn.Config` (e.g. `http=` a protocol class, `timeout_keep_alive=`).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan=lifespan,
        loop="asyncio",
        **{"http": "httptools", **options},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Faults:
    """What the fake does to the next requests. Tests set these between calls."""

    status: int | None = None  # answer with this error status
    times: int = 1_000_000  # ... for this many requests, then behave
    delay: float = 0.0  # seconds before the response headers
    cut_after: int | None = None  # end a stream after this many chunks, without [DONE]
    chunk_delay: float = 0.0  # seconds between stream chunks
    error_body: dict[str, Any] | None = None


class FakeUpstream(DemoUpstream):
    """A demo upstream that can also fail, stall and cut streams, and that remembers requests."""

    def __init__(self, name: str, chunks: int = 8) -> None:
        super().__init__(name, chunks)
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.disconnected = 0
        self.streamed = 0  # chunks sent by the slow stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = json.loads(raw or b"{}")
        self.seen.append(Seen(scope["path"], headers, body))
        f = self.faults
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.status is not None and f.times > 0:
            f.times -= 1
            err = f.error_body or {
                "error": {"message": f"fake {self.name} failure", "type": "server_error"}
            }
            data = json.dumps(err).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": f.status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        if body.get("stream") and (f.cut_after is not None or f.chunk_delay):
            await self._slow_stream(receive, send)
            return
        await self.complete(body, send)

    async def _slow_stream(self, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        limit = self.faults.cut_after if self.faults.cut_after is not None else 10_000
        for i in range(limit):
            if gone.is_set():
                self.disconnected += 1
                return
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True,
                }
            )
            self.streamed += 1
            if self.faults.chunk_delay:
                await asyncio.sleep(self.faults.chunk_delay)
        watcher.cancel()
        # Ending here without [DONE] is what a crashed upstream looks like.
        await send({"type": "http.response.body", "body": b""})
