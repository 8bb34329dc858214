"""Prompt text normalisation shared by the exact key and the guards."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise", "strip_courtesy"]

_SPACE = re.compile(r"\s+")
# Courtesy openings that never change what is asked. Only leading ones are removed:
# "please" in the middle of a prompt may be part of the content ("say please").
_COURTESY = re.compile(
    r"^(?:"
    r"(?:hi|hello|hey)(?:\s+there)?"
    r"|(?:please|kindly)(?:\s+(?:answer|respond|reply|help|tell\s+me))?"
    r"|(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:answer|tell\s+me|help(?:\s+me)?(?:\s+with)?)"
    r"|(?:i\s+have\s+a\s+)?question"
    r"|answer\s+(?:the\s+following|this)(?:\s+question)?"
    r"|thanks?(?:\s+you)?(?:\s+in\s+advance)?"
    r")(?=[\s,:;.!?-]|$)[\s,:;.!?-]*",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"[\s.!?]+$")


def strip_courtesy(text: str) -> str:
    """Remove leading courtesy phrases ("Please answer:", "Hi,"), repeatedly."""
    while True:
        stripped = _COURTESY.sub("", text, count=1)
        if stripped == text:
            return text
        if not stripped.strip():
            # A prompt that is nothing but courtesy is its own content.
            return text
        text = stripped


def normalise(prompt: str) -> str:
    """The text the exact key is made from.

    Unicode compatibility forms folded, case folded, whitespace collapsed, leading
    courtesy and trailing sentence punctuation removed. Nothing inside the prompt is
    dropped: "2+3" and "2*3" must stay different keys.
    """
    text = unicodedata.normalize("NFKC", prompt)
    text = _SPACE.sub(" ", text).strip()
    text = strip_courtesy(text)
    text = _TRAILING.sub("", text)
    return text.casefold()
