"""Camera-sized images between two processes over real DDS, best-effort (REP 2003 sensor
QoS): with the built-in Fast DDS transports most are lost; egox's localhost profile
(egox_ros/fastdds_localhost.xml) delivers them."""
import os
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from ros_fixtures import RosHarness, unique_ns, wait_until
from sensor_msgs.msg import Image

import egox_ros  # noqa: F401  (sets the profile before rclpy.init)
from egox_ros.dds import LOCALHOST_PROFILE

SUBSCRIBER = """
import sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("count_images")
count = [0]
node.create_subscription(Image, sys.argv[1], lambda m: count.__setitem__(0, count[0] + 1),
                         qos_profile_sensor_data)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and count[0] < 60:
    rclpy.spin_once(node, timeout_sec=0.05)
print(count[0], flush=True)
"""


def test_full_size_images_reach_another_process_at_30_fps():
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LOCALHOST_PROFILE)
    topic = unique_ns() + "/image"
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, topic, "12"],
                           stdout=subprocess.PIPE, text=True)
    harness = RosHarness()
    try:
        assert sub.stdout.readline().strip() == "ready"
        node = harness.add(rclpy.create_node("send_images", context=harness.context))
        pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
        assert wait_until(lambda: pub.get_subscription_count() == 1, 8.0)
        time.sleep(0.5)
        msg = Image(height=448, width=784, encoding="rgb8", step=784 * 3)
        msg.data = np.random.default_rng(0).integers(0, 255, 448 * 784 * 3, np.uint8).tobytes()
        for _ in range(60):
            pub.publish(msg)
            time.sleep(1 / 30)
        received = int(sub.communicate(timeout=30)[0].split()[-1])
    finally:
        harness.close()
        if sub.poll() is None:
            sub.kill()
    assert received >= 57, f"only {received} of 60 images arrived"


def test_localhost_profile_brings_its_memory_policy_switch_and_respects_the_user(monkeypatch):
    from egox_ros.dds import use_localhost_profile

    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML",
                 "RMW_IMPLEMENTATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_localhost_profile()
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LOCALHOST_PROFILE)
    assert os.environ["RMW_FASTRTPS_USE_QOS_FROM_XML"] == "1"
    assert "<historyMemoryPolicy>DYNAMIC</historyMemoryPolicy>" in LOCALHOST_PROFILE.read_text()
    # A profile of the user's own: neither variable is touched.
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/mine.xml")
    monkeypatch.delenv("RMW_FASTRTPS_USE_QOS_FROM_XML")
    use_localhost_profile()
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml"
    assert "RMW_FASTRTPS_USE_QOS_FROM_XML" not in os.environ
    # Discovery beyond this host: no profile either.
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    use_localhost_profile()
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ
