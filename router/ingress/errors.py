"""Errors in the OpenAI error format: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import json

__all__ = ["RouterError", "clip", "error_body"]


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


class RouterError(Exception):
    """An error that reaches the client as an OpenAI-format JSON body with `status`."""

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
