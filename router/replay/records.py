"""Read decision-record files for replay: records, joined feedback lines, unknown kinds skipped.

A records file is JSON lines. Each line is one of:

* a decision record (no `kind`, or `kind: "decision"`): the schema of
  `router.outcomes.record.DecisionRecord`, optionally with the label fields
  `feedback`, `shadow_result` and `quality` (see `router.replay.labels`);
* a standalone feedback line `{"kind": "feedback", "request_id": ..., "score": ...,
  "label": ..., "source": ..., "ts": ..., "upstream": ...}`, appended to the
  `feedback` list of the record with that `request_id`, wherever it is in the files;
* any other `kind`: skipped and counted, so newer writers do not break older readers.

Blank and unparseable lines are counted, never fatal: a record file cut by a crash
still replays.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RecordSet", "iter_lines", "load_records"]

Record = dict[str, Any]


@dataclass
class RecordSet:
    records: list[Record] = field(default_factory=list)
    feedback_joined: int = 0
    feedback_orphans: int = 0  # feedback lines whose request_id matches no record
    skipped_kinds: dict[str, int] = field(default_factory=dict)
    bad_lines: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "feedback_joined": self.feedback_joined,
            "feedback_orphans": self.feedback_orphans,
            "skipped_kinds": dict(self.skipped_kinds),
            "bad_lines": self.bad_lines,
        }


def iter_lines(paths: Iterable[str | Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as fh:
            yield from fh


def load_records(paths: Iterable[str | Path] | str | Path) -> RecordSet:
    """Read every record in `paths` (in order) and join standalone feedback to them."""
    if isinstance(paths, str | Path):
        paths = [paths]
    out = RecordSet()
    by_id: dict[str, Record] = {}
    pending: list[Record] = []
    loads = json.loads
    for line in iter_lines(paths):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except ValueError:
            out.bad_lines += 1
            continue
        if not isinstance(item, dict):
            out.bad_lines += 1
            continue
        kind = item.get("kind")
        if kind is None or kind == "decision":
            if "request_id" not in item:
                out.bad_lines += 1
                continue
            out.records.append(item)
            by_id[str(item["request_id"])] = item
        elif kind == "feedback":
            # Feedback can arrive before or after its record: join at the end.
            pending.append(item)
        else:
            out.skipped_kinds[str(kind)] = out.skipped_kinds.get(str(kind), 0) + 1
    for item in pending:
        target = by_id.get(str(item.get("request_id")))
        if target is None:
            out.feedback_orphans += 1
            continue
        entry = {k: item.get(k) for k in ("score", "label", "source", "ts")}
        if item.get("upstream") is not None:
            entry["upstream"] = item["upstream"]
        feedback = target.get("feedback")
        if not isinstance(feedback, list):
            feedback = target["feedback"] = []
        feedback.append(entry)
        out.feedback_joined += 1
    return out
