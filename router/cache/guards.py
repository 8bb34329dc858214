"""Lexical guards that a semantic hit must pass.

Cosine similarity cannot tell "turn on the light" from "turn off the light", or a
word problem from the same problem with one number changed: the embeddings are
almost the same. A semantic candidate is therefore accepted only when both prompts
agree on every token class that flips an answer:

1. Numbers: the same numbers in the same order. Digits and number words are read
   as values, so "1,000", "1000" and "1000.0" are equal, "two" equals "2".
2. Negation and polarity: the same multiset of negations ("not", "n't", "no",
   "never", "without", ...) and polarity words ("on"/"off", "increase"/"decrease",
   "true"/"false", "least", "except", ...); and no word of one prompt is a negated
   form of a word of the other ("likely"/"unlikely", "correct"/"incorrect").
3. Entities: every quoted span and every capitalised word of one prompt occurs in
   the other (case-insensitively, so a lower-cased copy of a prompt still matches).
4. Enumerated options: lines such as "A. Paris" or "2) boil the water" carry the
   same words under the same labels, so a multiple-choice question with one option
   changed or two options swapped is a different question.

Whitespace, case, punctuation and courtesy openings ("Please answer:") pass.
A second, pluggable check (any `(cached_prompt, new_prompt) -> bool`) runs after.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from router.cache.text import strip_courtesy

__all__ = ["Signature", "compatible", "signature"]

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})+(?:\.\d+)?(?!\w)|-?\d*\.?\d+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_QUOTED = re.compile(
    r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”|`([^`\n]{1,200})`|(?<!\w)'([^'\n]{1,200})'(?!\w)"
)
_OPTION = re.compile(r"^\s*\(?([A-Za-z]|\d{1,2})[.)]\s+(\S.*)$", re.MULTILINE)

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
    "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
    "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100",
    "thousand": "1000", "million": "1000000", "billion": "1000000000",
    "dozen": "12", "half": "1/2", "quarter": "1/4", "twice": "x2", "double": "x2",
    "triple": "x3", "first": "#1", "second": "#2", "third": "#3", "fourth": "#4",
    "fifth": "#5", "last": "#-1",
}  # fmt: skip
_NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without"}
)
# Words that flip or bound an answer as much as a negation does.
# fmt: off
_POLARITY = frozenset(
    {
        "on", "off", "true", "false", "yes", "enable", "enabled", "disable", "disabled", "increase",
        "increases", "increased", "decrease", "decreases", "decreased", "add", "remove", "before",
        "after", "above", "below", "over", "under", "more", "less", "fewer", "most", "least", "max",
        "min", "maximum", "minimum", "higher", "lower", "greater", "smaller", "larger", "bigger",
        "best", "worst", "all", "any", "every", "some", "only", "except", "always", "sometimes",
        "up", "down", "open", "close", "start", "stop", "allow", "deny", "accept", "reject",
        "correct", "incorrect", "right", "wrong", "left", "inside", "outside", "include", "exclude",
        "including", "excluding", "positive", "negative", "same", "different"
    }
)
# fmt: on
_NEGATING_PREFIXES = ("un", "in", "im", "ir", "il", "non", "dis", "a")
# Sentence-initial and other capitalised words that are not names.
# fmt: off
_NOT_ENTITIES = frozenset(
    {
        "a", "an", "the", "i", "what", "which", "who", "whom", "whose", "when", "where", "why",
        "how", "is", "are", "was", "were", "do", "does", "did", "can", "could", "would", "should",
        "will", "shall", "may", "might", "must", "if", "in", "on", "at", "of", "for", "to", "by",
        "with", "from", "and", "or", "but", "so", "as", "it", "its", "this", "that", "these",
        "those", "there", "here", "please", "answer", "question", "find", "calculate", "compute",
        "given", "let", "suppose", "assume", "consider", "write", "explain", "describe", "list",
        "name", "tell", "show", "give", "choose", "select", "solve"
    }
)
# fmt: on


@dataclass(frozen=True, slots=True)
class Signature:
    """What the guards compare, computed once per prompt."""

    numbers: tuple[str, ...]
    polarity: tuple[tuple[str, int], ...]
    entities: frozenset[str]
    quoted: frozenset[str]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    words: frozenset[str]


def _number_value(token: str) -> str:
    try:
        value = Decimal(token.replace(",", ""))
    except InvalidOperation:
        return token
    # normalize() turns 1000 into 1E+3; format back to plain digits.
    return format(value.normalize(), "f")


def _words(text: str) -> list[str]:
    # "don't" is "do" + "not", so a contraction and its long form agree.
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group().casefold().replace("\u2019", "'")
        if word.endswith("n't"):
            stem = word[:-3]
            out.extend([{"ca": "can", "wo": "will", "sha": "shall"}.get(stem, stem), "not"])
        elif word == "cannot":
            out.extend(["can", "not"])
        else:
            out.append(word.split("'")[0] if word.endswith("'s") else word)
    return out


@lru_cache(maxsize=4096)
def signature(prompt: str) -> Signature:
    text = strip_courtesy(unicodedata.normalize("NFKC", prompt).strip())
    numbers: list[tuple[int, str]] = [
        (m.start(), _number_value(m.group())) for m in _NUMBER.finditer(text)
    ]
    words = _words(text)
    for match in _WORD.finditer(text):
        value = _NUMBER_WORDS.get(match.group().casefold())
        if value is not None:
            numbers.append((match.start(), value))
    numbers.sort()
    polarity = Counter(w for w in words if w in _NEGATIONS or w in _POLARITY)
    entities = {
        _words(m.group())[0]
        for m in _WORD.finditer(text)
        if m.group()[0].isupper() and m.group().casefold() not in _NOT_ENTITIES
    }
    quoted = {
        " ".join(next(g for g in m.groups() if g is not None).casefold().split())
        for m in _QUOTED.finditer(text)
    }
    options = tuple(
        (m.group(1).casefold(), tuple(_words(m.group(2)))) for m in _OPTION.finditer(text)
    )
    return Signature(
        numbers=tuple(n for _, n in numbers),
        polarity=tuple(sorted(polarity.items())),
        entities=frozenset(entities),
        quoted=frozenset(quoted),
        options=options,
        words=frozenset(words),
    )


def _negated_pair(a: frozenset[str], b: frozenset[str]) -> bool:
    for word in a - b:
        for prefix in _NEGATING_PREFIXES:
            rest = word[len(prefix) :]
            if word.startswith(prefix) and len(rest) >= 3 and rest in b:
                return True
    return False


def compatible(cached: str, new: str) -> bool:
    """Whether `new` may be answered with the answer cached for `cached`."""
    a, b = signature(cached), signature(new)
    if a.numbers != b.numbers or a.polarity != b.polarity or a.options != b.options:
        return False
    if a.quoted != b.quoted:
        return False
    if not (a.entities <= b.words and b.entities <= a.words):
        return False
    return not (_negated_pair(a.words, b.words) or _negated_pair(b.words, a.words))
