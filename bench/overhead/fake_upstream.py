"""A fast fake OpenAI-compatible upstream for the overhead benchmark.

Raw asyncio protocol on uvloop with httptools' C request parser: keep-alive
HTTP/1.1, canned JSON for plain requests (chat, and a Responses and an Anthropic
Messages answer on `/v1/responses` and `/v1/messages`) and a chunked SSE stream
of `--chunks` content events (plus a usage event when
`stream_options.include_usage` is set, as OpenAI does, then `data: [DONE]`).
Each SSE event is a separate write, so a proxy sees separate chunks whenever the
receiver keeps up.

    python bench/overhead/fake_upstream.py --port 18900 [--chunks 20]

Prints `ready <port>` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable

import httptools

_PLAIN_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A canned answer from the bench."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    },
    separators=(",", ":"),
).encode()


def _json_response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_PLAIN = _json_response(b"200 OK", _PLAIN_BODY)
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
_NOT_FOUND = _json_response(
    b"404 Not Found", b'{"error":{"message":"not found","type":"invalid_request_error"}}'
)
_EMBEDDINGS = _json_response(
    b"200 OK",
    b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":['
    + b",".join(b"0.0%d" % (i % 10) for i in range(384))
    + b']}],"model":"fake-embed","usage":{"prompt_tokens":8,"total_tokens":8}}',
)
_COMPLETIONS = _json_response(
    b"200 OK",
    b'{"id":"cmpl-bench","object":"text_completion","created":1700000000,"model":"fake-model",'
    b'"choices":[{"text":" ok","index":0,"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}',
)
_MODERATIONS = _json_response(
    b"200 OK",
    b'{"id":"modr-bench","model":"omni-moderation-latest","results":[{"flagged":false}]}',
)
# A Responses and a Messages answer, for routers that pass those APIs on untranslated.
_RESPONSES = _json_response(
    b"200 OK",
    json.dumps(
        {
            "id": "resp_bench",
            "object": "response",
            "created_at": 1700000000,
            "status": "completed",
            "model": "fake-model",
            "output": [
                {
                    "type": "message",
                    "id": "msg_bench",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "A canned answer.", "annotations": []}
                    ],
                }
            ],
            "usage": {"input_tokens": 12, "output_tokens": 8, "total_tokens": 20},
        },
        separators=(",", ":"),
    ).encode(),
)
_MESSAGES = _json_response(
    b"200 OK",
    b'{"id":"msg_bench","type":"message","role":"assistant","model":"fake-claude",'
    b'"content":[{"type":"text","text":"A canned answer."}],"stop_reason":"end_turn",'
    b'"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":8}}',
)
_MODELS = _json_response(
    b"200 OK", b'{"object":"list","data":[{"id":"fake-model","object":"model","created":0}]}'
)


def _frame(payload: bytes) -> bytes:
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n" % len(event) + event + b"\r\n"


def _stream_frames(chunks: int) -> tuple[list[bytes], bytes, bytes]:
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
    }
    frames = []
    for i in range(chunks):
        delta: dict[str, str] = {"content": f"tok{i} "}
        if i == 0:
            delta["role"] = "assistant"
        finish = "stop" if i == chunks - 1 else None
        event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        frames.append(_frame(json.dumps(event, separators=(",", ":")).encode()))
    usage = {
        **base,
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
    }
    usage_frame = _frame(json.dumps(usage, separators=(",", ":")).encode())
    done = _frame(b"[DONE]") + b"0\r\n\r\n"
    return frames, usage_frame, done


class FakeUpstream(asyncio.Protocol):
    frames: list[bytes] = []
    usage_frame = b""
    done_frame = b""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        path = self.url.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            try:
                request = json.loads(b"".join(self.body) or b"{}")
            except ValueError:
                request = {}
            if request.get("stream"):
                transport.write(_STREAM_HEAD)
                for frame in self.frames:
                    transport.write(frame)
                options = request.get("stream_options") or {}
                if options.get("include_usage"):
                    transport.write(self.usage_frame)
                transport.write(self.done_frame)
            else:
                transport.write(_PLAIN)
        elif path.endswith(b"/embeddings"):
            transport.write(_EMBEDDINGS)
        elif path.endswith(b"/completions"):
            transport.write(_COMPLETIONS)
        elif path.endswith(b"/responses"):
            transport.write(_RESPONSES)
        elif path.endswith(b"/messages"):
            transport.write(_MESSAGES)
        elif path.endswith(b"/moderations"):
            transport.write(_MODERATIONS)
        elif path.endswith(b"/models"):
            transport.write(_MODELS)
        else:
            transport.write(_NOT_FOUND)
        if not self.parser.should_keep_alive():
            transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeUpstream, host, port, backlog=4096, reuse_address=True)
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18900)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    frames, usage_frame, done = _stream_frames(args.chunks)
    FakeUpstream.frames, FakeUpstream.usage_frame, FakeUpstream.done_frame = (
        frames,
        usage_frame,
        done,
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    main()
