"""`Key`: how a policy dataclass field is written in YAML, as `Annotated` metadata.

The loader reads every section from its dataclass's fields, by the declared type
(`bool`, `int`, `float`, `str`, `Literal[...]`, `tuple[str, ...]`, a nested
dataclass, each optionally `| None`). A field with no `Key` is read by its own
name, with numbers at least 0; a `Key` says what differs:

    rotate_mb: Annotated[float, Key(low=0.001)] = 100.0
    max_header_bytes: Annotated[int, Key(yaml="max_header_kb", scale=1024, low=1, high=1024)]
    name: Annotated[str, INTERNAL]  # not a YAML key: the loader passes it
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INTERNAL", "Key"]


@dataclass(frozen=True, slots=True)
class Key:
    low: float | None = 0  # None: no lower bound
    high: float | None = None
    # The name in YAML: "" is the field's own name; None: not a YAML key at all.
    yaml: str | None = ""
    # A number written in other units: the field holds YAML value * scale (KiB -> bytes).
    scale: int = 1
    lower: bool = False  # lower-case the text (header names)


INTERNAL = Key(yaml=None)
