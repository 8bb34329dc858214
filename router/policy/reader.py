"""`Section`: read one YAML mapping with types, defaults and positioned errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import yaml

from router.policy.yamlnodes import Errors, Node, expand_env, mapping_items

__all__ = ["Section"]

N = TypeVar("N", int, float)
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


class Section:
    def __init__(self, node: Node, errors: Errors, allowed: set[str] | None = None) -> None:
        self.node = node
        self.errors = errors
        self.entries: dict[str, tuple[Node, Node]] = {}
        if not isinstance(node, yaml.MappingNode):
            errors.add(node, "expected a mapping")
            return
        for name, key, value in mapping_items(node):
            if name in self.entries:
                errors.add(key, f"duplicate key '{name}'")
            elif allowed is not None and name not in allowed:
                errors.add(
                    key, f"unknown key '{name}' (expected one of: {', '.join(sorted(allowed))})"
                )
            self.entries[name] = (key, value)

    @property
    def ok(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def has(self, name: str) -> bool:
        return name in self.entries

    def value_node(self, name: str) -> Node | None:
        entry = self.entries.get(name)
        return entry[1] if entry else None

    def names(self) -> list[str]:
        return list(self.entries)

    def _scalar(self, name: str, required: bool) -> tuple[Node, str] | None:
        node = self.value_node(name)
        if node is None:
            if required:
                self.errors.add(self.node, f"missing required key '{name}'")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.errors.add(node, f"'{name}' must be a single value")
            return None
        return node, str(node.value)

    def string(
        self, name: str, default: str | None = None, *, required: bool = False
    ) -> str | None:
        found = self._scalar(name, required)
        if found is None:
            return default
        node, text = found
        if node.tag.endswith(":null"):
            return ""
        expanded, missing = expand_env(text)
        for var in missing:
            self.errors.add(node, f"environment variable '{var}' is not set (in '{name}')")
        return expanded

    def number(
        self, name: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        return self._bounded(name, default, float, "a number", low, high)

    def integer(
        self, name: str, default: int, *, low: float | None = 0, high: float | None = None
    ) -> int:
        return self._bounded(name, default, int, "an integer", low, high)

    def _bounded(
        self,
        name: str,
        default: N,
        parse: Callable[[str], N],
        noun: str,
        low: float | None,
        high: float | None,
    ) -> N:
        found = self._scalar(name, False)
        if found is None:
            return default
        node, text = found
        try:
            value = parse(expand_env(text)[0])
        except ValueError:
            self.errors.add(node, f"'{name}' must be {noun}, got '{text}'")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            # An integer is shown as read (after ${VAR}), a number as written.
            shown = value if parse is int else text
            self.errors.add(node, f"'{name}' must be {bounds}, got {shown}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        found = self._scalar(name, False)
        if found is None:
            return default
        node, text = found
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        self.errors.add(node, f"'{name}' must be true or false, got '{text}'")
        return default

    def strings(self, name: str) -> tuple[str, ...] | None:
        """A string or a list of strings."""
        node = self.value_node(name)
        if node is None:
            return None
        return strings_of(node, self.errors, name)

    def section(self, name: str, allowed: set[str] | None = None) -> Section | None:
        node = self.value_node(name)
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return None
        return Section(node, self.errors, allowed)

    def sequence(self, name: str) -> list[Node]:
        node = self.value_node(name)
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.errors.add(node, f"'{name}' must be a list")
            return []
        return list(node.value)


def strings_of(node: Node, errors: Errors, name: str) -> tuple[str, ...] | None:
    if isinstance(node, yaml.ScalarNode):
        return (expand_env(str(node.value))[0],)
    if isinstance(node, yaml.SequenceNode):
        out: list[str] = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                errors.add(item, f"'{name}' items must be strings")
                continue
            out.append(expand_env(str(item.value))[0])
        return tuple(out)
    errors.add(node, f"'{name}' must be a string or a list of strings")
    return None
