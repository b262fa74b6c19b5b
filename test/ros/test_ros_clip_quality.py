"""~/clip_quality: one DiagnosticArray per clip from the live node over real DDS (stamped
with the clip's first exo stamp), recorded into the demo's bag, and written by
`egox convert` with the same values."""
import math

import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from ros_fixtures import RosHarness, tiny_scene, unique_ns, wait_until  # noqa: I100

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from egox_model.errors import ConfigError
from egox_model.generator import GeneratorConfig, make_generator
from egox_model.quality import ClipQuality
from egox_ros.convert import convert_bag
from egox_ros.messages import quality_values, stamp_ns
from egox_ros.node import EgoxNode
from egox_ros.params import EgoxConfig
from egox_ros.player import ScenePlayer
from egox_ros.ros_demo import QUALITY_TOPIC, demo_config, run_ros_stage

TS = get_typestore(Stores.ROS2_KILTED)
INPUTS = ("exo/image_raw", "exo/camera_info", "exo/depth", "ego/pose", "exo/pose")


@pytest.fixture
def harness():
    h = RosHarness()
    yield h
    h.close()


def _check_prior_backend_quality(values: dict[str, str], first: int, last: int) -> None:
    q = ClipQuality.from_values(values)
    # The prior backend keeps every covered pixel of the prior: exact agreement, no flicker.
    assert q.prior_psnr_db == math.inf and q.flicker == 0.0
    assert 0.3 < q.prior_coverage <= 1.0
    assert (q.backend, q.frames, q.first_stamp_ns, q.last_stamp_ns) == ("prior", 5, first, last)
    assert math.isnan(q.fusion_residual_rms_mean)         # metric depth topic: no fusion


@pytest.mark.parametrize("warn", ["", "prior_coverage>=0.99 and flicker<1"])
def test_the_node_publishes_one_quality_message_per_clip(harness, warn):
    ns, scene = unique_ns(), tiny_scene(frames=12)
    K = scene.ego_K
    config = EgoxConfig(clip_length=5, clip_stride=5, exo_width=0, exo_height=0,
                        ego_width=K.width, ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy,
                        ego_cx=K.cx, ego_cy=K.cy, exo_pose_source="topic",
                        subscription_depth=100, clip_quality_warn=warn)
    harness.add(EgoxNode(config=config, generator=make_generator(GeneratorConfig()),
                         namespace=ns, context=harness.context))
    got: list[DiagnosticArray] = []
    sink = harness.add(rclpy.create_node("sink", context=harness.context))
    sink.create_subscription(DiagnosticArray, f"{ns}/egox/clip_quality", got.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
    assert player.wait_for_subscribers(1, topics=INPUTS)
    player.play()
    assert wait_until(lambda: len(got) >= 2, 30)
    stamps = [int(s) for s in scene.stamps_ns]
    assert [stamp_ns(m.header) for m in got] == [stamps[0], stamps[5]]
    for msg, first in zip(got, (0, 5)):
        status = msg.status[0]
        assert msg.header.frame_id == config.ego_frame_id
        # With clip_quality_warn, a clip that fails it (coverage < 0.99 here) is WARN.
        assert (status.name, status.hardware_id, status.level) == (
            "egox: clip quality", "prior", DiagnosticStatus.WARN if warn else DiagnosticStatus.OK)
        assert status.message.startswith(f"fails {warn!r}" if warn else "prior PSNR inf dB")
        _check_prior_backend_quality(quality_values(msg), stamps[first], stamps[first + 4])


def test_a_bad_clip_quality_warn_expression_is_refused():
    with pytest.raises(ConfigError, match="clip_quality_warn.*unknown key 'psnr'"):
        EgoxConfig(clip_quality_warn="psnr>=20")


def _quality_messages(bag) -> list[tuple[int, int, dict[str, str]]]:
    with AnyReader([bag], default_typestore=TS) as reader:
        conns = [c for c in reader.connections if c.topic == QUALITY_TOPIC]
        assert conns and conns[0].msgtype == "diagnostic_msgs/msg/DiagnosticArray"
        return [(log_time, stamp_ns(msg.header), quality_values(msg))
                for conn, log_time, raw in reader.messages(connections=conns)
                for msg in [reader.deserialize(raw, conn.msgtype)]]


def test_recorded_by_the_demo_and_written_by_convert_alike(tmp_path):
    scene = tiny_scene(frames=12)
    run_ros_stage(scene, tmp_path / "live", make_generator(GeneratorConfig()), clip_length=5,
                  clip_stride=5, rate=2.0, timeout_s=60)
    live = _quality_messages(tmp_path / "live" / "bag")
    stamps = [int(s) for s in scene.stamps_ns]
    assert [(log, stamp) for log, stamp, _ in live] == [(stamps[0], stamps[0]),
                                                        (stamps[5], stamps[5])]
    convert_bag(tmp_path / "live" / "bag", tmp_path / "offline",
                demo_config(scene, clip_length=5, clip_stride=5),
                make_generator(GeneratorConfig()))
    offline = _quality_messages(tmp_path / "offline")
    assert offline == live
    convert_bag(tmp_path / "live" / "bag", tmp_path / "warned",
                demo_config(scene, clip_length=5, clip_stride=5,
                            clip_quality_warn="prior_psnr_db<30"),
                make_generator(GeneratorConfig()))
    with AnyReader([tmp_path / "warned"], default_typestore=TS) as reader:
        conns = [c for c in reader.connections if c.topic == QUALITY_TOPIC]
        levels = [reader.deserialize(raw, conn.msgtype).status[0].level
                  for conn, _, raw in reader.messages(connections=conns)]
    assert levels == [1, 1]                                 # WARN: PSNR inf fails < 30
    for (_, stamp, values), first in zip(live, (0, 5)):
        _check_prior_backend_quality(values, stamps[first], stamps[first + 4])
