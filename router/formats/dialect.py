"""A request's answer written in its client's dialect.

Inside the router every answer is a chat completion (or its chunks). `Output`
writes it for one request: `ChatOutput` passes the upstream's bytes on as they
are (the fast path), `TranslatedOutput` renders them as an OpenAI Response or an
Anthropic Message, plain or as that API's typed stream events. The relays
(`router.exchange`, `router.caching`) call only these methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson

from router.errors import RouterError
from router.formats.anthropic import AnthropicStream, render_message
from router.formats.errors import Dialect, error_event, error_json, sse_event
from router.formats.responses import ResponsesStream, render_response
from router.upstreams.sse import event_data, payloads

__all__ = [
    "CHAT",
    "ChatOutput",
    "Output",
    "TranslatedOutput",
    "anthropic_output",
    "responses_output",
]

# Called with the final answer object (a Response) before its last bytes go out,
# so that a client's next request can already refer to it (`previous_response_id`).
OnFinal = Callable[[dict[str, Any]], Awaitable[None]]


class _Stream(Protocol):
    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...

    def fail(self, error: RouterError) -> list[dict[str, Any]]: ...


class Output(Protocol):
    dialect: Dialect
    passthrough: bool  # True: the upstream's chat bytes go to the client as they are

    def error(self, exc: RouterError) -> bytes: ...

    def plain(self, completion: dict[str, Any]) -> bytes: ...

    def start(self) -> bytes: ...

    def events(self, block: bytes) -> bytes: ...

    def cut(self, exc: RouterError) -> bytes: ...

    async def final(self) -> None: ...


class ChatOutput:
    """OpenAI chat completions: what the upstream sent, as it sent it."""

    dialect: Dialect = "chat"
    passthrough = True

    def error(self, exc: RouterError) -> bytes:
        return exc.body()

    def plain(self, completion: dict[str, Any]) -> bytes:
        return orjson.dumps(completion)

    def start(self) -> bytes:
        return b""

    def events(self, block: bytes) -> bytes:
        return block

    def cut(self, exc: RouterError) -> bytes:
        return error_event(exc, "chat")

    async def final(self) -> None:
        return None


CHAT = ChatOutput()


class TranslatedOutput:
    """An answer rendered for a Responses or Messages client; one instance per request."""

    passthrough = False

    def __init__(
        self,
        dialect: Dialect,
        request: Mapping[str, Any],
        render: Callable[[Mapping[str, Any]], dict[str, Any]],
        stream: _Stream,
        opening: list[dict[str, Any]],
        on_final: OnFinal | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.dialect = dialect
        self.request = request  # the client's own body: what an upstream of its API gets
        # Responses: the conversation recalled for `previous_response_id`.
        self.history = history
        self._render = render
        self._stream = stream
        self._opening = opening
        self._on_final = on_final
        self._final: dict[str, Any] | None = None
        self._seq = 0

    def error(self, exc: RouterError) -> bytes:
        return error_json(exc, self.dialect)

    def plain(self, completion: dict[str, Any]) -> bytes:
        self._final = self._render(completion)
        return orjson.dumps(self._final)

    def start(self) -> bytes:
        return self._frame(self._opening)

    def events(self, block: bytes) -> bytes:
        """Chat SSE events in, this dialect's events out ([DONE] ends the answer)."""
        out: list[dict[str, Any]] = []
        for payload in payloads(block):
            if payload == b"[DONE]":
                out += self._stream.finish()
                self._final = getattr(self._stream, "response", None)
                continue
            chunk = event_data(payload)
            if chunk is not None and "error" not in chunk:
                out += self._stream.feed(chunk)
        return self._frame(out)

    def cut(self, exc: RouterError) -> bytes:
        return self._frame(self._stream.fail(exc))

    async def final(self) -> None:
        if self._on_final is not None and self._final is not None:
            await self._on_final(self._final)

    async def keep(self, answer: dict[str, Any]) -> None:
        """`final` for an answer an upstream wrote in this dialect itself (relayed as is)."""
        if self._on_final is not None:
            await self._on_final(answer)

    def _frame(self, events: list[dict[str, Any]]) -> bytes:
        return b"".join(sse_event(str(e["type"]), e) for e in events)


def responses_output(
    request: Mapping[str, Any],
    response_id: str,
    on_final: OnFinal | None,
    history: list[dict[str, Any]] | None = None,
) -> TranslatedOutput:
    stream = ResponsesStream(request, response_id=response_id)
    return TranslatedOutput(
        "responses",
        request,
        lambda c: render_response(c, request, response_id=response_id),
        stream,
        stream.start(),
        on_final,
        history,
    )


def anthropic_output(request: Mapping[str, Any], message_id: str) -> TranslatedOutput:
    stream = AnthropicStream(request, message_id=message_id)
    return TranslatedOutput(
        "anthropic",
        request,
        lambda c: render_message(c, request, message_id=message_id),
        stream,
        [],
    )
