"""Recording and offline conversion: the demo's ROS stage writes an MCAP bag (read back with
rosbags and, independently, with the mcap reader); `egox convert` reproduces the node's
output from that bag, reads sqlite3 bags too, and names a missing topic."""
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosReliability
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from exo_bags import write_exo_bag  # noqa: I100
from ros_fixtures import tiny_scene

from egox_model.generator import GeneratorConfig, make_generator
from egox_model.geometry.pose import c2w_to_pose
from egox_ros.convert import convert_bag
from egox_ros.errors import BagError
from egox_ros.image_conversion import image_to_rgb
from egox_ros.ros_demo import demo_config, run_ros_stage

TS = get_typestore(Stores.ROS2_KILTED)
EGO = "/egox/ego/image"


def _bag_frames(bag: Path, topic: str) -> dict[int, np.ndarray]:
    out = {}
    with AnyReader([bag], default_typestore=TS) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            out[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = \
                image_to_rgb(msg).copy()
    return out


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory):
    """The ROS stage of the demo on a tiny scene: 12 frames, clips of 5 -> 10 ego frames."""
    out = tmp_path_factory.mktemp("ros_demo")
    scene = tiny_scene(frames=12)
    result = run_ros_stage(scene, out, make_generator(GeneratorConfig()), clip_length=5,
                           clip_stride=5,
                           rate=2.0, timeout_s=60)
    return scene, out / "bag", result


def test_demo_stage_report(demo_bag):
    scene, bag, result = demo_bag
    assert result["ego_messages"] == 10
    assert result["stamps_match"] is True
    assert result["latency_ms"] > 0 and result["ros"]["clips"] == 2


def test_bag_read_back_with_rosbags(demo_bag):
    scene, bag, _ = demo_bag
    stamps = set(int(s) for s in scene.stamps_ns)
    with AnyReader([bag], default_typestore=TS) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert {EGO, "/egox/ego/camera_info", "/egox/ego_prior/image", "/exo/image_raw",
                "/exo/camera_info", "/exo/depth", "/ego/pose"} <= set(topics)
        assert topics[EGO].msgcount == 10 and topics["/exo/image_raw"].msgcount == 12
        for topic in (EGO, "/exo/image_raw"):
            qos = topics[topic].ext.offered_qos_profiles
            assert qos and qos[0].reliability == QosReliability.RELIABLE
        for conn, log_time, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert log_time == stamp, conn.topic          # log time = header stamp
            assert stamp in stamps, conn.topic
    exo = _bag_frames(bag, "/exo/image_raw")
    for i, s in enumerate(scene.stamps_ns):
        np.testing.assert_array_equal(exo[int(s)], scene.exo_rgb[i])


def test_bag_read_back_independently_with_mcap(demo_bag):
    scene, bag, _ = demo_bag
    files = list(bag.glob("*.mcap"))
    assert len(files) == 1 and (bag / "metadata.yaml").is_file()
    reference = _bag_frames(bag, EGO)
    counts: dict[str, int] = {}
    with open(files[0], "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            stamp = decoded.header.stamp.sec * 10**9 + decoded.header.stamp.nanosec
            assert message.log_time == stamp
            if channel.topic == EGO:
                assert schema.name == "sensor_msgs/msg/Image"
                assert decoded.header.frame_id == "ego_camera_optical_frame"
                np.testing.assert_array_equal(image_to_rgb(decoded), reference[stamp])
            if channel.topic == "/egox/ego/camera_info":
                assert (decoded.width, decoded.height) == (scene.ego_K.width, scene.ego_K.height)
                np.testing.assert_allclose(np.reshape(decoded.k, (3, 3)), scene.ego_K.K)
    assert counts[EGO] == 10 and counts["/exo/image_raw"] == 12


def test_convert_reproduces_the_node_output(demo_bag, tmp_path):
    scene, bag, _ = demo_bag
    config = demo_config(scene, clip_length=5, clip_stride=5)
    progress = []
    summary = convert_bag(bag, tmp_path / "ego", config, make_generator(GeneratorConfig()),
                          progress=lambda done, total: progress.append((done, total)))
    assert summary["clips"] == 2 and summary["ego_frames"] == 10
    assert progress[-1][0] == progress[-1][1] > 0
    live, offline = _bag_frames(bag, EGO), _bag_frames(tmp_path / "ego", EGO)
    assert sorted(offline) == sorted(live)
    for stamp in live:
        np.testing.assert_array_equal(offline[stamp], live[stamp])


def test_convert_reads_sqlite3_bags_through_the_cli(tmp_path):
    from egox_ros.cli import app

    scene = tiny_scene(frames=5)
    write_exo_bag(tmp_path / "exo", scene, storage=StoragePlugin.SQLITE3)
    K = scene.ego_K
    params = tmp_path / "egox.yaml"
    params.write_text(
        "/**/egox:\n  ros__parameters:\n"
        f"    clip_length: 5\n    clip_stride: 5\n    exo_width: 0\n    exo_height: 0\n"
        f"    ego_width: {K.width}\n    ego_height: {K.height}\n    ego_fx: {K.fx}\n"
        f"    ego_fy: {K.fy}\n    ego_cx: {K.cx}\n    ego_cy: {K.cy}\n"
        f"    exo_pose: {[float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))]}\n")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "exo"), str(tmp_path / "ego"),
                                      "--config", str(params), "--no-progress"])
    assert result.exit_code == 0, result.output
    frames = _bag_frames(tmp_path / "ego", EGO)
    assert sorted(frames) == [int(s) for s in scene.stamps_ns]
    assert all(f.shape == (K.height, K.width, 3) for f in frames.values())


def test_convert_names_a_missing_topic(tmp_path):
    scene = tiny_scene(frames=5)
    write_exo_bag(tmp_path / "exo", scene, depth=False, storage=StoragePlugin.SQLITE3)
    with pytest.raises(BagError, match=r"lacks required topic\(s\) /exo/depth \(depth\)"):
        convert_bag(tmp_path / "exo", tmp_path / "ego",
                    demo_config(scene, exo_pose_source="parameter", use_mask=False),
                    make_generator(GeneratorConfig()))
    with pytest.raises(BagError, match="does not exist"):
        convert_bag(tmp_path / "nope", tmp_path / "ego2", demo_config(scene),
                    make_generator(GeneratorConfig()))


def test_egox_record_cli_writes_an_mcap_bag(tmp_path):
    import json
    import os
    import subprocess
    import sys
    import time

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ros_fixtures import RosHarness, unique_ns, wait_until
    from egox_ros.messages import RclpyFactory

    ns = unique_ns()
    topic = f"{ns}/exo/image_raw"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-m", "egox_ros.cli", "record", "--out",
                             str(tmp_path / "rec"), "--duration", "6", topic], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    harness = RosHarness()
    try:
        node = harness.add(rclpy.create_node("pub", context=harness.context))
        pub = node.create_publisher(Image, topic,
                                    QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        assert wait_until(lambda: pub.get_subscription_count() >= 1, 20), "recorder not up"
        time.sleep(0.3)                      # let the recorder's side of the match settle
        f = RclpyFactory()
        for i in range(5):
            pub.publish(f.image(np.full((4, 6, 3), i, np.uint8), "rgb8",
                                f.header(1_000_000_000 + i, "cam")))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
    finally:
        harness.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["messages"] == {topic: 5}
    frames = _bag_frames(tmp_path / "rec", topic)
    assert sorted(frames) == [1_000_000_000 + i for i in range(5)]
    assert [int(frames[s][0, 0, 0]) for s in sorted(frames)] == list(range(5))
