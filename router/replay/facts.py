"""Rebuild what `decide()` saw from a decision record.

The live router builds `RequestFacts` from the request; a record keeps most of
it. What a v1 record lacks, and how replay stands in for it:

* headers: not recorded (they can hold secrets). A record may carry an
  allow-listed `headers` object, which is used as is; without it, rules that
  match on headers never match, and `sticky: header:<name>` falls back to the
  conversation, exactly as the live router does for a request without that header.
* conversation key: the live key hashes the first message. It is recomputed
  from `messages` when the record has them (`record: {prompts: true}`), taken
  from a `conversation` field when present, and otherwise replaced by the
  request id, so each request is sampled on its own: the rollout share is the
  same, but which requests fall in the sample differs from live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.features import Features
from router.formats.openai_chat import conversation_key as chat_conversation_key
from router.policy.decide import RequestFacts

__all__ = ["conversation_key", "facts_of", "features_of"]


def conversation_key(record: Mapping[str, Any]) -> tuple[str, bool]:
    """The conversation key, and whether it is exact (False: the request id stands in)."""
    given = record.get("conversation")
    if isinstance(given, str) and given:
        return given, True
    messages = record.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        # The hash ChatRequest.conversation_key uses: replay samples what live sampled.
        return chat_conversation_key(messages[0]), True
    return str(record["request_id"]), False


def facts_of(
    record: Mapping[str, Any], default_tenant: str = "default", default_model: str = "auto"
) -> tuple[RequestFacts, bool]:
    conversation, exact = conversation_key(record)
    headers = record.get("headers")
    prompt_chars = record.get("prompt_chars")
    if not isinstance(prompt_chars, int) or prompt_chars <= 0:
        prompt = record.get("prompt")
        prompt_chars = len(prompt) if isinstance(prompt, str) else 0
    facts = RequestFacts(
        request_id=str(record["request_id"]),
        tenant=str(record.get("tenant") or default_tenant),
        model=str(record.get("model") or default_model),
        prompt_chars=prompt_chars,
        conversation=conversation,
        headers={str(k).lower(): str(v) for k, v in headers.items()}
        if isinstance(headers, dict)
        else {},
    )
    return facts, exact


def features_of(record: Mapping[str, Any]) -> Features:
    """The classifier's output as recorded: a score, or the reason there is none."""
    score = record.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        return Features(score=float(score))
    error = record.get("score_error")
    return Features(error=str(error) if error else "no score in the record (try --rescore)")
