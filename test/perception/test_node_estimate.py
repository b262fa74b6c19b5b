"""The live node on a plain RGB camera: depth_source 'estimate' with a tiny Depth Pro
directory (built by the node itself through make_backend); no exo/depth subscription, ego
frames out at the exo stamps, the perception models and licences on /diagnostics."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))

import rclpy  # noqa: E402, I100
from ros_fixtures import RosHarness, tiny_scene, unique_ns, wait_until  # noqa: E402, I100

from egox_model.perception import PerceptionConfig  # noqa: E402
from egox_model.perception.perceive import PerceivingGenerator  # noqa: E402
from egox_ros.node import EgoxNode  # noqa: E402
from egox_ros.params import EgoxConfig  # noqa: E402
from egox_ros.player import ScenePlayer  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402


def test_node_estimates_depth_on_the_worker(tiny_models):
    harness = RosHarness()
    try:
        ns, scene = unique_ns(), tiny_scene(frames=6)
        K = scene.ego_K
        config = EgoxConfig(depth_source="estimate", clip_length=5, clip_stride=5,
                            exo_width=0, exo_height=0, ego_width=K.width, ego_height=K.height,
                            ego_fx=K.fx, ego_fy=K.fy, ego_cx=K.cx, ego_cy=K.cy,
                            exo_pose_source="topic", subscription_depth=100,
                            perception=PerceptionConfig(
                                depth_model=str(tiny_models["depth_pro"]), device="cpu"))
        node = harness.add(EgoxNode(config=config, namespace=ns, context=harness.context))
        assert isinstance(node.generator, PerceivingGenerator)
        assert not node.get_subscriptions_info_by_topic(f"{ns}/exo/depth")
        got = []
        sink = harness.add(rclpy.create_node("sink", namespace=ns, context=harness.context))
        sink.create_subscription(Image, f"{ns}/egox/ego/image", got.append,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        player = harness.add(ScenePlayer(scene, publish_depth=False, namespace=ns,
                                         context=harness.context))
        assert player.wait_for_subscribers(1, topics=("exo/image_raw", "exo/camera_info",
                                                      "ego/pose", "exo/pose"))
        player.play()
        assert wait_until(lambda: len(got) >= 5, 60), node.stats()
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got]
        assert stamps == [int(s) for s in scene.stamps_ns[:5]]
        stats = node.stats()
        assert stats["perception_depth_model"].startswith("depth_pro [apple-amlr")
        assert "weaker choice" in stats["perception_video_depth"]
        assert stats.get("generator_error", 0) == 0
    finally:
        harness.close()
