"""Read a YAML section into a policy dataclass, field by field, by the declared types.

`read(RecordConfig, section)` reads each field of `RecordConfig` under its YAML
name (see `router.policy.keys.Key`), so adding a key to the policy is one line
in `router/policy/model.py`. Fields with a special shape (route lists, maps of
tenants, header rules) are read by the loader and passed in as keywords.

How a type is read (an absent key keeps the default; `| None` allows null):

- `bool`, `int`, `float`: `Section.boolean` / `integer` / `number`, bounded by the
  `Key` (at least 0 unless it says otherwise); `int | None` and `float | None`
  stay None unless written.
- `str`: empty or null falls back to the default; `str | None`: empty or null is None;
  a `str` with no default is required. `Literal[...]` must be one of its values.
- `tuple[str, ...]` / `frozenset[str]`: a string or a list of strings; items of a
  `tuple[Literal[...], ...]` must be among its values.
- a dataclass: a nested section, read the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml

from router.policy.keys import Key
from router.policy.reader import Section
from router.policy.yamlnodes import expand_env

__all__ = ["default_of", "keys", "read", "read_key"]

T = TypeVar("T")
_NO_DEFAULT: Any = dataclasses.MISSING


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str  # in Python
    yaml: str | None  # in YAML; None: not a YAML key
    type: Any  # without Annotated and without `| None`
    optional: bool  # `| None`
    key: Key
    spec: dataclasses.Field[Any]

    @property
    def default(self) -> Any:
        """The dataclass's default (a fresh one from a factory); _NO_DEFAULT: required."""
        if self.spec.default_factory is not dataclasses.MISSING:
            return self.spec.default_factory()
        return self.spec.default


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, _Field] = {}
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], Key()
        if typing.get_origin(tp) is Annotated:
            tp, *extras = typing.get_args(tp)
            key = next((e for e in extras if isinstance(e, Key)), key)
        optional = False
        if typing.get_origin(tp) in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional, tp = len(args) < len(typing.get_args(tp)), args[0]
            assert len(args) == 1, f"{cls.__name__}.{f.name}: one type or None"
        yaml_name = f.name if key.yaml == "" else key.yaml
        out[f.name] = _Field(f.name, yaml_name, tp, optional, key, f)
    return out


def keys(cls: type) -> set[str]:
    """The YAML keys of `cls`'s section."""
    return {f.yaml for f in _fields(cls).values() if f.yaml is not None}


def read(cls: type[T], s: Section, base: T | None = None, /, **given: Any) -> T:
    """`cls` from section `s`: `given` fields as passed, the rest read by type.

    Unwritten keys take their value from `base` (the section's defaults when they
    differ from the dataclass's own), else from the dataclass.
    """
    values = dict(given)
    for f in _fields(typing.cast(type, cls)).values():
        if f.name in given:
            continue
        default = getattr(base, f.name) if base is not None else f.default
        if f.yaml is not None:
            values[f.name] = _read(f, s, default, cls)
        elif default is _NO_DEFAULT:
            raise TypeError(f"{cls.__name__}.{f.name} is not in YAML: pass it")
        elif base is not None:
            values[f.name] = default  # else the dataclass applies its own (factory) default
    return typing.cast(T, typing.cast(Any, cls)(**values))


def read_key(cls: type, name: str, s: Section, default: Any = _NO_DEFAULT) -> Any:
    """One field of `cls` read from `s` under its own name (a key in a sub-section)."""
    f = dataclasses.replace(_fields(cls)[name], yaml=name)
    return _read(f, s, f.default if default is _NO_DEFAULT else default, cls)


def _read(f: _Field, s: Section, default: Any, cls: type) -> Any:
    name, tp, key = f.yaml, f.type, f.key
    assert name is not None
    origin = typing.get_origin(tp)
    if default is _NO_DEFAULT and tp is not str:
        raise TypeError(f"{cls.__name__}.{f.name}: a required {tp} cannot be read: pass it")
    if tp is bool:
        return s.boolean(name, default)
    if tp in (int, float) and not s.has(name):
        return default
    if tp is float or (tp is int and key.scale != 1):
        number = s.number(name, (default or 0) / key.scale, low=key.low, high=key.high)
        return tp(number * key.scale)
    if tp is int:
        return s.integer(name, default or 0, low=key.low, high=key.high)
    if tp is str or origin is Literal:
        return _text(f, s, default)
    if origin in (tuple, frozenset):
        return _strings(f, s, default)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        sub = s.section(name, keys(tp))
        return default if sub is None else read(tp, sub, default)
    raise TypeError(f"{cls.__name__}.{f.name}: no reader for {tp}: pass it to read()")


def _text(f: _Field, s: Section, default: str | None) -> str | None:
    name = f.yaml
    assert name is not None
    if default is _NO_DEFAULT:
        text = s.string(name, required=True)
    else:
        text = s.string(name, default) or (None if f.optional else default)
    if text and f.key.lower:
        text = text.lower()
    if text is not None and typing.get_origin(f.type) is Literal:
        choices = typing.get_args(f.type)
        if text not in choices:
            s.errors.add(s.value_node(name), f"'{name}' must be {_either(choices)}")
    return text


def _strings(f: _Field, s: Section, default: Any) -> Any:
    name = f.yaml
    assert name is not None
    found = s.strings(name)
    if found is None:
        return default
    if f.key.lower:
        found = tuple(item.lower() for item in found)
    (item_type, *_) = typing.get_args(f.type)
    if typing.get_origin(item_type) is Literal:
        _check_items(s, name, typing.get_args(item_type))
    return typing.get_origin(f.type)(found)


def _check_items(s: Section, name: str, choices: tuple[str, ...]) -> None:
    node = s.value_node(name)
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for item in items:
        if isinstance(item, yaml.ScalarNode):
            text = expand_env(str(item.value))[0]
            if text not in choices:
                s.errors.add(item, f"'{name}' items must be {_either(choices)}, got '{text}'")


def _either(choices: tuple[str, ...]) -> str:
    quoted = [f"'{c}'" for c in choices]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of `cls` (a slotted dataclass has no class attribute)."""
    return _fields(cls)[name].default
