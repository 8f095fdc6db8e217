"""The strict loader behind every csrv2 config (run, grid and benchmark): YAML → nested dataclasses.

Strict means: an unknown key, a wrong type, a duplicate key in a mapping or a value outside a Literal raises
ConfigError naming the dotted key and what would be valid. A field's documentation is the string literal written
under it (`field_docs`), which `describe` prints.

    config = load(MyConfig, "run.yaml", overrides=["train.lr=3e-4"])   # file, then dotted overrides
    config = build(MyConfig, {"train": {"lr": 3e-4}})                  # from a dict
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key, value or combination that cannot be used; the message names it."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # deep: a list key is shown filled in
        if not isinstance(key, Hashable):  # `? [a, b]` or `{a: 1}: …`: a dict cannot hold it
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}: key {key!r} is a {type(key).__name__}; keys are names"
            )
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping")
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path) -> dict:
    """A YAML file whose top level is a mapping (an empty file is {}); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader) or {}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def load(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    prepare: Callable[[dict, Path], Any] | None = None,
) -> T:
    """Build `cls` from a YAML file (None → defaults) and `key.sub=value` overrides; errors name the file.

    prepare(raw, the YAML's folder) may change the raw mapping first (relative paths). If `cls` has a `validate()`
    method it runs last."""
    raw = read_yaml(path) if path is not None else {}
    if prepare is not None and path is not None:
        prepare(raw, Path(path).parent)
    try:
        obj = build(cls, apply_overrides(raw, overrides), "")
        if hasattr(obj, "validate"):
            obj.validate()
    except ConfigError as err:
        raise ConfigError(f"{path or 'config'}: {err}") from None
    return obj


def describe(cls: type) -> str:
    """Every option of a config dataclass with its default and docstring, one per line."""
    lines: list[str] = []
    describe_fields(cls, "", lines)
    return "\n".join(lines)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe_fields(cls: type, prefix: str, lines: list[str]) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"{key}: {docs.get(f.name, '')}")
            describe_fields(hints[f.name], key + ".", lines)
        else:
            lines.append(f"  {key} = {getattr(default, f.name)!r}  — {docs.get(f.name, '')}")


def flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-4}} → {"train.lr": 1e-4}: nested mappings become dotted keys (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_overrides(raw: dict, overrides) -> dict:
    """A deep copy of `raw` with each `a.b.c=value` set (value parsed as YAML); the caller's dicts never change."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key} is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
    return raw


def build(cls: type[T], raw: Any, prefix: str = "") -> T:
    """`cls(**raw)` with every key checked and every value coerced to its field's type, recursively."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in raw if key not in names]
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s}; valid keys in {where}: {', '.join(names)}")
    values = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`; the error names `key` and what is valid."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r} matches none of {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}: {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}: {value!r}")
        if not args:
            return value
        out = {}
        for name, item in value.items():  # keys and values checked like any field (folds: {a: 3} used to pass)
            if args[0] is str and not isinstance(name, str):
                raise ConfigError(f"{key}: key {name!r} must be a string (quote it in YAML: '{name}')")
            out[name] = _coerce(item, args[1], f"{key}.{name}")
        return out
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__}: {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            raise ConfigError(f"{key}={value} is not a finite number") from None
        if not math.isfinite(number):  # NaN slips through every range check, inf through most
            raise ConfigError(f"{key}={value} is not a finite number")
        return number
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {type(value).__name__}: {value!r}")
        if not -(2**63) <= value < 2**63:  # seeds and counts reach torch / numpy as int64
            raise ConfigError(f"{key}={value} does not fit a 64-bit integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {type(value).__name__}: {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__}: {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"config field {key} has a type the loader does not handle: {hint}")
