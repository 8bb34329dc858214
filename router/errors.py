"""Every exception the router raises on purpose, in one place.

    RouterException              the base: `except RouterException` catches them all
     ├── RouterError             a request fails with an HTTP status (answered to the
     │                           client in its own dialect); raised by every step
     ├── UpstreamFailure         one upstream gave no usable answer; the next target
     │                           may still answer (`router.upstreams`)
     ├── PolicyError             a policy file is invalid: every error, positioned
     ├── ScorerLoadError         the classifier could not be loaded
     └── StoreUnavailable        a store the request needs (Redis) did not answer

Control signals are not errors. `ClientGone` (the client disconnected) derives
from `BaseException`, like `asyncio.CancelledError`, so that no `except
Exception` meant for failures swallows it; the request flow ends on it quietly.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.upstreams.transport import HeaderView

__all__ = [
    "ClientGone",
    "RouterError",
    "RouterException",
    "StoreUnavailable",
    "UpstreamFailure",
    "clip",
    "error_body",
]


class RouterException(Exception):
    """The base of every exception the router raises on purpose."""


class ClientGone(BaseException):
    """The client disconnected: nothing more can be sent to it."""


def clip(text: str, limit: int = 64) -> str:
    """Client input quoted in an error message, cut short: a 5 MB model name must not
    come back as a 5 MB error."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


class RouterError(RouterException):
    """A request fails with `status`; the client reads it in its own dialect
    (`router.formats.errors`), the OpenAI format by default (`body`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    @classmethod
    def bad_request(cls, message: str, param: str | None = None) -> RouterError:
        return cls(400, message, param=param, code="invalid_request")

    @classmethod
    def not_found(cls, message: str, code: str = "not_found") -> RouterError:
        return cls(404, message, code=code)

    @classmethod
    def unauthorized(cls, message: str) -> RouterError:
        return cls(401, message, type_="authentication_error", code="invalid_api_key")

    @classmethod
    def upstream(cls, message: str, code: str = "upstream_unavailable") -> RouterError:
        return cls(502, message, type_="api_error", code=code)


class UpstreamFailure(RouterException):
    """The upstream gave no usable answer; `kind` is the error class for records."""

    def __init__(
        self,
        upstream: str,
        kind: str,
        detail: str,
        status: int | None = None,
        body: bytes | None = None,
        headers: HeaderView | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{upstream}: {detail}")
        self.upstream = upstream
        self.kind = kind
        self.detail = detail
        self.status = status
        self.body = body
        self.headers = headers
        # Seconds the upstream (or its open breaker) asks callers to wait.
        self.retry_after = retry_after


class StoreUnavailable(RouterException):
    """The store could not be reached in time, or answered with an error.

    Raised by `RedisResponseStore` only; maps to a 503 with `router_error()`."""

    def router_error(self) -> RouterError:
        return RouterError(
            503,
            "The response store is unavailable; retry, or send the whole conversation "
            "as 'input' without 'previous_response_id'.",
            type_="api_error",
            code="response_store_unavailable",
            headers={"retry-after": "1"},
        )
