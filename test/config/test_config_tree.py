"""The config mapper: declared settings -> dotted names, checks, parameter files and flags."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
import yaml
from typer.testing import CliRunner

from egox_model.config import (check_settings, format_params_file, from_flat, group,
                               read_params_file, setting, settings_of, to_flat)
from egox_model.errors import ConfigError
from egox_model.generator import GeneratorConfig


@dataclass(frozen=True)
class Inner:
    ratio: float = setting(0.5, "a ratio", low=0.0, high=1.0, high_open=True)
    mode: Literal["a", "b"] = setting("a", "a mode")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class Outer:
    count: int = setting(3, "a count", low=1)
    name: str = setting("x", "a name")
    pair: tuple[float, float] = setting((1.0, 2.0), "a pair", low=0.0)
    flag: bool = setting(False, "a flag")
    inner: Inner = group(Inner, "the inner group")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.count == 13:
            raise ConfigError("13 is unlucky", key="count", value=13)


def test_settings_are_flat_dotted_and_typed():
    specs = {s.name: s for s in settings_of(Outer)}
    assert list(specs) == ["count", "name", "pair", "flag", "inner.ratio", "inner.mode"]
    assert specs["inner.mode"].choices == ("a", "b")
    assert specs["inner.ratio"].allowed() == "a number in [0, 1)"
    assert specs["pair"].allowed() == "a list of 2 numbers >= 0"
    assert to_flat(Outer()) == {"count": 3, "name": "x", "pair": [1.0, 2.0], "flag": False,
                                "inner.ratio": 0.5, "inner.mode": "a"}


@pytest.mark.parametrize("value,typed", [(0, 0.0), (0.25, 0.25)])
def test_numbers_convert_int_to_float_only(value, typed):
    ratio = from_flat(Outer, {"inner.ratio": value}).inner.ratio
    assert ratio == typed and type(ratio) is float
    pair = from_flat(Outer, {"pair": [1, 2]}).pair
    assert pair == (1.0, 2.0) and all(type(v) is float for v in pair)


@pytest.mark.parametrize("values,message", [
    ({"count": 0}, "parameter count=0: must be an integer >= 1"),
    ({"count": 2.0}, "parameter count=2.0: must be an integer >= 1"),
    ({"count": True}, "parameter count=True: must be an integer >= 1"),
    ({"count": 13}, "parameter count=13: 13 is unlucky"),
    ({"flag": "yes"}, "parameter flag='yes': must be a boolean (true or false)"),
    ({"name": 5}, "parameter name=5: must be a string"),
    ({"pair": [1.0]}, "parameter pair=[1.0]: must be a list of 2 numbers >= 0"),
    ({"pair": [1.0, -1.0]}, "parameter pair=[1.0, -1.0]: must be a list of 2 numbers >= 0"),
    ({"inner.ratio": 1.0}, "parameter inner.ratio=1.0: must be a number in [0, 1)"),
    ({"inner.ratio": float("nan")}, "parameter inner.ratio=nan: must be a number in [0, 1)"),
    ({"inner.mode": "c"}, "parameter inner.mode='c': must be one of ['a', 'b']"),
    ({"inner.mdoe": "a"}, "unknown parameter 'inner.mdoe'; did you mean inner.mode,"),
    ({"inner": 1}, "unknown parameter 'inner'; did you mean inner.mode, inner.ratio?"),
])
def test_errors_name_the_setting_the_value_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError) as err:
        from_flat(Outer, values)
    assert str(err.value).startswith(message)


def test_python_construction_is_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"parameter ratio=2: must be a number in \[0, 1\)"):
        Inner(ratio=2)
    assert Outer(pair=[0.0, 1.0]).pair == (0.0, 1.0)     # lists become the declared tuple


def test_every_generator_setting_round_trips(changed_values):
    base = {"wan.model_dir": "/models/wan",             # so that backend 'wan' is valid
            # so that adapter names / scales and fixed timesteps are valid on their own
            "wan.adapter_paths": ["/loras/a.safetensors"], "wan.scheduler": "euler",
            "wan.num_inference_steps": 1}
    values = changed_values(GeneratorConfig, base)
    assert set(values) == {s.name for s in settings_of(GeneratorConfig)}
    default = to_flat(from_flat(GeneratorConfig, base))
    for name, value in values.items():
        flat = to_flat(from_flat(GeneratorConfig, {**base, name: value}))
        assert flat[name] == value, name
        assert {k: v for k, v in flat.items() if k != name} == \
            {k: v for k, v in default.items() if k != name}, name
    base = from_flat(GeneratorConfig, {"prior.fusion.momentum": 0.5})
    assert from_flat(GeneratorConfig, {"wan.seed": 4}, base).prior.fusion.momentum == 0.5


def test_parameter_file_round_trip(tmp_path, changed_values):
    values = changed_values(Outer)
    config = from_flat(Outer, values)
    path = tmp_path / "params.yaml"
    path.write_text(format_params_file(config, "node", "a header\nsecond line"))
    text = path.read_text()
    assert text.startswith("# a header\n# second line\n/**/node:\n  ros__parameters:\n")
    assert "    # the inner group\n    inner:\n      # a ratio [a number in [0, 1)]\n" in text
    assert yaml.safe_load(text)["/**/node"]["ros__parameters"]["inner"]["mode"] == "b"
    assert from_flat(Outer, read_params_file(path, "node")) == config


def test_floats_are_written_so_every_yaml_reader_parses_them(tmp_path):
    config = from_flat(Outer, {"inner.ratio": 1e-06, "pair": [1e20, 3.0]})
    path = tmp_path / "p.yaml"
    path.write_text(format_params_file(config, "n"))
    values = read_params_file(path, "n")
    assert values["inner.ratio"] == 1e-06 and values["pair"] == [1e20, 3.0]


def test_cli_flags_fill_the_same_tree(changed_values):
    import typer

    from egox_model.config.flags import with_settings

    app = typer.Typer()
    seen = {}

    @app.command()
    @with_settings(Outer)
    def run(label: str = typer.Option("plain"), settings: dict = None) -> None:
        seen["label"], seen["config"] = label, from_flat(Outer, settings)

    values = changed_values(Outer)
    args = ["--label", "L"]
    for name, value in values.items():
        args += [f"--{name}", value if isinstance(value, str) else yaml.safe_dump(
            value, default_flow_style=True).strip().removesuffix("\n...")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {"label": "L", "config": from_flat(Outer, values)}
    result = CliRunner().invoke(app, ["--count", "many"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "parameter count='many': must be an integer >= 1"
    assert "--inner.ratio" in CliRunner().invoke(app, ["--help"]).output
