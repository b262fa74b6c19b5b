"""The `egox` command: every setting is a flag of the same tree, and a user's mistake ends
as one line on stderr and exit status 2, never a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ros_fixtures import tiny_scene  # noqa: F401,I100 (sets the ROS isolation env first)

from egox_model.config import from_flat, settings_of, to_flat
from egox_ros.params import EgoxConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def _egox(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "egox_ros.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _egox_main(monkeypatch, capfd, *args: str, cwd: Path) -> tuple[int, str]:
    """(exit status, stderr) of `egox ARGS` run through `egox_ros.cli.main` (what the console
    script calls) in this process: an `egox` process pays seconds of imports."""
    from egox_ros.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["egox", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capfd.readouterr().err


def _flag_text(value) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def test_every_node_parameter_is_a_flag(changed_values, tmp_path):
    """`egox params --NAME VALUE ...` for every parameter at once: the printed parameter
    file reads back as the tree built directly from the same values."""
    from typer.testing import CliRunner

    from egox_ros.cli import app

    base = {"wan.model_dir": "/models/wan",
            # so that adapter names / scales and fixed timesteps are valid on their own
            "wan.adapter_paths": ["/loras/a.safetensors"], "wan.scheduler": "euler",
            "wan.num_inference_steps": 1}
    values = changed_values(EgoxConfig, base)
    assert set(values) == {s.name for s in settings_of(EgoxConfig)}
    # Settings that constrain each other, changed together consistently.
    values.update({"wan.scheduler": "euler",
                   "wan.num_inference_steps": len(values["wan.scheduler_timesteps"])})
    args = ["params"]
    for name, value in values.items():
        if name != "backend":                 # 'wan' with these clip sizes is another test
            args += [f"--{name}", _flag_text(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "printed.yaml"
    path.write_text(result.output)
    values.pop("backend")
    expected = from_flat(EgoxConfig, values)
    assert load_config(path) == expected
    assert to_flat(load_config(path)) != to_flat(EgoxConfig())


#: (args, what stderr says). Each runs in this process through `main()` (what the console
#: script calls), except those in IN_A_PROCESS: they run as a real `egox` process.
USER_ERRORS = [
    (["demo", "--wan.num_inference_steps", "0", "--no-ros"],
     "error: parameter wan.num_inference_steps=0: must be an integer >= 1"),
    (["demo", "--backend", "wan", "--no-ros"],
     "error: parameter wan.model_dir='': backend 'wan' needs a local Wan 2.1 I2V model"),
    (["demo", "--prior.fusion.trim_quantiles", "[0.5", "--no-ros"],
     "error: parameter prior.fusion.trim_quantiles='[0.5': must be a list of 2 numbers"),
    (["convert", "in", "out", "--remap", "exo/image_raw"], "error: --remap 'exo/image_raw' "
                                                           "must be REL=ABS"),
    (["convert", "in", "out", "--config", "broken.yaml"],
     "error: broken.yaml:3:10: not valid YAML: mapping values are not allowed here"),
    (["convert", "missing_bag", "out"], "error: input bag missing_bag does not exist"),
    (["generate", "--exo", "none.mp4", "--exo-camera", "c.json", "--ego-poses", "e.json",
      "--exo-depth", "d.npz"], "error: "),
    (["params", "--fps", "fast"], "error: parameter fps='fast': must be a number > 0"),
    (["record", "--out", "bag", "exo/image_raw"],
     "parameter topics=['exo/image_raw']: ['exo/image_raw'] are not absolute topic names"),
    (["record", "--out", "broken.yaml", "/a"], "error: --out broken.yaml already exists"),
    (["demo", "--seed", "-1", "--no-ros"], "Invalid value for '--seed'"),
]
#: A YAML reader's error, and one raised under ROS (rclpy initialised, logged by rcl; it
#: would change this process's DDS settings).
IN_A_PROCESS = {4, 8}


def _check_user_error(returncode: int, stderr: str, message: str, tmp_path: Path) -> None:
    assert returncode == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    if "Invalid value" not in message:                  # typer's own usage errors: a box
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "report.json").exists()      # nothing ran


@pytest.mark.parametrize("args,message", [case for i, case in enumerate(USER_ERRORS)
                                          if i not in IN_A_PROCESS])
def test_user_errors_exit_2_with_one_line(tmp_path, args, message, monkeypatch, capfd):
    """In this process (the process boundary itself: the next test)."""
    (tmp_path / "broken.yaml").write_text("egox:\n  ros__parameters:\n    fps: : 3\n")
    status, stderr = _egox_main(monkeypatch, capfd, *args, cwd=tmp_path)
    _check_user_error(status, stderr, message, tmp_path)


@pytest.mark.parametrize("args,message", [USER_ERRORS[i] for i in sorted(IN_A_PROCESS)])
def test_user_errors_of_the_egox_process_exit_2_with_one_line(tmp_path, args, message):
    """The same rule at the process boundary: status 2, one line on stderr."""
    (tmp_path / "broken.yaml").write_text("egox:\n  ros__parameters:\n    fps: : 3\n")
    proc = _egox(*args, cwd=tmp_path)
    _check_user_error(proc.returncode, proc.stderr, message, tmp_path)
