"""Declaring a setting: one dataclass field with its description and allowed values.

A component's config is a dataclass whose leaf fields are declared with `setting(...)` and
whose sub-configs with `group(...)`; its `__post_init__` calls `check_settings(self)`, which
type-checks and range-checks every leaf in one place. The same declarations drive the ROS
parameters, the parameter YAML file and the CLI flags (`egox_model.config.tree`).

Leaf types: bool, int, float (finite), str, `Literal[...]` strings (the choices), and lists
or tuples of those. No `None`: every setting has a value a ROS parameter can hold ("" or 0
mean "unset" where a field says so).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from egox_model.errors import ConfigError

__all__ = ["Setting", "check_device", "check_settings", "group", "leaf_settings", "setting"]

_SCALARS = (bool, int, float, str)


def setting(default: Any, description: str, *, choices: tuple | None = None,
            low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, length: int | None = None) -> Any:
    """A leaf field: `default`, a one-line `description` (units!), allowed `choices` or a
    numeric range [low, high] (`low_open` / `high_open` exclude the bound); `length` fixes
    the length of a list."""
    metadata = {"description": description, "choices": choices, "low": low, "high": high,
                "low_open": low_open, "high_open": high_open, "length": length}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(cls: type, description: str) -> Any:
    """A sub-config field (a dataclass declared with settings), built from its defaults."""
    return dataclasses.field(default_factory=cls, metadata={"description": description})


@dataclass(frozen=True)
class Setting:
    """One leaf setting: its dotted `name` in the tree, type and constraints."""

    name: str
    type: type                      # bool, int, float, str, list or tuple
    item_type: type | None          # element type of a list / tuple
    length: int | None              # fixed tuple length
    default: Any
    description: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def kind(self) -> str:
        """What a value must be, in words ("an integer", "a list of 7 numbers", ...)."""
        if self.type in (list, tuple):
            plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
            return f"a list of {f'{self.length} ' if self.length else ''}" \
                   f"{plural[self.item_type]}"
        return {bool: "a boolean (true or false)", int: "an integer", float: "a number",
                str: "a string"}[self.type]

    def allowed(self) -> str:
        """The constraint in words: type, then choices or range."""
        if self.choices:
            return f"one of {list(self.choices)}"
        text = self.kind
        if self.low is not None and self.high is not None:
            text += (f" in {'(' if self.low_open else '['}{self.low:g}, "
                     f"{self.high:g}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text += f" {'<' if self.high_open else '<='} {self.high:g}"
        return text

    def check(self, value: Any) -> Any:
        """`value` converted to this setting's type (int -> float, list -> tuple), or
        ConfigError naming the setting, the value and what is allowed."""
        try:
            if self.type in (list, tuple):
                if not isinstance(value, (list, tuple)):
                    raise TypeError
                items = [self._scalar(self.item_type, v) for v in value]
                if self.length is not None and len(items) != self.length:
                    raise TypeError
                typed = self.type(items)
            else:
                typed = self._scalar(self.type, value)
        except TypeError:
            raise ConfigError(f"must be {self.allowed()}", key=self.name, value=value) from None
        for item in (typed if self.type in (list, tuple) else [typed]):
            if self.choices and item not in self.choices or not self._in_range(item):
                raise ConfigError(f"must be {self.allowed()}", key=self.name, value=value)
        return typed

    @staticmethod
    def _scalar(kind: type, value: Any) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, Real) or \
                    not math.isfinite(value):
                raise TypeError
            return float(value)
        if not isinstance(value, str):
            raise TypeError
        return value

    def _in_range(self, value: Any) -> bool:
        if self.low is not None and (value < self.low or self.low_open and value == self.low):
            return False
        return not (self.high is not None
                    and (value > self.high or self.high_open and value == self.high))


def _leaf_type(annotation: Any) -> tuple[type, type | None, int | None, tuple | None]:
    """(type, item type, fixed length, choices) of a field annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return str, None, None, args
    if annotation in _SCALARS:
        return annotation, None, None, None
    if origin in (list, tuple) and args and args[0] in _SCALARS:
        fixed = origin is tuple and Ellipsis not in args
        if all(a is args[0] for a in args if a is not Ellipsis):
            return origin, args[0], len(args) if fixed else None, None
    raise TypeError(f"unsupported setting type {annotation!r}")


def is_group(field: dataclasses.Field, hints: dict[str, Any]) -> bool:
    """True for a sub-config field."""
    return dataclasses.is_dataclass(hints[field.name])


@functools.cache
def leaf_settings(cls: type) -> tuple[Setting, ...]:
    """The leaf settings declared directly on `cls` (names relative to it)."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if is_group(field, hints) or "description" not in field.metadata:
            continue
        kind, item, length, literal = _leaf_type(hints[field.name])
        meta = field.metadata
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        found.append(Setting(field.name, kind, item, meta.get("length") or length, default,
                             meta["description"],
                             meta.get("choices") or literal, meta.get("low"),
                             meta.get("high"), meta.get("low_open", False),
                             meta.get("high_open", False)))
    return tuple(found)


def check_settings(config: Any) -> None:
    """Type- and range-check every leaf setting of a config instance, converting in place
    (int -> float, list -> tuple); call it first in `__post_init__`."""
    for spec in leaf_settings(type(config)):
        object.__setattr__(config, spec.name, spec.check(getattr(config, spec.name)))


def check_device(device: str, *, allow_auto: bool = True) -> None:
    """Raise ConfigError unless `device` is 'cpu', 'cuda', 'cuda:N' (or 'auto' if allowed)."""
    names = ("auto", "cpu", "cuda") if allow_auto else ("cpu", "cuda")
    if not (device in names or device.startswith("cuda:") and device[5:].isdigit()):
        allowed = "'auto', 'cpu'" if allow_auto else "'cpu'"
        raise ConfigError(f"must be {allowed}, 'cuda' or 'cuda:N'", key="device", value=device)
