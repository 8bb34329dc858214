"""What part of a chat request gets scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["prompt_text"]


def _content_text(content: object) -> str:
    # OpenAI content is a string, or a list of parts of which only text parts matter here.
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


def prompt_text(messages: Sequence[Mapping[str, object]]) -> str:
    """The system prompt(s) followed by the last user turn.

    Earlier turns are left out: the routing decision is about the request at
    hand, and the classifier was trained on single prompts.
    """
    system = [_content_text(m.get("content")) for m in messages if m.get("role") == "system"]
    last_user = next(
        (_content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        None,
    )
    if last_user is None and messages:
        last_user = _content_text(messages[-1].get("content"))
    return "\n\n".join(t for t in [*system, last_user or ""] if t)
