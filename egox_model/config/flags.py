"""CLI flags from a config tree: one `--dotted.name VALUE` option per setting, as LeRobot's
configs do (`--wan.num_inference_steps 20 --prior.fusion.momentum 0.9`).

Values are parsed as YAML scalars or flow lists (`true`, `0.5`, `[0, 0, 1]`; text as is for
string settings), then validated by the tree exactly like ROS parameters.
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Optional

import typer
import yaml
from rich.markup import escape

from egox_model.config.setting import Setting
from egox_model.config.tree import settings_of
from egox_model.errors import ConfigError

__all__ = ["parse_flag_value", "with_settings"]


def parse_flag_value(spec: Setting, text: str) -> Any:
    """The value a flag's text stands for (validated later, by the config tree)."""
    if spec.type is str:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"must be {spec.allowed()}", key=spec.name, value=text) from None


def _ident(spec: Setting) -> str:
    return "setting__" + spec.name.replace(".", "__")


def _option(spec: Setting) -> inspect.Parameter:
    default = spec.default if not isinstance(spec.default, tuple) else list(spec.default)
    panel = f"{spec.name.split('.')[0]} settings" if "." in spec.name else "settings"
    metavar = "LIST" if spec.type in (list, tuple) else spec.type.__name__.upper()
    option = typer.Option(None, f"--{spec.name}", show_default=False, rich_help_panel=panel,
                          metavar=metavar, help=escape(f"{spec.description} "
                                                       f"[{spec.allowed()}; default {default!r}]"))
    return inspect.Parameter(_ident(spec), inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=Optional[str])


def with_settings(config_cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command: adds one option per setting of `config_cls`; the command
    receives the flags given (dotted name -> parsed value) as its `settings` argument."""
    specs = settings_of(config_cls)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(command).parameters.values() if p.name != "settings"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            texts = [(spec, kwargs.pop(_ident(spec))) for spec in specs]
            settings = {spec.name: parse_flag_value(spec, text) for spec, text in texts
                        if text is not None}
            return command(**kwargs, settings=settings)

        wrapper.__signature__ = inspect.Signature(own + [_option(s) for s in specs])
        wrapper.__annotations__ = {p.name: p.annotation for p in own} | {
            _ident(s): Optional[str] for s in specs}
        return wrapper

    return decorate
