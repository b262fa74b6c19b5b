"""Parameters: one dataclass, validated with clear messages; config/egox.yaml and the launch
file stay in sync with it."""
import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from egox_model.errors import ConfigError
from egox_ros.params import EgoxConfig, config_from_dict, load_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_config_yaml_lists_every_parameter_with_a_comment_and_its_default():
    text = (ROOT / "config" / "egox.yaml").read_text()
    params = yaml.safe_load(text)["/**/egox"]["ros__parameters"]
    names = [f.name for f in dataclasses.fields(EgoxConfig)]
    assert sorted(params) == sorted(names)
    lines = text.splitlines()
    for name in names:
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
        assert lines[i - 1].strip().startswith("#"), f"{name} has no comment"
    assert load_yaml(ROOT / "config" / "egox.yaml") == EgoxConfig()


@pytest.mark.parametrize("values,match", [
    ({"image_transport": "theora"}, "image_transport='theora' is invalid"),
    ({"clip_stride": 50}, "clip_stride=50 must be in \\[1, clip_length=49\\]"),
    ({"ego_fx": 0.0}, "ego_fx=0.0 must be a positive number"),
    ({"exo_pose": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}, "exo_pose: quaternion"),
    ({"exo_pose": [1.0, 2.0]}, "exo_pose=.* must be 7 finite numbers"),
    ({"exo_width": 0}, "set both to resize"),
    ({"overflow_policy": "block"}, "overflow_policy='block' is invalid"),
    ({"queue_size": 0}, "queue_size=0 must be >= 1"),
])
def test_invalid_parameters_name_the_parameter(values, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(values)


def test_unknown_and_mistyped_parameters_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) \\['clip_lenght'\\]"):
        config_from_dict({"clip_lenght": 10})
    with pytest.raises(ConfigError, match="clip_length=4.5 must be of type int"):
        config_from_dict({"clip_length": 4.5})
    path = tmp_path / "p.yaml"
    path.write_text("/ns/egox:\n  ros__parameters:\n    clip_length: 17\n    clip_stride: 8\n"
                    "other_node:\n  ros__parameters:\n    foo: 1\n")
    cfg = load_yaml(path)
    assert (cfg.clip_length, cfg.clip_stride) == (17, 8)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_launch_file_is_valid_python_with_the_documented_arguments():
    source = (ROOT / "launch" / "egox.launch.py").read_text()
    tree = ast.parse(source)
    compile(source, "egox.launch.py", "exec")
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    declared = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
                and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert {"config", "namespace", "backend", "use_sim_time", "record"} <= declared
    executables = {k.value.value for c in ast.walk(tree) if isinstance(c, ast.Call)
                   for k in c.keywords if k.arg == "executable"}
    assert executables == {"egox_node", "egox_recorder"}
    setup = (ROOT / "setup.py").read_text()
    for exe in executables:
        assert f'"{exe} = ' in setup


def test_unknown_backend_is_a_config_error():
    from egox_ros.node import make_backend

    with pytest.raises(ConfigError, match="backend='nope' could not be built"):
        make_backend(EgoxConfig(backend="nope"))


def test_convert_cli_rejects_a_malformed_remap(tmp_path):
    from typer.testing import CliRunner

    from egox_ros.cli import app

    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--remap", "exo/image_raw"])
    assert result.exit_code == 2
    assert "must be REL=ABS" in result.output


def test_demo_cli_rejects_wan_options_for_another_backend(tmp_path):
    from typer.testing import CliRunner

    from egox_ros.cli import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--steps", "3"])
    assert result.exit_code == 2
    assert "options of --generator wan" in result.output
    assert not any(tmp_path.iterdir())  # nothing ran


def test_demo_cli_passes_a_bad_step_count_on_to_be_rejected(tmp_path):
    from typer.testing import CliRunner

    from egox_model.errors import InputError
    from egox_ros.cli import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--generator", "wan",
                                      "--model-dir", str(tmp_path), "--steps", "0", "--no-ros"])
    assert isinstance(result.exception, InputError)
    assert "num_inference_steps" in str(result.exception)
