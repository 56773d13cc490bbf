"""The one schema mechanism of every config section: frozen dataclasses deriving from :class:`Section`.

A section checks itself on creation, from YAML or from Python alike: the type of each field (floats
finite, ``Literal`` names with "did you mean"), the range declared beside the field with
:func:`bounded`, then its own rules between fields (:meth:`Section.check`). :func:`build_dataclass`
builds one from plain (YAML) data: it refuses unknown keys, converts what YAML gives (lists to
tuples, ints to floats, mappings to nested sections), lets the section tidy its raw data first
(:meth:`Section.prepare`) and names the full key path in every message.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from vagan.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A closed or open interval for a number (or each number of a tuple); ``None`` ends are open-ended."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                self.check(item, f"{where}[{i}]")
            return
        if (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt) \
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt):
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        parts = [f">= {self.ge:g}" if self.ge is not None else "", f"> {self.gt:g}" if self.gt is not None else "",
                 f"<= {self.le:g}" if self.le is not None else "", f"< {self.lt:g}" if self.lt is not None else ""]
        return " and ".join(p for p in parts if p)


def bounded(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value must lie in the given range (checked by :func:`build_dataclass`)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt)})


class Section:
    """Base of every config section (a frozen dataclass): validated on creation, built by :func:`build_dataclass`.

    Values given in Python are converted as YAML's are (a list to a tuple, an int to a float, a
    mapping to its nested section): this is the one place where a frozen section is written after
    creation, so that ``DataConfig(split={"train": 0.8, ...}).split`` is a :class:`DataSplit`.
    """

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = coerce(getattr(self, f.name), hints[f.name], f.name)
            if value is not getattr(self, f.name):
                object.__setattr__(self, f.name, value)
            bounds = f.metadata.get("bounds")
            if bounds is not None:
                bounds.check(value, f.name)
        self.check()

    def check(self) -> None:
        """Rules between fields; raise :class:`ConfigError` with a message that starts with the field's name."""

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Raw (YAML) data tidied before it is built: shorthands expanded, old key names renamed."""
        return data

    @classmethod
    def from_value(cls, value: Any, where: str) -> Section:
        """The section from a value that is not a mapping (a shorthand such as ``"name=spec"``)."""
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(options))}"


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``hint``; raise ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            if isinstance(hint, type) and issubclass(hint, Section):
                return hint.from_value(value, where)
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return build_dataclass(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        choices = [a for a in args if a is not type(None)]
        if all(typing.get_origin(a) is Literal for a in choices):  # one list of names for a union of Literals
            return coerce(value, Literal[tuple(v for a in choices for v in typing.get_args(a))], where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}" + did_you_mean(str(value), [str(a) for a in args]))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover - a bug in the schema


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """A :class:`Section` ``cls`` from plain data; every error names its key path below ``where``."""
    if issubclass(cls, Section):
        data = cls.prepare(dict(data), where)
    hints = _type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}" + did_you_mean(str(key), list(fields)))
        kwargs[key] = coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(_at(where, str(err), fields)) from None


def _at(where: str, message: str, fields: set[str]) -> str:
    """``message`` from inside a section, placed under ``where``: ``lr: ...`` -> ``stages[0].lr: ...``."""
    if not where:
        return message
    head = re.match(r"(\w+)[.:\[ ]", message)
    return f"{where}.{message}" if head and head.group(1) in fields else f"{where}: {message}"


def build_section(cls: type, data: dict[str, Any] | None = None, overrides: Sequence[str] = (),
                  path: Path | str | None = None) -> Any:
    """The section ``cls`` from plain data, or from the YAML file ``path``, with ``key=value`` overrides
    (``--set``) merged in first: how every command reads its config file."""
    raw = read_yaml_mapping(path) if path is not None else dict(data or {})
    return build_dataclass(cls, merge(raw, parse_overrides(list(overrides))), "")


MAX_YAML_VALUES = 100_000  # no vagan config comes near; an alias bomb expands to billions
MAX_YAML_DEPTH = 64


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` of a config's text, refused (one :class:`ConfigError` naming ``where``) when
    it nests deeper than :data:`MAX_YAML_DEPTH` or holds more than :data:`MAX_YAML_VALUES` values once
    its aliases are expanded: checked before anything walks it, so neither hangs nor overflows."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply for the YAML reader (at most {MAX_YAML_DEPTH} levels)") from None
    except ValueError as err:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{where}: a value YAML cannot read ({' '.join(str(err).split())[:160]})") from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise ConfigError(f"{where}: more than {MAX_YAML_VALUES:,} values once its aliases (*name) are expanded; "
                              "write the config out without repeated aliases")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for pair in node.items() for item in pair)
        elif isinstance(node, (list, tuple)):
            stack.extend((item, depth + 1) for item in node)
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. stages.0.max_steps=20")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml(raw, f"--set {key.strip()}") if raw else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({' '.join(str(err).split())[:120]})"
                              ) from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, dict):
        merged_list = list(base)
        for key, value in override.items():
            if not (isinstance(key, int) or str(key).isdigit()) or int(key) >= len(base):
                raise ConfigError(f"override index {key!r} is not a valid list index (0..{len(base) - 1})")
            merged_list[int(key)] = merge(base[int(key)], value)
        return merged_list
    return override


def read_yaml_mapping(path: Path | str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; every problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                          "save the config as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data
