"""The HTTP protocol `router serve` runs: uvicorn's httptools protocol plus the limits
a slow or hostile client needs and uvicorn does not have.

uvicorn waits forever for a request's headers (a client that connects and sends
nothing, or trickles a byte a second, holds a socket and a file descriptor for good),
accepts headers of any size, and keeps accepting connections up to the fd limit. Here:

- the request line and headers must arrive within `header_timeout_s` of the
  connection (or, between requests, of the first byte of the next one): else 408;
- they may not exceed `max_header_bytes` or `max_headers`: else 431, checked while
  they arrive, so they never sit in memory;
- a connection beyond `max_connections` is answered 503 at once and closed.

Every refusal is an OpenAI-format JSON error followed by closing the connection.
The body's own timeout and the idle keep-alive timeout are not here: `read_body`
bounds the first, uvicorn's `timeout_keep_alive` the second.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from router.deadlines import Timer, call_later
from router.errors import RouterError
from router.ingress.headers import too_large
from router.policy.model import Limits

__all__ = ["RouterHttpProtocol", "limits_from_env", "protocol_with"]


# How long a refused connection is drained before it is closed (see _refuse).
_LINGER_S = 1.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `_refusal` says what to answer."""


def limits_from_env() -> Limits:
    """The limits of the policy `router serve` was started with (each worker reads it)."""
    from router.policy.loader import load_policy

    path = os.environ.get("ROUTER_POLICY")
    return load_policy(path).limits if path else Limits()


class RouterHttpProtocol(HttpToolsProtocol):
    limits: Limits | None = None  # None: read from $ROUTER_POLICY on first use

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = limits_from_env()
        self._limits: Limits = cls.limits
        self._header_timer: Timer | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: RouterError | None = None

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._limits.max_connections:
            self._refuse(
                RouterError(
                    503,
                    "The router has too many open connections; retry shortly.",
                    type_="api_error",
                    code="too_many_connections",
                )
            )
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # draining after a refusal: see _refuse
        idle = self.cycle is None or self.cycle.response_complete
        if idle:
            # Between requests these bytes start the next request line and headers.
            # Arming here too (not only on message begin) covers a client that keeps
            # a connection alive with stray CRLFs, which start no message.
            self._arm_header_timer()
            self._header_bytes += len(data)
        super().data_received(data)
        # Judged after parsing: the same read may carry the end of the headers and
        # a body (on_headers_complete then reset the count). Still counting means
        # the headers are not complete yet; the parser holds at most one read more.
        if idle and self._refusal is None and self._header_bytes > self._limits.max_header_bytes:
            self._refuse(too_large(self._limits, f"over {self._limits.max_header_bytes} bytes"))

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            self._refusal = too_large(self._limits, f"over {self._limits.max_headers} headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._header_bytes = 0
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with a plain-text 400; a callback that
        # refused the request has a better answer ready.
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            self._refuse(refusal)
            return
        self._refuse(RouterError.bad_request(f"Invalid HTTP request: {msg}"))

    # -- helpers -------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            # Armed and cancelled once per request: the cheap timer (router.deadlines).
            self._header_timer = call_later(
                self._limits.header_timeout_s, self._headers_too_slow
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its body has its own timeout
        self._refuse(
            RouterError(
                408,
                f"Request headers did not arrive within {self._limits.header_timeout_s} s.",
                code="request_timeout",
            )
        )

    def _refuse(self, error: RouterError) -> None:
        """Answer `error` and close, whatever state the parser is in.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the answer before the client reads it. So: answer, half-close, read
        and discard what the client still sends, and close after `_LINGER_S`.
        """
        self._refusal = error
        self._cancel_header_timer()
        # A connection being drained no longer counts against max_connections.
        self.connections.discard(self)
        if self.transport.is_closing():
            return
        body = error.body()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[error.status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)
        else:
            self.transport.close()


def protocol_with(limits: Limits) -> type[RouterHttpProtocol]:
    """A protocol class bound to `limits` (servers started in-process: tests, benches)."""
    return type("BoundRouterHttpProtocol", (RouterHttpProtocol,), {"limits": limits})
