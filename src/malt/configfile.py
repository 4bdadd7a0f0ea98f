"""Typed config files: YAML read with each key's line, checked into dataclasses field by field.

Generic machinery with no knowledge of malt's sections (`malt.config` holds the schema):
`read_yaml` reads a mapping and the line of every dotted key (a key given twice is an
error), `apply_override` sets `a.b.c=value`, `from_dict` builds a dataclass checking names and
types (YAML 1.2 floats such as `2e-4` included), `to_dict` turns it back into plain data, and
`blame` names where a bad value came from: its override, else `file:line`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from malt.errors import MaltError

# A dataclass field with this metadata collects the section's other keys: `generate.verifier`
# is `GenerateConfig.roles["verifier"]`, and the saved YAML writes it back the same way.
KEYED = {"keyed": True}


class FieldError(MaltError):
    """A value that its field does not allow; `field` is the dotted name, `reason` the rule."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise FieldError(key, why)


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def non_negative(x: float) -> bool:
    return math.isfinite(x) and x >= 0


def read_yaml(path: str | os.PathLike) -> tuple[Any, dict[str, int]]:
    """A YAML file's data, and the 1-based line of each dotted mapping key ("train.beta").

    Errors are one sentence naming file:line; a key given twice in one mapping is one of
    them (PyYAML alone would silently keep the last).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MaltError(f"{path}: not valid UTF-8 (byte 0x{e.object[e.start]:02x})") from None
    data, node = _load_yaml(text, str(path))
    return data, _key_lines(node)


def parse_yaml(text: str) -> Any:
    """The value a YAML snippet (such as a command-line override) writes, checked as above."""
    return _load_yaml(text, "value")[0]


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" merges are not repeats
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in first
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if repeated:
                raise _DuplicateKey(problem=f"duplicate key {key!r} (first given on line "
                                    f"{first[key]})", problem_mark=key_node.start_mark)
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _load_yaml(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """The data in a YAML document and its node tree (which knows each key's line)."""
    try:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            return (loader.construct_document(node) if node is not None else None), node
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise MaltError(_yaml_error(where, e)) from None


def _yaml_error(where: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    at = f"{where}:{mark.line + 1}" if mark else where
    if isinstance(e, _DuplicateKey):
        return f"{at}: {e.problem}"
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    return f"{at}: not valid YAML ({problem})"


def _key_lines(node: yaml.Node | None, prefix: str = "", depth: int = 0) -> dict[str, int]:
    """Dotted key -> line of that key, through nested mappings (a config nests 3 deep)."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode) or depth > 3:
        return lines
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = prefix + key_node.value
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, f"{key}.", depth + 1))
    return lines


def blame(e: FieldError, path: Path | None, lines: dict[str, int],
           given: list[tuple[str, str]]) -> str:
    """`e` as one sentence naming where the value came from: its override, else file:line."""
    name = e.field.split("[")[0]  # "eval.seeds[1]" was set as eval.seeds
    for item, key in reversed(given):  # the last override of a field is the one that counts
        if key == name or key.startswith(f"{name}.") or name.startswith(f"{key}."):
            return f"override {item}: {e}"
    if path is None:
        return str(e)
    parts = name.split(".")
    enclosing = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
    line = next((lines[k] for k in enclosing if k in lines), None)
    return f"{path}:{line}: {e}" if line else f"{path}: {e}"


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Set a dotted key in a nested dict from `a.b.c=value` (value parsed as YAML); returns
    the dotted key."""
    if "=" not in item:
        raise MaltError(f"override {item!r} must look like section.field=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise MaltError(f"override {item!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = parse_yaml(text)
    except MaltError:
        node[parts[-1]] = text
    return ".".join(parts)


def from_dict(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, checking names and types field by field."""
    if not isinstance(raw, dict):
        raise FieldError(prefix.rstrip(".") or "config",
                         f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    keyed = next((f.name for f in fields.values() if f.metadata.get("keyed")), None)
    named = [n for n in fields if n != keyed]
    kwargs: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in raw.items():
        if name in named:
            kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
        elif keyed is not None and isinstance(value, dict | None):
            # A per-role entry (`generate.verifier`); the chain checks the name later.
            (item,) = typing.get_args(hints[keyed])[1:]
            rest[str(name)] = _coerce(item, value if value is not None else {}, f"{prefix}{name}")
        else:
            more = " or a role name with a mapping" if keyed else ""
            raise FieldError(f"{prefix}{name}", f"unknown field (known: {', '.join(named)}{more})")
    if keyed is not None:
        kwargs[keyed] = rest
    try:
        return cls(**kwargs)
    except FieldError as e:  # a range check in __post_init__ names the field without its section
        raise FieldError(f"{prefix}{e.field}", e.reason) from None


# YAML 1.2 floats, such as 2e-4 or +.5, that PyYAML (YAML 1.1) reads as strings.
_YAML12_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except FieldError:
                continue
        raise FieldError(name, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, str) and value in allowed:
            return value
        raise FieldError(name, f"{value!r} is not one of {', '.join(allowed)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{name}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(name, f"expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(item, v, f"{name}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(name, f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
        return float(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and not (
        tp is int and isinstance(value, bool)
    )):
        return value
    raise FieldError(name, f"expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data, per-role entries back in their sections (as in the YAML)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("keyed"):
            out.update({k: _plain(v) for k, v in value.items()})
        else:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
