"""A typed reader over PyYAML's node tree, so every error can name FILE:LINE:COL.

PyYAML's `compose` keeps each node's position; reading the nodes (not the
constructed Python values) lets one pass both build the policy and collect all
errors, instead of stopping at the first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

__all__ = ["Errors", "Node", "compose", "expand_env"]

Node = yaml.Node
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Errors:
    source: str
    messages: list[str] = field(default_factory=list)

    def add(self, node: Node | None, message: str) -> None:
        if node is None:
            self.messages.append(f"{self.source}:1:1: {message}")
            return
        mark = node.start_mark
        self.messages.append(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {message}")

    def __bool__(self) -> bool:
        return bool(self.messages)


def compose(text: str, errors: Errors) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        errors.messages.append(f"{errors.source}:{where}: {exc.problem or exc.context}")
        return None


def expand_env(value: str) -> tuple[str, list[str]]:
    """Replace `${VAR}` and `${VAR:-default}`; return the text and the unset names."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _ENV.sub(sub, value), missing


def mapping_items(node: Node) -> Iterator[tuple[str, Node, Node]]:
    assert isinstance(node, yaml.MappingNode)
    for key, value in node.value:
        yield str(key.value), key, value
