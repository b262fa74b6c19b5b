"""Node parameters: one config tree, declared as ROS parameters with descriptors, validated
before anything subscribes or loads; config/egox.yaml, docs/ros.md and the launch file stay
in sync with it."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import ros_fixtures  # noqa: F401  (isolated DDS environment before rclpy starts)

from egox_model.config import format_params_file, format_params_table, from_flat, settings_of
from egox_model.errors import ConfigError
from egox_ros.params import YAML_HEADER, EgoxConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_config_yaml_is_generated_from_the_tree():
    text = (ROOT / "config" / "egox.yaml").read_text()
    assert text == format_params_file(EgoxConfig(), "egox", YAML_HEADER), \
        "config/egox.yaml is stale: regenerate it with `egox params > config/egox.yaml`"
    assert load_config(ROOT / "config" / "egox.yaml") == EgoxConfig()
    names = {s.name for s in settings_of(EgoxConfig)}
    assert {"backend", "fps", "prior.fusion.momentum", "prior.render.max_splat_level",
            "wan.num_inference_steps", "wan.gga.strength", "wan.gga.kernel",
            "wan.conditioning.mask_layout", "wan.model_dir", "wan.cpu_offload"} <= names
    assert "model_dir" not in names                      # moved to wan.model_dir


def test_docs_list_every_parameter_from_the_generated_table():
    docs = (ROOT / "docs" / "ros.md").read_text()
    begin, end = "<!-- parameters: begin -->\n", "<!-- parameters: end -->"
    assert begin in docs and end in docs
    table = docs.split(begin, 1)[1].split(end, 1)[0]
    assert table.strip() == format_params_table(EgoxConfig()).strip(), \
        "docs/ros.md's parameter table is stale: `egox params --format markdown`"


@pytest.mark.parametrize("values,message", [
    ({"image_transport": "theora"},
     "parameter image_transport='theora': must be one of ['raw', 'compressed']"),
    ({"clip_stride": 50}, "parameter clip_stride=50: must be in [1, clip_length=49]"),
    ({"ego_fx": 0.0}, "parameter ego_fx=0.0: must be a number > 0"),
    ({"fps": "fast"}, "parameter fps='fast': must be a number > 0"),
    ({"clip_length": 4.5}, "parameter clip_length=4.5: must be an integer >= 1"),
    ({"publish_prior": 1}, "parameter publish_prior=1: must be a boolean (true or false)"),
    ({"prompt": 3}, "parameter prompt=3: must be a string"),
    ({"exo_pose": [0.0] * 7}, "parameter exo_pose=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]: "
                              "quaternion [0.0, 0.0, 0.0, 0.0] is not a unit quaternion"),
    ({"ego_camera_offset": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.1]},
     "parameter ego_camera_offset=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.1]: quaternion [0.0, 0.0, "
     "0.0, 1.1] is not a unit quaternion (|norm - 1| > 0.001)"),
    ({"exo_pose": [1.0, 2.0]}, "parameter exo_pose=[1.0, 2.0]: must be a list of 7 numbers"),
    ({"exo_width": 0}, "exo_width=0 and exo_height=448: set both to resize"),
    ({"queue_size": 0}, "parameter queue_size=0: must be an integer >= 1"),
    ({"prior.fusion.momentum": 1.0},
     "parameter prior.fusion.momentum=1.0: must be a number in [0, 1)"),
    ({"prior.fusion.trim_quantiles": [0.9, 0.1]},
     "parameter prior.fusion.trim_quantiles=[0.9, 0.1]: must satisfy lo < hi"),
    ({"prior.lift.min_depth_m": 200.0}, "prior.lift: min_depth_m=200.0 must be below"),
    ({"prior.device": "gpu"}, "parameter prior.device='gpu': must be 'cpu', 'cuda' or"),
    ({"wan.num_inference_steps": 0},
     "parameter wan.num_inference_steps=0: must be an integer >= 1"),
    ({"wan.gga.form": "eq4"}, "parameter wan.gga.form='eq4': must be one of"),
    ({"wan.gga.strength": -1.0}, "parameter wan.gga.strength=-1.0: must be a number >= 0"),
    ({"wan.conditioning.mask_layout": "x"},
     "parameter wan.conditioning.mask_layout='x': must be one of ['official', 'exo']"),
    ({"wan.cpu_offload": True, "wan.device": "cpu"}, "wan: cpu_offload=true needs a CUDA"),
    ({"backend": "nope"},
     "parameter backend='nope': must be one of ['prior', 'wan', 'remote']"),
    ({"backend": "wan"}, "parameter wan.model_dir='': backend 'wan' needs a local"),
    ({"backend": "wan", "wan.model_dir": "/m", "clip_length": 48, "clip_stride": 48},
     "backend 'wan' cannot take the clips these parameters make (clip_length=48, ego "
     "448x448, exo 784x448): clip has 48 frames but Wan's VAE needs 4k+1 (e.g. 49); trim it "
     "to 45"),
    ({"backend": "wan", "wan.model_dir": "/m", "ego_height": 440},
     "ego frames are 440x448 (HxW) but height and width have to be divisible by 16"),
    ({"backend": "wan", "wan.model_dir": "/m", "ego_height": 432}, "exo height 448 != ego"),
    ({"backend": "wan", "wan.model_dir": "/m", "exo_width": 780}, "divisible by 16"),
    ({"clip_lenght": 10}, "unknown parameter 'clip_lenght'; did you mean clip_length"),
    ({"wan.steps": 10}, "unknown parameter 'wan.steps'"),
    ({"prior": 1}, "unknown parameter 'prior'; did you mean prior."),
])
def test_invalid_values_name_the_parameter_the_value_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError) as err:
        from_flat(EgoxConfig, values)
    assert message in str(err.value)


def test_the_same_clip_lengths_pass_for_prior_and_fail_for_wan_only_when_misshapen():
    assert from_flat(EgoxConfig, {"clip_length": 48, "clip_stride": 48}).clip_length == 48
    wan = {"backend": "wan", "wan.model_dir": "/m"}
    assert from_flat(EgoxConfig, {**wan, "clip_length": 17, "clip_stride": 17}).backend == "wan"
    keep_camera = from_flat(EgoxConfig, {**wan, "exo_width": 0, "exo_height": 0})
    assert keep_camera.exo_width == 0                    # checked when CameraInfo arrives


def test_parameter_files_nested_dotted_namespaced_and_broken(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    fps: 15\n"
                    "/ns/egox:\n  ros__parameters:\n    clip_length: 17\n    clip_stride: 8\n"
                    "    prior:\n      fusion: {momentum: 0.5}\n    wan.gga.strength: 1\n"
                    "other_node:\n  ros__parameters:\n    foo: 1\n")
    cfg = load_config(path)
    assert (cfg.clip_length, cfg.clip_stride, cfg.fps) == (17, 8, 15.0)
    assert cfg.prior.fusion.momentum == 0.5 and cfg.wan.gga.strength == 1.0
    assert load_config(path, overrides={"clip_stride": 17}).clip_stride == 17
    assert load_config(path, node_name="other").fps == 15.0     # `/**` is for every node
    path.write_text("other_node:\n  ros__parameters:\n    foo: 1\n")
    with pytest.raises(ConfigError, match="p.yaml: no section for node 'egox'"):
        load_config(path)
    path.write_text("egox:\n  ros__parameters:\n    fps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4:1: not valid YAML"):
        load_config(path)
    path.write_text("egox:\n  fps: 3\n")
    with pytest.raises(ConfigError, match="needs a 'ros__parameters:' mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


# --- declared on a real rclpy node --------------------------------------------------------

def _declare(overrides: dict) -> tuple[EgoxConfig, dict]:
    """declare_config on a real node with `overrides`; (config, name -> descriptor)."""
    import rclpy
    from rclpy.parameter import Parameter

    from egox_ros.params import declare_config

    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        node = rclpy.create_node("egox", context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in overrides.items()])
        config = declare_config(node)
        names = list(node._parameters)
        return config, dict(zip(names, node.describe_parameters(names)))
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()


def test_ros_parameters_carry_descriptors_and_accept_int_for_double():
    cfg, descriptors = _declare({"fps": 15, "wan.gga.strength": 1,
                                 "prior.fusion.momentum": 0.5})
    assert cfg.fps == 15.0 and isinstance(cfg.fps, float)
    assert cfg.wan.gga.strength == 1.0 and cfg.prior.fusion.momentum == 0.5
    steps = descriptors["wan.num_inference_steps"]
    assert steps.read_only and steps.description == "denoising steps"
    assert steps.integer_range[0].from_value == 1
    assert steps.additional_constraints == "an integer >= 1"
    momentum = descriptors["prior.fusion.momentum"]
    assert (momentum.floating_point_range[0].from_value,
            momentum.floating_point_range[0].to_value) == (0.0, 1.0)
    assert momentum.additional_constraints == "a number in [0, 1)"
    assert "'split'" in descriptors["wan.gga.kernel"].additional_constraints
    assert {s.name for s in settings_of(EgoxConfig)} <= set(descriptors)


@pytest.mark.parametrize("overrides,message", [
    ({"clip_length": "abc"}, "parameter clip_length='abc': must be an integer >= 1"),
    ({"wan.num_inference_steps": 0}, "parameter wan.num_inference_steps=0: must be an "
                                     "integer >= 1"),
    ({"prior.fusion.momentum": 1.5}, "parameter prior.fusion.momentum=1.5: must be a number "
                                     "in [0, 1)"),
    ({"wan.stepz": 3}, "unknown parameter 'wan.stepz'"),
    ({"backend": "wan", "wan.model_dir": "/m", "clip_length": 50, "clip_stride": 50},
     "clip has 50 frames but Wan's VAE needs 4k+1"),
])
def test_ros_overrides_are_validated_at_declaration(overrides, message):
    with pytest.raises(ConfigError) as err:
        _declare(overrides)
    assert message in str(err.value)


def _run_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "egox_ros.node", "--ros-args", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["-p", "clip_stride:=60"], "parameter clip_stride=60: must be in [1, clip_length=49]"),
    (["-p", "fps:=abc"], "parameter fps='abc': must be a number > 0"),
    (["-p", "backend:=wan", "-p", "wan.model_dir:=/nonexistent", "-p", "clip_length:=50",
      "-p", "clip_stride:=50"], "clip has 50 frames but Wan's VAE needs 4k+1"),
    (["-p", "backend:=wan", "-p", "wan.model_dir:=/nonexistent/wan"],
     "backend='wan' could not be built"),
])
def test_node_main_exits_2_with_one_line_and_no_traceback(args, message, capfd):
    """`egox_ros.node.main` (what the console script runs) in this process, its output
    captured at the file descriptors; a real node process: the next test, and
    test_ros_entry_points / test_tf_poses (each such process pays seconds of imports)."""
    from egox_ros.node import main

    with pytest.raises(SystemExit) as exit_:
        main(["egox_node", "--ros-args", *args])
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert exit_.value.code == 2, output
    assert message in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1, output


def test_node_process_reads_a_nested_parameter_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**/egox": {"ros__parameters": {
        "wan": {"num_inference_steps": 0}}}}))
    proc = _run_node("--params-file", str(path))
    assert proc.returncode == 2
    assert "parameter wan.num_inference_steps=0" in proc.stdout + proc.stderr


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


def test_unloadable_backend_is_a_config_error(tmp_path):
    from egox_ros.node import make_backend

    cfg = from_flat(EgoxConfig, {"backend": "wan", "wan.model_dir": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="backend='wan' could not be built: .*none"):
        make_backend(cfg)


def test_list_parameters_empty_in_the_parameter_file_or_given():
    """config/egox.yaml's `[]` (rcl reads it untyped) is an empty list; lists given on the
    command line arrive typed."""
    import rclpy

    from egox_ros.params import declare_config

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file",
                                      str(ROOT / "config" / "egox.yaml")])
    node = None
    try:
        node = rclpy.create_node("egox", context=context)
        assert declare_config(node) == EgoxConfig()
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
    cfg, _ = _declare({"wan.adapter_paths": ["/loras/a.safetensors", "/loras/b.safetensors"],
                       "wan.adapter_scales": [1.0, 0.5]})
    assert cfg.wan.adapter_paths == ("/loras/a.safetensors", "/loras/b.safetensors")
    assert cfg.wan.adapter_scales == (1.0, 0.5) and cfg.wan.adapter_names == ()
