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
    r"(?:hi|hello|hey|dear\s+\w+)(?:\s+there)?"
    r"|(?:please|kindly|(?:can|could|would|will)\s+you(?:\s+please)?)"
    r"(?:\s+(?:answer|respond\s+to|reply\s+to|solve|tell\s+me|help(?:\s+me)?(?:\s+with)?)"
    r"(?:\s+(?:the\s+following|this))?(?:\s+(?:question|problem))?)?"
    r"|(?:answer|solve)\s+(?:the\s+following|this)(?:\s+(?:question|problem))?"
    r"|(?:i\s+have\s+a\s+)?(?:question|problem)"
    r"|thanks?(?:\s+you)?(?:\s+in\s+advance)?"
    r")(?=[\s,:;.!?-]|$)[\s,:;.!?-]*",
    re.IGNORECASE,
)
# Sentence punctuation before a space or the end: "Paris, France?" and "Paris France"
# ask the same. Inside a token it stays ("3.5", "1,000", "x:y", "2+3").
_SOFT_PUNCTUATION = re.compile(r"[.,;:!?]+(?=\s|$)")


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
    courtesy and sentence punctuation (before a space or the end) removed. Symbols
    inside tokens stay: "2+3" and "2*3", "3.5" and "35" must stay different keys.
    Exact hits still pass the guards, which see the original texts.
    """
    text = unicodedata.normalize("NFKC", prompt)
    text = _SPACE.sub(" ", text).strip()
    text = strip_courtesy(text)
    text = _SOFT_PUNCTUATION.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    return text.casefold()
