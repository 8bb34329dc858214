"""The decision record: one schema for logs, replay input and training data.

Schema version 1. Every field is documented in README.md ("Decision records").
API keys are never part of it: the record is built from the decision and the
upstream's name, never from request headers.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["SCHEMA_VERSION", "DecisionRecord"]

SCHEMA_VERSION = 1


@dataclass(slots=True)
class DecisionRecord:
    request_id: str
    ts: float
    tenant: str
    model: str
    stream: bool
    rule: str = ""
    reason: str = ""
    route: str | None = None  # the upstream that answered
    upstream_model: str | None = None
    targets: list[str] = field(default_factory=list)  # the decision's targets, in order
    tried: list[str] = field(default_factory=list)  # upstreams that failed before `route`
    rollout: str | None = None
    shadow: str | None = None
    score: float | None = None
    score_error: str | None = None
    cache: str = "off"
    cache_similarity: float | None = None
    status: int = 0
    error: str | None = None
    latency_ms: float = 0.0
    upstream_ms: float | None = None
    ttfb_ms: float | None = None
    overhead_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    prompt_chars: int = 0
    conversation: str | None = None  # the sticky key of `sticky: conversation`
    headers: dict[str, str] | None = None  # only those listed in `record: {headers: [...]}`
    prompt: str | None = None  # only with `record: {prompts: true}`
    messages: list[dict[str, Any]] | None = None
    answer: str | None = None
    budget: str | None = None  # "ok" or "exceeded" when the tenant has caps
    shadow_result: dict[str, Any] | None = None
    # Set on pass-through calls (embeddings, completions, other /v1 paths): such a
    # line has `kind: "call"`, so replay and training, which read decisions, skip it.
    kind: str | None = None
    endpoint: str | None = None
    # The client's API when it is not chat completions: "responses" or "anthropic".
    dialect: str | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        # A shallow copy: `asdict` deep-copies every value and cost ~6% of a request;
        # one attrgetter call reads every field in C.
        data = dict(zip(_FIELDS, _read_all(self), strict=True))
        data["targets"], data["tried"] = list(self.targets), list(self.tried)
        # Keep records compact: optional fields appear only when set.
        for name in _OPTIONAL:
            if data[name] is None:
                del data[name]
        return data


_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_read_all = operator.attrgetter(*_FIELDS)
_OPTIONAL = (
    "prompt",
    "messages",
    "answer",
    "shadow",
    "score_error",
    "budget",
    "shadow_result",
    "headers",
    "kind",
    "endpoint",
    "dialect",
)
