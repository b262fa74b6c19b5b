"""The egox node over real DDS: in-process and as a separate process, with the prior backend.

Clip in -> the right number of ego frames out with matching stamps, sizes, frame ids and
CameraInfo; every bad input counted and survived; shutdown with a full queue within 5 s.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ros_fixtures import RosHarness, tiny_scene, unique_ns, wait_until  # noqa: I100

from diagnostic_msgs.msg import DiagnosticArray
from egox_model.generator import Generator, GeneratorConfig, make_generator
from egox_ros.image_conversion import image_to_rgb, numpy_to_image
from egox_ros.messages import RclpyFactory
from egox_ros.node import EgoxNode
from egox_ros.params import EgoxConfig
from egox_ros.player import ScenePlayer
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image

ROOT = Path(__file__).resolve().parents[2]
ALL_INPUTS = ("exo/image_raw", "exo/camera_info", "exo/depth", "ego/pose", "exo/pose")
COMPRESSED_INPUTS = ("exo/image_raw/compressed", "exo/camera_info", "exo/depth", "ego/pose")
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


def tiny_config(**overrides) -> EgoxConfig:
    scene = tiny_scene()
    K = scene.ego_K
    values = dict(clip_length=5, clip_stride=5, exo_width=0, exo_height=0, ego_width=K.width,
                  ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy, ego_cx=K.cx, ego_cy=K.cy,
                  exo_pose_source="topic", diagnostics_period_s=0.2, subscription_depth=100)
    values.update(overrides)
    return EgoxConfig(**values)


class Sink:
    """Collects the node's outputs under namespace `ns`."""

    def __init__(self, harness, ns):
        import rclpy
        self.node = harness.add(rclpy.create_node("sink", namespace=ns,
                                                  context=harness.context))
        self.msgs = {t: [] for t in ("ego/image", "ego/camera_info", "ego_prior/image",
                                     "ego_prior/camera_info")}
        for topic in self.msgs:
            self.node.create_subscription(
                Image if topic.endswith("image") else CameraInfo, f"{ns}/egox/{topic}",
                lambda m, t=topic: self.msgs[t].append(m), RELIABLE)


class GatedPrior(Generator):
    """The prior backend behind a gate, stepping its callback while it waits (so a shutdown
    can abandon it): makes the queue fill up on demand."""

    name = "prior"

    def __init__(self):
        self.inner = make_generator(GeneratorConfig())
        self.gate = threading.Event()
        self.started = threading.Event()

    @classmethod
    def from_config(cls, config):
        return cls()

    def generate(self, clip, *, callback=None):
        self.started.set()
        step = 0
        while not self.gate.wait(0.02):
            if callback is not None:
                callback(step, 10**6)
            step += 1
        return self.inner.generate(clip, callback=callback)


def start(harness, ns, config, generator=None):
    generator = generator or make_generator(GeneratorConfig())
    node = harness.add(EgoxNode(config=config, generator=generator,
                                namespace=ns, context=harness.context))
    sink = Sink(harness, ns)
    return node, sink


@pytest.fixture
def harness():
    h = RosHarness()
    yield h
    h.close()


def _check_outputs(sink, scene, config, n_frames):
    assert wait_until(lambda: all(len(v) >= n_frames for v in sink.msgs.values()), 30)
    time.sleep(0.1)
    stamps = [int(s) for s in scene.stamps_ns[:n_frames]]
    for topic, msgs in sink.msgs.items():
        assert len(msgs) == n_frames, topic
        got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
        assert got == stamps, topic
        assert {m.header.frame_id for m in msgs} == {config.ego_frame_id}
    for img in sink.msgs["ego/image"] + sink.msgs["ego_prior/image"]:
        assert (img.width, img.height, img.encoding) == (config.ego_width, config.ego_height,
                                                         "rgb8")
        assert image_to_rgb(img).shape == (config.ego_height, config.ego_width, 3)
    for info in sink.msgs["ego/camera_info"]:
        assert (info.width, info.height) == (config.ego_width, config.ego_height)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)),
                                   [[config.ego_fx, 0, config.ego_cx],
                                    [0, config.ego_fy, config.ego_cy], [0, 0, 1]])
        assert np.allclose(info.p[:3], [config.ego_fx, 0, config.ego_cx])


def test_clip_in_ego_frames_out_in_process(harness):
    ns, scene, config = unique_ns(), tiny_scene(frames=12), tiny_config()
    node, sink = start(harness, ns, config)
    diags = []
    harness.nodes[-1].create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    player.play()
    _check_outputs(sink, scene, config, 10)            # 12 frames -> two 5-frame clips
    # a clip counts as published once its frames and its ~/clip_quality are out
    assert wait_until(lambda: node.stats()["clips_published"] == 2, 10), node.stats()
    stats = node.stats()
    assert stats["clips_published"] == 2 and stats["frames_in"] == 12
    # The prior of a textured plane seen from nearby is mostly covered and not black.
    assert image_to_rgb(sink.msgs["ego_prior/image"][0]).mean() > 20
    assert len(node.latencies_ms) == 2
    fqn = node.get_fully_qualified_name()
    assert wait_until(lambda: any(s.hardware_id == fqn for d in diags for s in d.status), 5)
    status = next(s for d in diags for s in d.status if s.hardware_id == fqn)
    keys = {kv.key: kv.value for kv in status.values}
    assert keys["backend"] == "prior" and "queue_depth" in keys and "dropped_clips" in keys


def test_compressed_input_and_odometry(harness):
    ns, scene = unique_ns(), tiny_scene(frames=5)
    config = tiny_config(image_transport="compressed", exo_pose_source="parameter",
                         exo_pose=[0.0, -0.5, 1.0, 0.0, 0.0, 0.0, 1.0])
    node, sink = start(harness, ns, config)
    player = harness.add(ScenePlayer(scene, image_transport="compressed", namespace=ns,
                                     context=harness.context))
    assert player.wait_for_subscribers(1, topics=COMPRESSED_INPUTS)
    player.play()
    assert wait_until(lambda: len(sink.msgs["ego/image"]) == 5
                      and node.stats()["clips_published"] == 1, 30), node.stats()


class BadPublisher:
    def __init__(self, harness, ns):
        import rclpy
        self.node = harness.add(rclpy.create_node("bad", namespace=ns, context=harness.context))
        self.image = self.node.create_publisher(Image, "exo/image_raw", RELIABLE)
        self.info = self.node.create_publisher(CameraInfo, "exo/camera_info", RELIABLE)
        self.pose = self.node.create_publisher(PoseStamped, "ego/pose", RELIABLE)
        self.f = RclpyFactory()

    def header(self, stamp):
        return self.f.header(stamp, "exo")


def test_every_bad_input_is_counted_and_survived(harness):
    ns, scene = unique_ns(), tiny_scene(frames=5)
    # reliable subscriptions: the burst below is published unpaced and must not be thinned out
    # by best-effort delivery before it reaches the queue
    config = tiny_config(exo_pose_source="parameter", queue_size=1, subscription_qos="reliable",
                         subscription_depth=200, max_wait_s=10.0)
    gated = GatedPrior()
    node, sink = start(harness, ns, config, gated)
    node.pipeline.max_held_before_info = 2
    bad = BadPublisher(harness, ns)
    assert wait_until(lambda: node.count_publishers(f"{ns}/exo/image_raw") >= 1
                      and bad.image.get_subscription_count() >= 1)
    t0 = int(scene.stamps_ns[0]) - 10**9
    stats = node.stats

    def expect(cause, n=1):
        assert wait_until(lambda: stats().get(cause, 0) >= n, 5), f"{cause}: {stats()}"

    rgb = scene.exo_rgb[0]
    # 1. images before any CameraInfo: held, then dropped beyond the limit
    for i in range(4):
        bad.image.publish(numpy_to_image(rgb, "rgb8", bad.header(t0 + i)))
    expect("missing_camera_info", 2)
    # 2. all-zero K, unsupported distortion model
    info = bad.f.camera_info(scene.exo_K, bad.header(t0))
    info.k = [0.0] * 9
    bad.info.publish(info)
    expect("bad_camera_info")
    info = bad.f.camera_info(scene.exo_K, bad.header(t0))
    info.distortion_model, info.d = "kannala_brandt_9", [0.1] * 9
    bad.info.publish(info)
    expect("bad_camera_info", 2)
    bad.info.publish(bad.f.camera_info(scene.exo_K, bad.header(t0)))
    # 3. unknown encoding, size mismatch
    msg = numpy_to_image(rgb, "rgb8", bad.header(t0 + 100))
    msg.encoding = "yuv422"
    bad.image.publish(msg)
    expect("unknown_encoding")
    bad.image.publish(numpy_to_image(rgb[:10, :10].copy(), "rgb8", bad.header(t0 + 101)))
    expect("size_mismatch")
    # 4. NaN pose, duplicate and out-of-order stamps
    pose = PoseStamped(header=bad.header(t0 + 200))
    pose.pose.position.x = float("nan")
    bad.pose.publish(pose)
    expect("bad_pose")
    ok_pose = PoseStamped(header=bad.header(t0 + 300))
    ok_pose.pose.orientation.w = 1.0
    bad.pose.publish(ok_pose)
    bad.pose.publish(ok_pose)
    expect("duplicate_stamp")
    ok_pose.header = bad.header(t0 + 250)
    bad.pose.publish(ok_pose)             # held: the start of a restart, or a stray stamp?
    ok_pose.header = bad.header(t0 + 350)
    bad.pose.publish(ok_pose)             # the stream went on: the stray one is dropped
    expect("out_of_order_stamp")
    # 5. a burst of clips beyond the queue while the backend is busy
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context, rate=0))
    assert player.wait_for_subscribers(1)
    for burst in range(4):
        shift = burst * 10**9
        player.scene.stamps_ns = scene.stamps_ns + shift
        player.play()
    assert wait_until(lambda: gated.started.is_set(), 10)
    expect("queue_overflow", 2)
    assert stats()["dropped_clips"] >= 2
    # ... and the node still works: the clip in flight and the queued one come out.
    gated.gate.set()
    assert wait_until(lambda: stats().get("clips_published") == 2, 30), stats()
    assert wait_until(lambda: len(sink.msgs["ego/image"]) == 10, 10)


def test_shutdown_with_full_queue_returns_quickly(harness):
    ns, scene = unique_ns(), tiny_scene(frames=5)
    gated = GatedPrior()
    config = tiny_config(queue_size=2, subscription_qos="reliable", subscription_depth=200,
                         max_wait_s=10.0)
    node, _ = start(harness, ns, config, gated)
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context, rate=0))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    for burst in range(4):
        player.scene.stamps_ns = scene.stamps_ns + burst * 10**9
        player.play()
    assert wait_until(lambda: len(node.queue) == 2 and gated.started.is_set(), 10), node.stats()
    start_time = time.monotonic()
    harness.close()                                     # executor, destroy_node, shutdown
    assert time.monotonic() - start_time < 5.0
    assert not node._worker.is_alive()
    assert node.counters["clips_abandoned"] == 3        # two queued + the one in flight


def test_node_as_a_separate_process_and_sigint(harness, tmp_path):
    ns, scene = unique_ns(), tiny_scene(frames=5)
    K = scene.ego_K
    # Reliable subscriptions (the player publishes reliably): between processes best effort
    # may lose a frame on a loaded machine, and with it the only clip.
    params = dict(clip_length=5, clip_stride=5, exo_width=0, exo_height=0, ego_width=K.width,
                  ego_height=K.height, ego_fx=K.fx, ego_fy=K.fy, ego_cx=K.cx, ego_cy=K.cy,
                  exo_pose_source="topic", subscription_qos="reliable")
    args = [sys.executable, "-m", "egox_ros.node", "--ros-args", "-r", f"__ns:={ns}"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        sink = Sink(harness, ns)
        player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
        assert player.wait_for_subscribers(1, timeout=30, topics=ALL_INPUTS), \
            "node process did not come up"
        assert wait_until(lambda: sink.node.count_publishers(f"{ns}/egox/ego/image") >= 1, 10)
        player.play()
        config = tiny_config(**{k: v for k, v in params.items()})
        _check_outputs(sink, scene, config, 5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"egox_node did not exit within 5 s of SIGINT:\n{out}")
    assert proc.returncode == 0, out
    assert "egox ready" in out


def test_prompt_topic_from_a_default_publisher(harness):
    import rclpy
    from std_msgs.msg import String

    ns = unique_ns()
    node, _ = start(harness, ns, tiny_config(prompt="start"))
    pub_node = harness.add(rclpy.create_node("prompter", namespace=ns, context=harness.context))
    pub = pub_node.create_publisher(String, "prompt", 10)       # plain reliable, volatile
    assert wait_until(lambda: pub.get_subscription_count() >= 1)
    assert node.pipeline.prompt == "start"
    pub.publish(String(data="pick up the red ball"))
    assert wait_until(lambda: node.pipeline.prompt == "pick up the red ball", 5)


def _diag_status(harness, fqn):
    """The newest "egox: pipeline" status of node `fqn` on /diagnostics, as a callable."""
    import rclpy
    got = []
    node = harness.add(rclpy.create_node("diag_listener", context=harness.context))
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: got.extend(s for s in m.status if s.hardware_id == fqn),
                             10)
    return lambda: got[-1] if got else None


def test_bad_stamps_and_a_replayed_clip_still_give_every_clip_and_diagnostics_recover(harness):
    from diagnostic_msgs.msg import DiagnosticStatus

    ns = unique_ns()
    scene = tiny_scene(frames=16)
    base = scene.stamps_ns.copy()
    good = np.concatenate([base[:7], base[7:15]])              # 15 frames: three clips
    day = 86_400 * 10**9
    scene.stamps_ns = np.concatenate([base[:7], [base[6] + day], base[7:15]])
    config = tiny_config(subscription_qos="reliable", diagnostics_window_s=1.0)
    node, sink = start(harness, ns, config)
    status = _diag_status(harness, node.get_fully_qualified_name())
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    player.play()                      # a frame stamped a day ahead in the middle (all topics)
    assert wait_until(lambda: len(sink.msgs["ego/image"]) >= 15, 20), node.stats()
    player.play()                      # the same clip again: same stamps (bag --loop)
    assert wait_until(lambda: len(sink.msgs["ego/image"]) >= 30
                      and node.stats()["clips_published"] == 6, 20), node.stats()
    time.sleep(0.2)
    got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in sink.msgs["ego/image"]]
    assert got == [int(s) for s in good] * 2
    stats = node.stats()
    # the bad frame: image, depth, both poses (twice: both plays); one restart
    assert stats["stamp_implausible"] == 8 and stats["stream_restarted"] == 1, stats
    assert not node.pipeline.matcher.dropped and stats["clips_published"] == 6
    assert wait_until(lambda: status() is not None
                      and status().level == DiagnosticStatus.WARN, 5), status()
    assert "stamp_implausible" in status().message and "stream_restarted" in status().message
    # good input, and the window passes: OK again, with the totals still in the values
    player.scene.stamps_ns = good + 2 * 10**9
    player.play()
    assert wait_until(lambda: len(sink.msgs["ego/image"]) >= 45, 20), node.stats()
    assert wait_until(lambda: status().level == DiagnosticStatus.OK, 5), status()
    values = {kv.key: kv.value for kv in status().values}
    assert values["stamp_implausible"] == "8" and values["dropped_in_window"] == ""
    assert status().message == "running"


def _burst(harness, queue_size, gated=False, clips=20):
    ns, scene = unique_ns(), tiny_scene(frames=5 * clips)
    generator = GatedPrior() if gated else None
    config = tiny_config(subscription_qos="reliable", subscription_depth=5 * clips + 10,
                         queue_size=queue_size)
    node, sink = start(harness, ns, config, generator)
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context, rate=0))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    player.play()                                           # unpaced: as fast as possible
    assert wait_until(lambda: node.stats().get("clips_complete", 0) == clips, 30), node.stats()
    return node, sink, generator


def test_a_burst_of_20_clips_is_matched_and_every_loss_is_counted(harness):
    # queue_size 2 and a backend that is busy: the queue policy drops exactly the clips that
    # found the queue full; nothing is lost before the queue.
    node, sink, gated = _burst(harness, queue_size=2, gated=True)
    stats = node.stats()
    assert stats["frames_in"] == 100 and node.drop_totals() == {"queue_overflow": 17}, stats
    gated.gate.set()
    assert wait_until(lambda: node.stats().get("clips_published") == 3, 30), node.stats()
    # a queue as deep as the burst: all 20 come out
    node, sink, _ = _burst(harness, queue_size=20)
    # (a clip counts as published after its frames and its ~/clip_quality are out)
    assert wait_until(lambda: len(sink.msgs["ego/image"]) == 100
                      and node.stats()["clips_published"] == 20, 30), node.stats()
    assert not node.drop_totals()


class FailingOnce(Generator):
    """The prior backend, whose first clip fails."""

    name = "prior"

    def __init__(self):
        self.inner = make_generator(GeneratorConfig())
        self.calls = 0

    @classmethod
    def from_config(cls, config):
        return cls()

    def generate(self, clip, *, callback=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("out of memory (test)")
        return self.inner.generate(clip, callback=callback)


def test_a_failed_generation_is_error_for_the_window_only(harness):
    from diagnostic_msgs.msg import DiagnosticStatus

    ns, scene = unique_ns(), tiny_scene(frames=5)
    node, sink = start(harness, ns, tiny_config(diagnostics_window_s=0.6), FailingOnce())
    status = _diag_status(harness, node.get_fully_qualified_name())
    player = harness.add(ScenePlayer(scene, namespace=ns, context=harness.context))
    assert player.wait_for_subscribers(1, topics=ALL_INPUTS)
    player.play()
    assert wait_until(lambda: status() is not None
                      and status().level == DiagnosticStatus.ERROR, 10), status()
    assert "out of memory (test)" in status().message
    player.scene.stamps_ns = scene.stamps_ns + 10**9
    player.play()
    assert wait_until(lambda: len(sink.msgs["ego/image"]) == 5, 10), node.stats()
    assert wait_until(lambda: status().level == DiagnosticStatus.OK, 5), status()
    assert {kv.key: kv.value for kv in status().values}["generator_error"] == "1"
