"""The decision record: one schema for logs, replay input and training data.

Schema version 1. Every field is documented in README.md ("Decision records").
API keys are never part of it: the record is built from the decision and the
upstream's name, never from request headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        # Spelled out field by field, optional ones only when set: stores into one
        # dict cost a third of the generic copy (`attrgetter` over `fields()`, then
        # deleting what is unset), once per request. tests/test_record_dict.py holds
        # this to the field list.
        data: dict[str, Any] = {}
        data["request_id"] = self.request_id
        data["ts"] = self.ts
        data["tenant"] = self.tenant
        data["model"] = self.model
        data["stream"] = self.stream
        data["rule"] = self.rule
        data["reason"] = self.reason
        data["route"] = self.route
        data["upstream_model"] = self.upstream_model
        data["targets"] = list(self.targets)
        data["tried"] = list(self.tried)
        data["rollout"] = self.rollout
        if self.shadow is not None:
            data["shadow"] = self.shadow
        data["score"] = self.score
        if self.score_error is not None:
            data["score_error"] = self.score_error
        data["cache"] = self.cache
        data["cache_similarity"] = self.cache_similarity
        data["status"] = self.status
        data["error"] = self.error
        data["latency_ms"] = self.latency_ms
        data["upstream_ms"] = self.upstream_ms
        data["ttfb_ms"] = self.ttfb_ms
        data["overhead_ms"] = self.overhead_ms
        data["tokens_in"] = self.tokens_in
        data["tokens_out"] = self.tokens_out
        data["cost_usd"] = self.cost_usd
        data["prompt_chars"] = self.prompt_chars
        data["conversation"] = self.conversation
        if self.headers is not None:
            data["headers"] = self.headers
        if self.prompt is not None:
            data["prompt"] = self.prompt
        if self.messages is not None:
            data["messages"] = self.messages
        if self.answer is not None:
            data["answer"] = self.answer
        if self.budget is not None:
            data["budget"] = self.budget
        if self.shadow_result is not None:
            data["shadow_result"] = self.shadow_result
        if self.kind is not None:
            data["kind"] = self.kind
        if self.endpoint is not None:
            data["endpoint"] = self.endpoint
        if self.dialect is not None:
            data["dialect"] = self.dialect
        data["v"] = self.v
        return data


# Fields written only when set (to_dict), to keep records compact.
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
