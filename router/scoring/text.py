"""What part of a chat request gets scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from router.formats.openai_chat import scoring_text

__all__ = ["prompt_text"]


def prompt_text(messages: Sequence[Mapping[str, object]]) -> str:
    """The system prompt(s) followed by the last user turn.

    Earlier turns are left out: the routing decision is about the request at
    hand, and the classifier was trained on single prompts.
    """
    system = [scoring_text(m.get("content")) for m in messages if m.get("role") == "system"]
    last_user = next(
        (scoring_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        None,
    )
    if last_user is None and messages:
        last_user = scoring_text(messages[-1].get("content"))
    return "\n\n".join(t for t in [*system, last_user or ""] if t)
