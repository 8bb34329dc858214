"""The OpenAI chat-completions format: the router's canonical request and answer.

Every dialect is translated into a chat-completions body before policy, scoring,
cache and upstreams see it, so what is defined here is what they all share:
the text of a message, the conversation key, the JSON-object parsers, ids.

Three "text of a content" functions exist on purpose, each keeping the exact
behaviour of the code it gathers (tests compare them with the originals):

* `content_text`: every part that has a string `text`, whatever its type. The
  conversation key hashes it, so changing it would re-shuffle live rollouts.
* `scoring_text`: `text` parts (a part without a type counts as text) and bare
  strings: what the classifier was trained on.
* `cache_text`: None as soon as a part is not text: an image cannot be keyed by
  the words around it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from router.errors import RouterError

__all__ = [
    "MESSAGE_ROLES",
    "ToolResults",
    "as_dict",
    "cache_text",
    "check_message",
    "content_chars",
    "content_text",
    "conversation_key",
    "json_object",
    "message_text",
    "new_id",
    "parse_arguments",
    "parse_object",
    "reasoning_of",
    "scoring_text",
]

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def content_text(content: object) -> str:
    """The text of a message's content: a string, or the text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def message_text(message: Mapping[str, Any]) -> str:
    return content_text(message.get("content"))


def conversation_key(first_message: Mapping[str, Any]) -> str:
    """A stable hash of a conversation's first message: its turns share the key,
    so sticky routing and rollout sampling keep a conversation on one side."""
    content = first_message.get("content")
    # A string content is its own text: skip the two calls that would say so.
    text = content if isinstance(content, str) else content_text(content)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def content_chars(content: object) -> int:
    """Characters of prompt text in a content (the policy's `prompt_chars`)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def scoring_text(content: object) -> str:
    """The text of a content as the classifier reads it."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type", "text") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def cache_text(content: object) -> str | None:
    """The text of a content made of text only, or None (images, audio, files)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return None
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
        return "\n".join(texts)
    return None


def check_message(message: object, i: int) -> int:
    """Validate `messages[i]` of a chat request; its prompt characters.

    Shallow on purpose: what the router needs, and what would otherwise become an
    upstream 400 or a traceback. Unknown fields pass.
    """
    # The checks come first and the parameter's name only once one fails: every
    # message of every request goes through here, and nearly all of them pass.
    if not isinstance(message, dict):
        param = f"messages[{i}]"
        raise RouterError.bad_request(f"'{param}' must be an object.", param)
    role = message.get("role")
    if not isinstance(role, str) or role not in MESSAGE_ROLES:
        param = f"messages[{i}]"
        raise RouterError.bad_request(
            f"'{param}.role' must be one of {', '.join(sorted(MESSAGE_ROLES))}.", f"{param}.role"
        )
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if content is None:
        if role in ("user", "system", "developer"):
            param = f"messages[{i}]"
            raise RouterError.bad_request(f"'{param}.content' is required.", f"{param}.content")
        return 0
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                param = f"messages[{i}].content[{j}]"
                raise RouterError.bad_request(f"'{param}' must be an object with a 'type'.", param)
        return content_chars(content)
    param = f"messages[{i}]"
    raise RouterError.bad_request(
        f"'{param}.content' must be a string or an array of content parts.", f"{param}.content"
    )


def parse_object(raw: bytes | str) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (bad JSON, an array, a number)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RouterError.bad_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RouterError.bad_request("Request body must be a JSON object.")
    return body


def parse_arguments(arguments: object) -> dict[str, Any] | None:
    """Tool-call arguments (a JSON string in chat) as an object; None when they are not one.

    Models do emit broken JSON; the caller decides whether that is a 400 or a `{}`.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        return None
    if not arguments.strip():
        return {}
    return parse_object(arguments)


def new_id(prefix: str) -> str:
    """An id in the style of the API that hands it out (`resp_`, `msg_`, `toolu_`, ...)."""
    return prefix + uuid.uuid4().hex


class ToolResults:
    """Tool results in chat order.

    Chat tool messages carry text only and must follow their assistant message
    without anything in between, while Responses and Anthropic tool results may
    hold images. The images of a run of tool results are kept here and handed
    back as one user message after the run (`flush`), so the model still sees them.
    """

    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []

    def message(self, call_id: str, content: str | list[dict[str, Any]]) -> dict[str, Any]:
        """The tool message for a result; image parts of a list content are held back."""
        if isinstance(content, list):
            self.images.extend(p for p in content if p.get("type") != "text")
            texts = [p for p in content if p.get("type") == "text"]
            content = texts or ""
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    def flush(self) -> list[dict[str, Any]]:
        if not self.images:
            return []
        images, self.images = self.images, []
        return [{"role": "user", "content": images}]


def as_dict(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: lenient reading of answers."""
    return value if isinstance(value, dict) else {}


def reasoning_of(message: Mapping[str, Any]) -> str | None:
    """A chat answer's reasoning text, in either spelling (vLLM/DeepSeek, or newer)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None
