"""The OpenAPI document served at `/openapi.json`: the request schema the router
publishes and validates, written by hand so that it says exactly what ingress checks.

Only what the router itself reads is constrained; every other field is passed
through to the upstream untouched (`additionalProperties: true`), as in the OpenAI API.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["SPEC", "spec_bytes"]

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_CONTENT_PART: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
    "additionalProperties": True,
}

_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {
            "type": "string",
            "enum": ["system", "developer", "user", "assistant", "tool", "function"],
        },
        # Required for system, developer and user messages.
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": _CONTENT_PART},
                {"type": "null"},
            ]
        },
        "name": {"type": "string"},
    },
    "additionalProperties": True,
}

_CHAT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "description": "a name from GET /v1/models"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
            "description": "only with stream: true",
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "n": {"type": "integer", "minimum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": True,
}

_FEEDBACK: dict[str, Any] = {
    "type": "object",
    "required": ["request_id"],
    "properties": {
        "request_id": {"type": "string", "minLength": 1},
        "score": {"type": "number"},
        "label": {"type": "string", "minLength": 1, "maxLength": 64},
        "source": {"type": "string", "minLength": 1, "maxLength": 64},
        "comment": {"type": "string", "maxLength": 2000},
        "upstream": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "additionalProperties": False,
}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(status): {"description": "OpenAI-format error", **ref} for status in statuses}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "hybrid-router", "version": "1"},
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "operationId": "createChatCompletion",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the upstream's completion (JSON), or SSE with stream",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 408, 413, 429, 431, 502),
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "responses": {"200": {"description": "the policy's model names"}, **_errors(401)},
            }
        },
        "/v1/feedback": {
            "post": {
                "operationId": "createFeedback",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}
                    },
                },
                "responses": {"200": {"description": "recorded"}, **_errors(400, 401, 404)},
            }
        },
    },
    "components": {
        "schemas": {
            "ChatCompletionRequest": _CHAT_REQUEST,
            "Message": _MESSAGE,
            "Feedback": _FEEDBACK,
            "Error": _ERROR,
        }
    },
}

_BYTES = orjson.dumps(SPEC)


def spec_bytes() -> bytes:
    return _BYTES
