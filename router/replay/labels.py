"""Quality labels carried by records, and what they say about each upstream.

A record can carry three kinds of label (all optional):

* `quality: {upstream: score}`: a score per upstream's answer, written by
  `router replay --from-routing-data` or by an offline judge;
* `feedback: [{"score": float, "label": str|None, "source": str, "ts": float,
  "upstream": str (optional)}]`: ratings of an answer. `upstream` defaults to
  the record's `route` (the answer the client got); a rating of the shadow answer
  names the shadow upstream;
* `shadow_result: {"upstream", "answer", "status", "latency_ms", "tokens_in",
  "tokens_out", "cost_usd"}`: the second answer of a shadow pair. It gives a
  quality only once something rated it (a feedback entry naming its upstream).

Scores from all sources must share one scale within a record (e.g. 0..1), since
replay compares upstreams on the same request. Explicit `quality` wins over
feedback; several feedback scores for one upstream are averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GOOD_SCORE", "Labels", "labels_of", "strong_needed"]

#: A lone rating of the weak answer at or above this counts as "the weak model was enough".
GOOD_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class Labels:
    quality: dict[str, float]
    source: str  # "quality", "feedback", "none"
    shadow_pair: bool  # the record has a successful shadow answer
    feedback: int  # number of feedback entries

    @property
    def labelled(self) -> bool:
        return bool(self.quality)


_EMPTY = Labels({}, "none", False, 0)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def labels_of(record: Mapping[str, Any]) -> Labels:
    explicit = record.get("quality")
    feedback = record.get("feedback")
    shadow = record.get("shadow_result")
    if explicit is None and feedback is None and shadow is None:
        return _EMPTY
    quality: dict[str, float] = {}
    source = "none"
    if isinstance(explicit, Mapping):
        for name, value in explicit.items():
            number = _number(value)
            if number is not None:
                quality[str(name)] = number
        source = "quality" if quality else source
    count = 0
    if isinstance(feedback, list):
        sums: dict[str, list[float]] = {}
        for item in feedback:
            if not isinstance(item, Mapping):
                continue
            number = _number(item.get("score"))
            upstream = item.get("upstream") or record.get("route")
            if number is None or not upstream:
                continue
            count += 1
            sums.setdefault(str(upstream), []).append(number)
        for name, values in sums.items():
            if name not in quality:
                quality[name] = sum(values) / len(values)
                source = "feedback" if source == "none" else source
    pair = (
        isinstance(shadow, Mapping)
        and isinstance(shadow.get("status"), int)
        and 200 <= shadow["status"] < 300
    )
    return Labels(quality, source, pair, count)


def strong_needed(labels: Labels, strong: str, weak: str) -> float | None:
    """1.0 when the strong upstream was needed, 0.0 when the weak one was enough, else None.

    With both rated: strong needed when its answer scored strictly higher (the
    routing data's own rule). With only the weak answer rated: needed when that
    rating is below `GOOD_SCORE`. A lone strong rating says nothing about weak.
    """
    q = labels.quality
    if strong in q and weak in q:
        return 1.0 if q[strong] > q[weak] else 0.0
    if weak in q:
        return 1.0 if q[weak] < GOOD_SCORE else 0.0
    return None
