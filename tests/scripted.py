"""A scripted OpenAI-compatible upstream for proxy-fidelity tests.

Unlike the demo upstream it answers with whatever completion a test sets
(logprobs, reasoning, tool calls), streams it the way vLLM and OpenAI do (one
token a chunk, logprobs on each), and sends the headers a real API sends:
`x-request-id`, rate-limit headers, a session cookie. It also serves embeddings,
legacy completions and a files listing, and remembers every request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from router.demo import read_body

_ids = itertools.count(1)


@dataclass
class Call:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def completion_of(text: str = "Hello there friend", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, **message},
                "logprobs": None,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def stream_of(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks an upstream streams for `completion`: a token (word) a chunk."""
    base = {k: completion[k] for k in ("id", "created", "model") if k in completion}
    base["object"] = "chat.completion.chunk"
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]
    out: list[dict[str, Any]] = []

    def chunk(index: int, delta: dict[str, Any], finish: Any = None, logprobs: Any = None) -> None:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        out.append({**base, "choices": [choice]})

    for choice in completion["choices"]:
        index, message = choice["index"], choice["message"]
        # OpenAI opens with content "" for a text answer and null for a tool-call one.
        opening = "" if isinstance(message.get("content"), str) else None
        chunk(index, {"role": message.get("role", "assistant"), "content": opening})
        for key in ("reasoning_content", "reasoning"):
            text = message.get(key) or ""
            for word in _words(text):
                chunk(index, {key: word})
        tokens = (choice.get("logprobs") or {}).get("content") or []
        words = _words(message.get("content") or "")
        for i, word in enumerate(words):
            # One logprob entry rides with each token, as OpenAI streams them.
            lp = {"content": tokens[i : i + 1], "refusal": None} if tokens else None
            if tokens and i == len(words) - 1:
                lp = {"content": tokens[i:], "refusal": None}
            chunk(index, {"content": word}, logprobs=lp)
        if message.get("refusal"):
            chunk(index, {"refusal": message["refusal"]})
        for n, call in enumerate(message.get("tool_calls") or []):
            args = call["function"]["arguments"]
            half = len(args) // 2
            head = {"index": n, "id": call["id"], "type": "function"}
            chunk(index, {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": args[:half]}}]})
            chunk(index, {"tool_calls": [{"index": n, "function": {"arguments": args[half:]}}]})
        if message.get("annotations"):
            chunk(index, {"annotations": message["annotations"]})
        chunk(index, {}, choice["finish_reason"])
    out.append({**base, "choices": [], "usage": completion.get("usage")})
    return out


def _words(text: str) -> list[str]:
    if not text:
        return []
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


@dataclass
class ScriptedUpstream:
    name: str
    answer: dict[str, Any] = field(default_factory=completion_of)
    calls: list[Call] = field(default_factory=list)
    # The next `fail_times` chat requests get `fail_status` with `fail_headers`.
    fail_status: int | None = None
    fail_times: int = 0
    fail_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    fail_body: bytes = b'{"error": {"message": "fake failure", "type": "server_error"}}'
    # "cut": a plain body that breaks off; "garbage": 200 with a body that is not JSON;
    # "hang": headers, then nothing; "redirect": a 302 to elsewhere.
    misbehave: str | None = None

    def chat_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/chat/completions")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = scope["path"]
        self.calls.append(
            Call(scope["method"], path, scope.get("query_string", b"").decode(), headers, body)
        )
        n = next(_ids)
        common = [
            (b"x-request-id", f"req_{self.name}_{n}".encode()),
            (b"x-ratelimit-remaining-requests", b"99"),
            (b"openai-processing-ms", b"12"),
            (b"set-cookie", f"upstream_session={self.name}-{n}; Path=/".encode()),
            (b"x-upstream-secret-header", b"not-for-clients"),
        ]
        if path.endswith("/chat/completions"):
            await self._chat(body or {}, send, common)
        elif path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5, n * 0.0]}
                for i, t in enumerate(inputs)
            ]
            usage = {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)}
            answer = {"object": "list", "data": data, "model": body["model"], "usage": usage}
            await _send_json(send, 200, answer, common)
        elif path.endswith("/completions"):
            answer = {
                "id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"],
                "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            }  # fmt: skip
            await _send_json(send, 200, answer, common)
        elif path.endswith("/files") and scope["method"] == "GET":
            await _send_json(send, 200, {"object": "list", "data": [], "has_more": False}, common)
        else:
            await _send_json(send, 404, {"error": {"message": "nope", "type": "invalid_request_error"}}, common)

    async def _failed(self, send: Send, common: list[tuple[bytes, bytes]]) -> bool:
        """Answer with the scripted failure, if one is due."""
        if self.fail_status is None or self.fail_times <= 0:
            return False
        self.fail_times -= 1
        names = {k for k, _ in self.fail_headers}
        kept = [(k, v) for k, v in common if k not in names]
        head = [(b"content-type", b"application/json"), *kept, *self.fail_headers]
        await send({"type": "http.response.start", "status": self.fail_status, "headers": head})
        await send({"type": "http.response.body", "body": self.fail_body})
        return True

    async def _chat(self, body: dict[str, Any], send: Send, common: list[tuple[bytes, bytes]]) -> None:
        if await self._failed(send, common):
            return
        if self.misbehave == "redirect":
            head = [(b"location", b"http://127.0.0.1:9/elsewhere"), *common]
            await send({"type": "http.response.start", "status": 302, "headers": head})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.misbehave in ("cut", "hang", "garbage"):
            kind = b"text/event-stream" if body.get("stream") else b"application/json"
            head = [(b"content-type", kind), *common]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            if self.misbehave == "garbage":
                await send({"type": "http.response.body", "body": b"<html>oops</html>"})
                return
            if self.misbehave == "cut":
                await send({"type": "http.response.body", "body": b'{"id": "x", "cho', "more_body": True})
                raise RuntimeError("upstream crashed mid-body")
            await asyncio.sleep(30)
            return
        answer = {**self.answer, "model": body.get("model", "up-model")}
        if not body.get("stream"):
            await _send_json(send, 200, answer, common)
            return
        head = [(b"content-type", b"text/event-stream"), *common]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        for chunk in stream_of(answer):
            if not chunk["choices"] and not include_usage:
                continue
            data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send_json(send: Send, status: int, data: dict[str, Any], extra: list[tuple[bytes, bytes]]) -> None:
    raw = json.dumps(data).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


@dataclass
class AnthropicUpstream:
    """A fake of Anthropic's own Messages API: `x-api-key`, typed stream events.

    Its messages carry `x_upstream_note`, a field no router knows; `sent` holds each
    answer body as sent; `fail` (status, body) answers the next request with an error.
    """

    text: str = "Bonjour from Claude"
    calls: list[Call] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    fail: tuple[int, bytes] | None = None
    cut: bool = False  # streams break off after the first text delta

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = json.loads(raw or b"{}")
        self.calls.append(Call(scope["method"], scope["path"], "", headers, body))
        if not scope["path"].endswith("/messages"):
            await _send_json(send, 404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}}, [])
            return
        if self.fail is not None:
            (status, error), self.fail = self.fail, None
            head = [(b"content-type", b"application/json"), (b"request-id", b"req_ant_err")]
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": error})
            return
        usage = {"input_tokens": 7, "output_tokens": 3}
        message = {"id": "msg_up", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [{"type": "text", "text": self.text}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": usage, "x_upstream_note": "kept"}  # fmt: skip
        if not body.get("stream"):
            self.sent.append(json.dumps(message).encode())
            await _send_json(send, 200, message, [(b"request-id", b"req_ant_1")])
            return
        head = [(b"content-type", b"text/event-stream"), (b"request-id", b"req_ant_2")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 7, "output_tokens": 0}}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
              for w in _words(self.text)),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"},
        ]  # fmt: skip
        framed = [sse_of(e) for e in events[: 3 if self.cut else None]]
        self.sent.append(b"".join(framed))
        for data in framed:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if self.cut:
            raise RuntimeError("upstream crashed mid-stream")
        await send({"type": "http.response.body", "body": b""})


def response_of(body: dict[str, Any], n: int, text: str, status: str = "completed") -> dict[str, Any]:
    """The Response an OpenAI-like upstream answers `body` with; `x_upstream_note` is a
    field no router knows, to show that the answer passes untouched."""
    message = {
        "type": "message", "id": f"msg_up_{n}", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }  # fmt: skip
    return {
        "id": f"resp_up_{n}", "object": "response", "created_at": 1700000000 + n,
        "status": status, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "model": body.get("model"),
        "output": [message], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "temperature": body.get("temperature", 1.0), "top_p": 1.0, "truncation": body.get("truncation", "disabled"),
        "metadata": {}, "store": body.get("store", True),
        "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15},
        "x_upstream_note": {"served_by": "native", "n": n},
    }  # fmt: skip


def response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's `response.*` stream for `response` (one message item, a word a delta)."""
    begun = {**response, "status": "in_progress", "output": [], "usage": None}
    message = response["output"][0]
    text = message["content"][0]["text"]
    ids = {"item_id": message["id"], "output_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": begun},
        {"type": "response.in_progress", "response": begun},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **ids, "content_index": 0, "part": part},
        *({"type": "response.output_text.delta", **ids, "content_index": 0, "delta": w, "logprobs": [],
           "obfuscation": "x1"} for w in _words(text)),
        {"type": "response.output_text.done", **ids, "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **ids, "content_index": 0, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": response},
    ]  # fmt: skip
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def sse_of(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + json.dumps(event).encode() + b"\n\n"


@dataclass
class ResponsesUpstream(ScriptedUpstream):
    """An upstream that speaks the Responses API as well as chat (OpenAI, vLLM):
    `/v1/responses` plain and as the typed `response.*` stream. `sent` holds each
    answer body as sent, so a test can check the client got the same bytes; the
    scripted failures (`fail_status`, `misbehave="cut"`) apply here too."""

    text: str = "Native answer here"
    sent: list[bytes] = field(default_factory=list)

    def responses_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/responses")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/responses"):
            await super().__call__(scope, receive, send)
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = json.loads(raw or b"{}")
        self.calls.append(Call(scope["method"], scope["path"], "", headers, body))
        n = next(_ids)
        common = [(b"x-request-id", f"req_{self.name}_{n}".encode())]
        if await self._failed(send, common):
            return
        response = response_of(body, n, self.text)
        if not body.get("stream"):
            data = json.dumps(response).encode()
            self.sent.append(data)
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *common]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": data})
            return
        head = [(b"content-type", b"text/event-stream; charset=utf-8"), *common]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        events = response_events(response)
        if self.misbehave == "cut":
            events = events[:5]
        framed = [sse_of(e) for e in events]
        self.sent.append(b"".join(framed))
        for frame in framed:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if self.misbehave == "cut":
            raise RuntimeError("upstream crashed mid-stream")
        await send({"type": "http.response.body", "body": b""})
