"""Demo upstreams: two deterministic OpenAI-compatible stand-ins ("local" and "cloud").

They let a newcomer watch routing work with no model and no key. Every answer
says it is a demo and which stand-in wrote it; the same prompt always gets the
same answer, different prompts different answers.

They also stand in for a judge, so that `router judge` and `router advise` can
be tried on the demo: a request laid out like `router judge`'s default rubric
(`[Request]`, `[Answer A]`, `[Answer B]`) gets a verdict line instead of an
answer. The rule is fixed and says nothing about real quality: a request longer
than `HARD_CHARS` characters counts as hard and the answer written by the demo
"cloud" model wins; anything else is a tie.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from typing import Any

from starlette.types import Receive, Scope, Send

__all__ = [
    "DEMO_PORTS",
    "HARD_CHARS",
    "DemoPortsBusy",
    "DemoUpstream",
    "demo_verdict",
    "start_demo_upstreams",
]

DEMO_PORTS = {"local": 18081, "cloud": 18082}
_WORDS = (
    "routing",
    "model",
    "answer",
    "prompt",
    "cheap",
    "strong",
    "cache",
    "policy",
    "token",
    "latency",
    "budget",
    "shadow",
    "rollout",
    "score",
    "tenant",
    "replay",
)


def demo_answer(name: str, prompt: str) -> str:
    digest = hashlib.sha256(f"{name}\x00{prompt}".encode()).digest()
    words = " ".join(_WORDS[b % len(_WORDS)] for b in digest[:12])
    return f"[DEMO {name} model] {words}."


#: A judged request longer than this is "hard" for the demo judge (about the longest
#: seventh of the routing data's dev prompts, which the classifier mostly ranks hard).
HARD_CHARS = 800
_RUBRIC = re.compile(
    r"\[Request\]\n(?P<request>.*?)\n\n\[Answer A\]\n(?P<a>.*?)\n\n\[Answer B\]\n(?P<b>.*?)\n\n",
    re.S,
)


def demo_verdict(prompt: str) -> str | None:
    """The demo judge's reply to a rubric prompt, or None when `prompt` is not one."""
    found = _RUBRIC.search(prompt)
    if found is None:
        return None
    request = found["request"]
    if len(request) <= HARD_CHARS:
        return f"[DEMO judge] An easy request ({len(request)} characters): a tie.\nVERDICT: TIE"
    cloud = "[DEMO cloud model]"
    a, b = found["a"].startswith(cloud), found["b"].startswith(cloud)
    winner = "A" if a and not b else "B" if b and not a else "TIE"
    return (
        f"[DEMO judge] A hard request ({len(request)} characters): the cloud model's "
        f"answer is preferred.\nVERDICT: {winner}"
    )


def _prompt_of(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


class DemoUpstream:
    """A tiny ASGI OpenAI-compatible server; `chunks` sets how many SSE chunks an answer has."""

    def __init__(self, name: str, chunks: int = 8) -> None:
        self.name = name
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["path"].endswith("/chat/completions"):
            await self.complete(json.loads(body or b"{}"), send)
        else:
            await _json(
                send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )

    async def complete(self, request: dict[str, Any], send: Send) -> None:
        prompt = _prompt_of(request.get("messages") or [])
        text = demo_verdict(prompt) or demo_answer(self.name, prompt)
        model = request.get("model", self.name)
        usage = {
            "prompt_tokens": max(1, len(prompt) // 4),
            "completion_tokens": len(text.split()),
            "total_tokens": max(1, len(prompt) // 4) + len(text.split()),
        }
        cid = "chatcmpl-demo-" + hashlib.sha256(text.encode()).hexdigest()[:12]
        if not request.get("stream"):
            await _json(send, 200, _completion(cid, model, text, usage))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        for i, piece in enumerate(_pieces(text, self.chunks)):
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        tail = _event(end)
        if (request.get("stream_options") or {}).get("include_usage"):
            tail += _event({**base, "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})


def _completion(cid: str, model: Any, text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _pieces(text: str, chunks: int) -> list[str]:
    """`text` in about `chunks` runs of whole words, spaces kept, for the stream."""
    words = text.split(" ")
    step = max(1, -(-len(words) // chunks))
    return [
        " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
        for i in range(0, len(words), step)
    ]


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class DemoPortsBusy(RuntimeError):
    pass


def start_demo_upstreams(host: str = "127.0.0.1") -> threading.Thread:
    """Serve both stand-ins from a daemon thread; returns once they accept connections.

    Raises DemoPortsBusy when a port is taken (another `router serve --demo`?):
    silently using whatever answers there would make the demo lie.
    """
    import socket

    import uvicorn

    for name, port in DEMO_PORTS.items():
        with socket.socket() as probe:
            # As uvicorn binds: connections of an earlier run in TIME_WAIT don't count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise DemoPortsBusy(
                    f"port {port} for the demo '{name}' upstream is in use"
                    " (is another `router serve --demo` running?)"
                ) from None

    ready = threading.Event()

    async def main() -> None:
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    DemoUpstream(name), host=host, port=port, log_level="warning", lifespan="off"
                )
            )
            for name, port in DEMO_PORTS.items()
        ]
        tasks = [asyncio.ensure_future(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                ready.set()  # a server failed to start; the caller sees it is not alive
                return
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*tasks)

    thread = threading.Thread(
        target=lambda: asyncio.run(main()), name="demo-upstreams", daemon=True
    )
    thread.start()
    ready.wait(10)
    if not thread.is_alive():
        raise DemoPortsBusy("the demo upstreams did not start")
    return thread
