"""A config tree as flat, dotted settings: the one mapper behind ROS parameters, parameter
files and CLI flags.

`settings_of(EgoxConfig)` lists every leaf as a `Setting` named like its ROS parameter
(`prior.fusion.momentum`); `from_flat` builds a validated tree from such names (unknown
names are errors, with the nearest known names); `to_flat` is the inverse.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Mapping

from egox_model.config.setting import Setting, is_group, leaf_settings
from egox_model.errors import ConfigError

__all__ = ["from_flat", "group_descriptions", "settings_of", "to_flat"]


def _groups(cls: type) -> list[tuple[str, type, str]]:
    """(field name, config class, description) of the sub-configs declared on `cls`."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.metadata.get("description", ""))
            for f in dataclasses.fields(cls) if is_group(f, hints)]


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """Every leaf setting of the tree rooted at `cls`, with dotted names, own leaves first."""
    found = list(leaf_settings(cls))
    for name, sub, _ in _groups(cls):
        found += [dataclasses.replace(s, name=f"{name}.{s.name}") for s in settings_of(sub)]
    return tuple(found)


@functools.cache
def group_descriptions(cls: type) -> dict[str, str]:
    """Dotted group name -> description, for every sub-config in the tree."""
    found = {}
    for name, sub, description in _groups(cls):
        found[name] = description
        found.update({f"{name}.{k}": v for k, v in group_descriptions(sub).items()})
    return found


def to_flat(config: Any) -> dict[str, Any]:
    """Dotted name -> value of every leaf (tuples as lists, as a ROS parameter holds them)."""
    values = {}
    for spec in settings_of(type(config)):
        value = functools.reduce(getattr, spec.name.split("."), config)
        values[spec.name] = list(value) if isinstance(value, tuple) else value
    return values


def _unknown(name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if not close:
        close = [k for k in known if k.startswith(name + ".")][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown parameter {name!r}{hint} (`egox params` lists them all)")


def from_flat(cls: type, values: Mapping[str, Any], base: Any = None) -> Any:
    """A validated `cls` tree from dotted-name values; fields not given keep `base`'s values
    (or the defaults). Raises ConfigError naming the first unknown or invalid setting."""
    known = [s.name for s in settings_of(cls)]
    for name in values:
        if name not in known:
            raise _unknown(name, known)
    return _build(cls, dict(values), base, "")


def _build(cls: type, values: dict[str, Any], base: Any, prefix: str) -> Any:
    kwargs: dict[str, Any] = {}
    for name, sub, _ in _groups(cls):
        inner = {k[len(name) + 1:]: v for k, v in values.items() if k.startswith(name + ".")}
        kwargs[name] = _build(sub, inner, getattr(base, name, None),
                              f"{prefix}{name}.")
    for spec in leaf_settings(cls):
        if spec.name in values:
            kwargs[spec.name] = values[spec.name]
        elif base is not None:
            kwargs[spec.name] = getattr(base, spec.name)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise (err.within(prefix.rstrip(".")) if prefix else err) from None
