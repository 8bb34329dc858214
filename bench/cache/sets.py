"""Prompt sets for the cache benchmark, built from the RouteLLM dev split.

Stored: every GSM8K and MT Bench prompt, and every other MMLU question of each
subject. Queries:
- near misses (a hit is a false hit): GSM8K with one number changed; MMLU with one
  option replaced by another question's option, two options swapped, a negation
  added, a polarity word flipped; MMLU questions of the same subject not stored.
- benign variants (should hit their own original): whitespace, case, punctuation,
  a courtesy opening.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Query", "Sets", "build_sets"]

DEV = Path("/work/shared/data/routing/dev.jsonl")

_OPTION = re.compile(r"^([A-D])\. (.*)$", re.MULTILINE)
_AUX = re.compile(r"\b(is|are|was|were|does|do|can|could|would|will|should|has|have)\b")
_NUMBER = re.compile(r"\d+")
_FLIPS = {
    "true": "false", "false": "true", "increase": "decrease", "decrease": "increase",
    "increases": "decreases", "decreases": "increases", "most": "least", "least": "most",
    "higher": "lower", "lower": "higher", "more": "less", "less": "more",
    "always": "never", "never": "always", "before": "after", "after": "before",
}  # fmt: skip
_COURTESY = [
    "Please answer: ",
    "Hi, can you help me with this? ",
    "Could you answer this question: ",
    "Hello! Please answer the following question.\n",
    "please ",
]


@dataclass(frozen=True)
class Query:
    kind: str
    prompt: str
    original: int | None  # index into Sets.stored for benign variants; None for near misses


@dataclass(frozen=True)
class Sets:
    stored: list[str]
    near_misses: list[Query]
    benign: list[Query]


def _options(prompt: str) -> list[tuple[int, int, str, str]]:
    return [(m.start(2), m.end(2), m.group(1), m.group(2)) for m in _OPTION.finditer(prompt)]


def _replace_span(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _number_changed(prompt: str, rng: random.Random) -> str | None:
    spans = list(_NUMBER.finditer(prompt))
    if not spans:
        return None
    m = rng.choice(spans)
    return _replace_span(prompt, m.start(), m.end(), str(int(m.group()) + rng.randint(1, 9)))


def _option_replaced(prompt: str, donors: list[str], rng: random.Random) -> str | None:
    options = _options(prompt)
    if not options:
        return None
    start, end, _, text = rng.choice(options)
    pool = [t for d in donors for _, _, _, t in _options(d) if t.strip() != text.strip()]
    if not pool:
        return None
    return _replace_span(prompt, start, end, rng.choice(pool))


def _options_swapped(prompt: str, rng: random.Random) -> str | None:
    options = [o for o in _options(prompt)]
    pairs = [(a, b) for a in options for b in options if a[0] < b[0] and a[3] != b[3]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    out = _replace_span(prompt, b[0], b[1], a[3])
    return _replace_span(out, a[0], a[1], b[3])


def _negated(prompt: str) -> str | None:
    stem = prompt.split("\nA. ")[0]
    m = _AUX.search(stem)
    if m is None:
        return None
    return prompt[: m.end()] + " not" + prompt[m.end() :]


def _polarity_flipped(prompt: str) -> str | None:
    for m in re.finditer(r"[A-Za-z]+", prompt):
        flip = _FLIPS.get(m.group().lower())
        if flip is not None:
            if m.group()[0].isupper():
                flip = flip.capitalize()
            return _replace_span(prompt, m.start(), m.end(), flip)
    return None


def _whitespace(prompt: str, rng: random.Random) -> str:
    words = prompt.split(" ")
    out = " ".join(w + (" " if rng.random() < 0.3 else "") for w in words)
    return "\n  " + out.replace("\n", "\r\n") + "  \n"


def _case(prompt: str, rng: random.Random) -> str:
    return prompt.lower() if rng.random() < 0.5 else prompt.upper()


def _punctuation(prompt: str, rng: random.Random) -> str:
    # Commas between words go, thousands separators stay; the ending changes.
    out = re.sub(r",(?=\s)", "", prompt).rstrip()
    if out.endswith(("?", ".", ":")):
        return out[:-1] + ("" if rng.random() < 0.5 else "?!")
    return out + "?"


def _courtesy(prompt: str, rng: random.Random) -> str:
    return rng.choice(_COURTESY) + prompt


def build_sets(per_kind: int = 400, seed: int = 0, path: Path = DEV) -> Sets:
    rng = random.Random(seed)
    records = [json.loads(line) for line in path.read_text().split("\n") if line.strip()]
    stored: list[str] = []
    held_out: list[str] = []
    by_subject: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for record in records:
        prompt = record["prompt"]
        if record["benchmark"] == "mmlu":
            subject = record["subject"]
            seen[subject] += 1
            by_subject[subject].append(prompt)
            (stored if seen[subject] % 2 else held_out).append(prompt)
        else:
            stored.append(prompt)
    subject_of = {
        p: r["subject"] for r in records if r["benchmark"] == "mmlu" for p in [r["prompt"]]
    }
    stored_set = set(stored)

    def sample(items: list[Query]) -> list[Query]:
        rng.shuffle(items)
        # A variant equal to a stored prompt is not a near miss; drop it.
        return [q for q in items if q.prompt not in stored_set][:per_kind]

    gsm8k = {r["prompt"] for r in records if r["benchmark"] == "gsm8k"}
    gsm = [p for p in stored if p in gsm8k and _NUMBER.search(p)]
    mmlu = [p for p in stored if p in subject_of]
    near: list[Query] = []
    near += sample([Query("gsm8k_number_changed", v, None) for p in gsm
                    if (v := _number_changed(p, rng)) is not None])  # fmt: skip
    near += sample([Query("mmlu_option_replaced", v, None) for p in mmlu
                    if (v := _option_replaced(p, by_subject[subject_of[p]], rng))])  # fmt: skip
    near += sample([Query("mmlu_options_swapped", v, None) for p in mmlu
                    if (v := _options_swapped(p, rng)) is not None])  # fmt: skip
    near += sample([Query("mmlu_negation_added", v, None) for p in mmlu
                    if (v := _negated(p)) is not None])  # fmt: skip
    near += sample([Query("mmlu_polarity_flipped", v, None) for p in mmlu
                    if (v := _polarity_flipped(p)) is not None])  # fmt: skip
    near += sample([Query("mmlu_other_question_same_subject", p, None) for p in held_out])
    benign: list[Query] = []
    index = {p: i for i, p in enumerate(stored)}
    for kind, make in [
        ("whitespace", _whitespace),
        ("case", _case),
        ("punctuation", _punctuation),
        ("courtesy_prefix", _courtesy),
    ]:
        picks = rng.sample(stored, min(per_kind, len(stored)))
        benign += [Query(kind, make(p, rng), index[p]) for p in picks]
    return Sets(stored=stored, near_misses=near, benign=benign)
