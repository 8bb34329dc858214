"""Small edits to a policy's YAML text that keep everything else as written.

`router advise` proposes a step as a diff of the policy file a person wrote, so
the edit must not re-serialise the file (that would drop comments, reorder
keys and turn flow mappings into blocks). PyYAML's node tree gives the exact
character span of every value; each edit splices new text into one span and
the result is parsed again by the caller to check that it is still a policy.

Paths address nodes the way the policy reads: `("routes", 2, "rollout",
"percent")`, `("default", "shadow")`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import yaml

__all__ = [
    "PolicyEditError",
    "add_key",
    "append_route",
    "find",
    "replace_value",
    "unified_diff",
]

Path = Sequence[str | int]


class PolicyEditError(ValueError):
    """The text has no node at the path, or not of a kind this module edits."""


def _root(text: str) -> yaml.Node:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise PolicyEditError("the policy is not a YAML mapping")
    return root


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(step, int):
        if isinstance(node, yaml.SequenceNode) and 0 <= step < len(node.value):
            child: yaml.Node = node.value[step]
            return child
        return None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                found: yaml.Node = value
                return found
    return None


def find(text: str, path: Path) -> yaml.Node | None:
    """The node at `path`, or None."""
    node: yaml.Node | None = _root(text)
    for step in path:
        if node is None:
            return None
        node = _child(node, step)
    return node


def _end(node: yaml.Node) -> int:
    """Where the node's own text ends.

    A block collection's end mark sits at the next token, past the newline and
    the next line's indentation; its last descendant's end is where it really stops.
    """
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        if not node.value:
            return int(node.start_mark.index)
        last = node.value[-1]
        return _end(last[1] if isinstance(node, yaml.MappingNode) else last)
    return int(node.end_mark.index)


def _require(text: str, path: Path) -> yaml.Node:
    node = find(text, path)
    if node is None:
        raise PolicyEditError(f"no '{'.'.join(map(str, path))}' in the policy")
    return node


def replace_value(text: str, path: Path, value: str) -> str:
    """Replace the value at `path` (a scalar or a flow collection) with `value` as written."""
    node = _require(text, path)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        raise PolicyEditError(f"'{'.'.join(map(str, path))}' is a block; replace its keys")
    return text[: node.start_mark.index] + value + text[_end(node) :]


def _line_end(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found < 0 else found


def add_key(text: str, path: Path, key: str, value: str) -> str:
    """Add `key: value` (value as written, e.g. a flow mapping) to the mapping at `path`."""
    node = _require(text, path)
    if not isinstance(node, yaml.MappingNode):
        raise PolicyEditError(f"'{'.'.join(map(str, path))}' is not a mapping")
    if any(k.value == key for k, _ in node.value):
        raise PolicyEditError(f"'{'.'.join(map(str, path))}' already has '{key}'")
    if node.flow_style:
        close = int(node.end_mark.index) - 1  # the closing brace
        sep = ", " if node.value else ""
        return text[:close] + f"{sep}{key}: {value}" + text[close:]
    if not node.value:
        raise PolicyEditError(f"'{'.'.join(map(str, path))}' is an empty block mapping")
    indent = " " * node.value[0][0].start_mark.column
    # After the line the last value ends on (its trailing comment stays with it).
    at = _line_end(text, _end(node.value[-1][1]))
    return text[:at] + f"\n{indent}{key}: {value}" + text[at:]


def append_route(text: str, lines: Sequence[str], flow: str) -> str:
    """Add a route at the end of `routes`.

    `lines` is the route as block lines (`name: x`, `match: {...}`, ...), used
    when `routes` is a block list, an empty flow list or absent; `flow` is the
    same route as one flow mapping, used inside a non-empty flow list.
    """
    root = _root(text)
    routes = _child(root, "routes")

    def block(dash: int) -> str:
        pad = " " * dash
        first, *rest = lines
        return "\n".join([f"{pad}- {first}", *(f"{pad}  {line}" for line in rest)])

    if routes is None or (isinstance(routes, yaml.ScalarNode) and routes.tag.endswith(":null")):
        if routes is not None:  # `routes:` with nothing after it
            return _splice_list(text, routes, block(2))
        # No `routes:` at all: put the list before `default:`, where a reader looks for it.
        default = next((k for k, _ in root.value if k.value == "default"), None)
        at = int(default.start_mark.index) if default is not None else len(text)
        return text[:at] + "routes:\n" + block(2) + "\n\n" + text[at:]
    if not isinstance(routes, yaml.SequenceNode):
        raise PolicyEditError("'routes' is not a list")
    if routes.flow_style:
        if routes.value:
            close = int(routes.end_mark.index) - 1
            return text[:close] + f", {flow}" + text[close:]
        return _splice_list(text, routes, block(2))
    dash = int(routes.start_mark.column)
    at = _line_end(text, _end(routes.value[-1]))
    return text[:at] + "\n" + block(dash) + text[at:]


def _splice_list(text: str, node: yaml.Node, items: str) -> str:
    """Replace an empty value (`[]` or nothing) with a block list under its key."""
    head = text[: int(node.start_mark.index)].rstrip(" \n")
    tail = text[int(node.end_mark.index) :]
    return head + "\n" + items + ("" if tail.startswith("\n") else "\n") + tail


def unified_diff(before: str, after: str, path: str) -> str:
    """`diff -u` of two versions of the policy file, as `git diff` names them."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path.lstrip('/')}",
            tofile=f"b/{path.lstrip('/')}",
        )
    )
