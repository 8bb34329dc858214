"""An upstream that speaks the Responses API itself (`apis: [responses]`): what the router
sends it, and what it reads of the answer it relays untouched.

* `native_request(body, model, history)`: the client's request as is, with the
  upstream's model name and, for `previous_response_id`, the conversation the
  router stored spelled out as `input`.
* `chat_from_response(response)`: a Response as a chat completion, for the cache
  and the decision record; None when an output item has no faithful chat form.
* `chat_usage(usage)`: Responses usage in chat's field names.
* `ResponsesEvents`: reads a Responses stream without changing it (the final
  Response, whether it ended, whether the upstream failed it) and writes the
  events that tell the client it broke off.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from router.errors import RouterError
from router.formats.openai_chat import as_dict
from router.formats.responses import input_items

__all__ = [
    "ResponsesEvents",
    "chat_from_response",
    "chat_usage",
    "native_request",
    "output_text",
]

# The events that close a Responses stream; each carries the whole Response.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# The events a relay needs to read: the rest (deltas, items) pass by unparsed.
_READ = _TERMINAL | {"response.created", "response.in_progress", "response.queued", "error"}
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def native_request(
    body: Mapping[str, Any], model: str, history: Iterable[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """The body for a Responses upstream.

    With `history` (what the router stored for `previous_response_id`) the request
    carries the whole conversation instead of the id: the id is the router's, or
    one the router stored under an upstream's id, and the upstream that gets this
    turn need not be the one that answered the last. Reasoning items are left out,
    as for a chat upstream: they are only valid where they were produced.
    """
    out = dict(body)
    out["model"] = model
    if history is not None:
        out.pop("previous_response_id", None)
        earlier = [dict(i) for i in history if i.get("type") != "reasoning"]
        out["input"] = [*earlier, *input_items(body)]
    return out


def chat_usage(usage: object) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(tin, int) or not isinstance(tout, int):
        return None
    out: dict[str, Any] = {
        "prompt_tokens": tin,
        "completion_tokens": tout,
        "total_tokens": usage.get("total_tokens", tin + tout),
    }
    cached = as_dict(usage.get("input_tokens_details")).get("cached_tokens")
    if isinstance(cached, int):
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = as_dict(usage.get("output_tokens_details")).get("reasoning_tokens")
    if isinstance(reasoning, int):
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def output_text(response: Mapping[str, Any]) -> str | None:
    """The text of the answer's message items (what the SDK's `output_text` reads)."""
    texts = [
        part["text"]
        for item in response.get("output") or ()
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text"
        and isinstance(part.get("text"), str)
    ]  # fmt: skip
    return "".join(texts) if texts else None


def _finish(response: Mapping[str, Any], calls: bool) -> str | None:
    status = response.get("status")
    if status == "completed":
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        reason = as_dict(response.get("incomplete_details")).get("reason")
        return _INCOMPLETE.get(str(reason))
    return None  # failed, cancelled, still running: not an answer


def chat_from_response(response: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished Response as a chat completion with one choice, or None.

    Message text and refusals, reasoning text and function calls have a chat form.
    Anything else (built-in tool calls, annotations, logprobs, an item type added
    later) would be lost, so such an answer is not given a chat form at all: the
    cache then does not store it, rather than replay a different answer.
    """
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                ptype = part.get("type") if isinstance(part, dict) else None
                if (
                    ptype == "output_text"
                    and not part.get("annotations")
                    and not part.get("logprobs")
                ):
                    texts.append(str(part.get("text") or ""))
                elif ptype == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
                else:
                    return None
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or ()
            reasoning += [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
        elif kind == "function_call":
            function = {
                "name": str(item.get("name") or ""),
                "arguments": str(item.get("arguments") or ""),
            }
            calls.append(
                {"id": str(item.get("call_id") or ""), "type": "function", "function": function}
            )
        else:
            return None
    finish = _finish(response, bool(calls))
    if finish is None:
        return None
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    created = response.get("created_at")
    completion: dict[str, Any] = {
        "id": str(response.get("id") or ""),
        "object": "chat.completion",
        "created": int(created) if isinstance(created, int | float) else int(time.time()),
        "model": str(response.get("model") or ""),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    usage = chat_usage(response.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


class ResponsesEvents:
    """What the router reads of a Responses stream it passes on as it came.

    `reads(kind)` says which events to parse and `feed` (the rest need not be);
    `response` is the latest Response snapshot, the final one once `done`.
    """

    api = "responses"

    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None
        self.done = False
        self.failed = False  # the upstream reported an error itself

    def reads(self, kind: str | None) -> bool:
        return kind is None or kind in _READ

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if isinstance(event.get("response"), dict):
            self.response = event["response"]
        if kind in _TERMINAL:
            self.done = True
        if kind in ("error", "response.failed"):
            self.failed = True

    def usage(self) -> dict[str, Any] | None:
        """The usage of the answer, in chat's field names (known at its last event)."""
        return chat_usage(self.response.get("usage")) if self.response is not None else None

    def cut(self, error: RouterError, sequence_number: int) -> list[dict[str, Any]]:
        """The stream broke off: an `error` event, then `response.failed` (which the
        SDK's stream helper needs to end), numbered after the events already sent."""
        events: list[dict[str, Any]] = [
            {"type": "error", "code": error.code, "message": error.message,
             "param": error.param, "sequence_number": sequence_number},
        ]  # fmt: skip
        if self.response is not None:
            failed = {
                **self.response,
                "status": "failed",
                "error": {"code": "server_error", "message": error.message},
            }
            events.append(
                {
                    "type": "response.failed",
                    "response": failed,
                    "sequence_number": sequence_number + 1,
                }
            )
        return events
