"""ROS 2 parameter files (`node: ros__parameters: {...}`) read into dotted names, written
from a config tree with every setting's description and allowed values as comments, and the
same settings as a markdown table (docs).

Nested mappings and dotted keys are the same parameter (`prior: {fusion: {momentum: 0.9}}`
== `prior.fusion.momentum: 0.9`), as ROS 2 reads them.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import yaml

from egox_model.config.tree import group_descriptions, settings_of, to_flat
from egox_model.errors import ConfigError

__all__ = ["format_params_file", "format_params_table", "read_params_file"]

WIDTH = 96


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """Dotted name -> value for node `node_name` from a ROS 2 parameter file.

    Sections apply in file order: `/**`, `node_name`, `/node_name`, `/**/node_name` and
    namespaced `/ns/node_name`. A missing file, invalid YAML or a file with no section for
    the node raise ConfigError naming the file (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"parameter file {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a ROS 2 parameter file is a mapping "
                          f"'{node_name}: ros__parameters: ...', got {type(data).__name__}")
    values: dict[str, Any] = {}
    matched = False
    for key, section in data.items():
        if str(key).rstrip("/").split("/")[-1] not in (node_name, "**"):
            continue
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: section {key!r} needs a 'ros__parameters:' mapping")
        values.update(_flatten(params))
        matched = True
    if not matched:
        raise ConfigError(f"{path}: no section for node {node_name!r} (expected "
                          f"'{node_name}:' or '/**:' with 'ros__parameters:'; found "
                          f"{[str(k) for k in data]})")
    return values


def _yaml_value(value: Any) -> str:
    """A YAML 1.1 and 1.2 scalar / flow list (floats always with a '.', strings quoted)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
        return text
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ")


def format_params_file(config: Any, node_name: str, header: str = "") -> str:
    """The ROS 2 parameter file of `config` (every setting, nested by group), each setting
    preceded by its description and what is allowed."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"/**/{node_name}:", "  ros__parameters:"]
    values = to_flat(config)
    groups = group_descriptions(type(config))
    opened: list[str] = []
    for spec in settings_of(type(config)):
        *path, leaf = spec.name.split(".")
        common = 0
        while common < min(len(path), len(opened)) and path[common] == opened[common]:
            common += 1
        for depth in range(common, len(path)):
            indent = "    " + "  " * depth
            lines += [""] + _comment(groups[".".join(path[:depth + 1])], indent)
            lines.append(f"{indent}{path[depth]}:")
        opened = path
        indent = "    " + "  " * len(path)
        lines += _comment(f"{spec.description} [{spec.allowed()}]", indent)
        lines.append(f"{indent}{leaf}: {_yaml_value(values[spec.name])}")
    return "\n".join(lines) + "\n"


def format_params_table(config: Any) -> str:
    """A markdown table of every setting of `config`: name, default, allowed, description."""
    values = to_flat(config)
    rows = ["| parameter | default | allowed | description |", "|---|---|---|---|"]
    for spec in settings_of(type(config)):
        cells = [f"`{spec.name}`", f"`{_yaml_value(values[spec.name])}`", spec.allowed(),
                 spec.description]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
