"""A user's mistake at a ROS console script ends as one line and exit status 2, never a
traceback: missing, mistyped or invalid parameters, an existing bag directory, malformed
`--ros-args`. Each script runs as a real subprocess, as a user starts it."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros_fixtures import ROOT, RosHarness, ros_env, unique_ns  # noqa: I100 (isolation env)

from egox_model.errors import ConfigError
from egox_ros.recorder import BagRecorder

BIN = Path(sys.executable).parent
RECORDER = [str(BIN / "egox_recorder")]
PLAYER = [str(BIN / "egox_player")]
NODE = [sys.executable, "-m", "egox_ros.node"]
RECORDER_MODULE = [sys.executable, "-m", "egox_ros.recorder"]
PLAYER_MODULE = [sys.executable, "-m", "egox_ros.player"]


def fails_with_one_line(command: list[str], *ros_args: str) -> str:
    """Run `command --ros-args ROS_ARGS`; check exit status 2, no traceback and exactly one
    output line; return it."""
    proc = subprocess.run(command + ["--ros-args", *ros_args], env=ros_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "[FATAL]" in lines[0], out
    return lines[0]


def test_console_scripts_are_installed():
    for script in RECORDER + PLAYER:
        assert Path(script).is_file(), f"{script}: run scripts/install.sh (pip install -e .)"


@pytest.mark.parametrize("command", [RECORDER, RECORDER_MODULE], ids=["script", "module"])
def test_recorder_without_parameters_names_both(command):
    line = fails_with_one_line(command)
    assert "parameter bag_path='': set it to a new directory" in line
    assert "parameter topics=[]: list the absolute names of the topics" in line
    assert "-p bag_path:=" in line and "-p topics:=" in line


@pytest.mark.parametrize("ros_args,expected", [
    (["-p", "bag_path:=DIR"], "parameter topics=[]: list the absolute names"),
    (["-p", "bag_path:=DIR", "-p", "topics:=/exo/image_raw"],
     "parameter topics='/exo/image_raw' is a string; it must be a string list "
     "(e.g. \"[/a, /b]\")"),
    (["-p", "bag_path:=DIR", "-p", "topics:=[exo/image_raw]"],
     "parameter topics=['exo/image_raw']: ['exo/image_raw'] are not absolute topic names"),
    (["-p", "bag_path:=42", "-p", "topics:=[/a]"],
     "parameter bag_path=42 is an integer; it must be a string"),
], ids=["no-topics", "topics-not-a-list", "relative-topic", "bag-path-not-a-string"])
def test_recorder_bad_parameters(tmp_path, ros_args, expected):
    ros_args = [a.replace("DIR", str(tmp_path / "bag")) for a in ros_args]
    assert expected in fails_with_one_line(RECORDER, *ros_args)
    assert not (tmp_path / "bag").exists()


def test_recorder_refuses_an_existing_bag_directory(tmp_path):
    line = fails_with_one_line(RECORDER, "-p", f"bag_path:={tmp_path}", "-p", "topics:=[/a]")
    assert f"parameter bag_path='{tmp_path}': {tmp_path} already exists" in line
    assert "choose another path or remove it" in line


@pytest.mark.parametrize("ros_args,expected", [
    (["-p", "seed:=abc"], "parameter seed='abc' is a string; it must be an integer (e.g. 3)"),
    (["-p", "seed:=1.5"], "parameter seed=1.5 is a float; it must be an integer"),
    (["-p", "seed:=-1"], "parameter seed=-1: must be an integer >= 0"),
    (["-p", "loop:=3"], "parameter loop=3 is an integer; it must be a bool (true or false)"),
    (["-p", "linger_s:=true"], "parameter linger_s=True is a bool; it must be a float"),
    (["-p", "linger_s:=2"], "parameter linger_s=2 is an integer; it must be a float (written "
                            "with a decimal point, e.g. 2.0 not 2)"),
    (["-p", "linger_s:=-1.0"], "parameter linger_s=-1.0: must be a number >= 0"),
], ids=["seed-string", "seed-float", "seed-negative", "loop-int", "linger-bool", "linger-int",
        "linger-negative"])
def test_player_bad_parameters(ros_args, expected):
    assert expected in fails_with_one_line(PLAYER, *ros_args)


def test_player_parameters_from_a_params_file_section(tmp_path):
    """The player's parameters are read under its own node name, so a params file's
    `egox_player:` section reaches them."""
    path = tmp_path / "player.yaml"
    path.write_text("egox_player:\n  ros__parameters:\n    seed: nope\n")
    line = fails_with_one_line(PLAYER_MODULE, "--params-file", str(path))
    assert "parameter seed='nope' is a string; it must be an integer" in line


@pytest.mark.parametrize("ros_args,expected", [
    (["-p", "fps"], "invalid --ros-args: Couldn't parse parameter override rule: '-p fps'"),
    (["-p"], "invalid --ros-args: Couldn't parse trailing -p flag"),
    (["-r", "foo"], "invalid --ros-args: Couldn't parse remap rule: '-r foo'"),
    (["--params-file", "/nonexistent/p.yaml"], "invalid --ros-args: Couldn't parse params "
                                               "file: '--params-file /nonexistent/p.yaml'"),
    (["--no-such-flag"], "unknown --ros-args ['--no-such-flag']"),
], ids=["p-without-value", "trailing-p", "bad-remap", "missing-params-file", "unknown-flag"])
def test_malformed_ros_args(ros_args, expected):
    line = fails_with_one_line(RECORDER, *ros_args)
    assert expected in line
    assert "--ros-args takes -p NAME:=VALUE" in line
    assert ".c:" not in line                            # no rcl source locations


@pytest.mark.parametrize("command", [PLAYER, NODE], ids=["player", "node"])
def test_malformed_ros_args_other_scripts(command):
    """The same handling (spin.ros_main) in the player and in the egox node's main."""
    line = fails_with_one_line(command, "-p", "clip_length")
    assert "invalid --ros-args: Couldn't parse parameter override rule: '-p clip_length'" in line


def test_half_built_recorder_is_destroyed_cleanly(tmp_path):
    """The ConfigError is the only error: destroying the node that failed in __init__ (the
    context's shutdown does it) does not raise."""
    with RosHarness() as harness:
        with pytest.raises(ConfigError, match="parameter bag_path='': .* parameter topics=\\[\\]"):
            BagRecorder(context=harness.context)
        with pytest.raises(ConfigError, match="already exists"):
            BagRecorder(tmp_path, ["/a"], context=harness.context)
    assert not harness.context.ok()


def test_recorder_records_and_ends_quietly_on_sigint(tmp_path):
    """The good path through spin_node: record, then Ctrl-C closes the bag, exit status 0,
    one closing line and no rosout error from logging on the shut-down context."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from std_msgs.msg import String

    topic = unique_ns() + "/chatter"
    bag = tmp_path / "bag"
    proc = subprocess.Popen(RECORDER + ["--ros-args", "-p", f"bag_path:={bag}", "-p",
                                        f"topics:=[{topic}]"], env=ros_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with RosHarness() as harness:
            pub = harness.create_node("talker").create_publisher(
                String, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            harness.wait_until(lambda: pub.get_subscription_count() >= 1, 10,
                               what="egox_recorder subscribing")
            time.sleep(0.3)                   # let the recorder's side of the match settle
            for i in range(3):
                pub.publish(String(data=f"m{i}"))
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "Failed" not in out, out
    assert f"bag closed: {bag} (3 messages)" in out
    with AnyReader([bag]) as reader:
        assert [c.topic for c in reader.connections] == [topic]
        assert reader.message_count == 3
