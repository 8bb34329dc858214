"""Token usage and answer text from OpenAI-format bodies and SSE events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.policy.model import Price

__all__ = ["Usage", "usage_of"]


@dataclass(slots=True)
class Usage:
    tokens_in: int | None = None
    tokens_out: int | None = None

    def cost(self, price: Price) -> float | None:
        """US dollars at `price`, when both counts are known."""
        if self.tokens_in is None or self.tokens_out is None:
            return None
        return round(price.cost(self.tokens_in, self.tokens_out), 8)


def usage_of(data: dict[str, Any]) -> Usage | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(tin if isinstance(tin, int) else None, tout if isinstance(tout, int) else None)


def answer_of(data: dict[str, Any]) -> str | None:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def parse_json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
