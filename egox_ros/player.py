"""`egox_player`: publishes a synthetic scene clip as the topics the `egox` node reads.

Topics (relative): exo/image_raw (rgb8) or exo/image_raw/compressed, exo/camera_info,
exo/depth (32FC1, metres), exo/mask (mono8), exo/pose and ego/pose (PoseStamped in `world`).
Stamps are the scene's own (`stamps_ns`), so outputs can be checked against them. Publishers
are reliable (REP 2003); frames are paced at the scene's fps times `rate` (0 = no pacing).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from egox_model.config import check_settings, setting
from egox_model.geometry.pose import c2w_to_pose
from egox_ros.image_conversion import numpy_to_compressed, numpy_to_image
from egox_ros.messages import RclpyFactory
from egox_ros.spin import ros_main

__all__ = ["PlayerOptions", "ScenePlayer", "main"]


class ScenePlayer(Node):
    """Plays `scene` (anything with exo_rgb, exo_depth_m, dynamic_mask, exo_K, exo_c2w,
    ego_c2w, stamps_ns, fps — e.g. `egox_model.scene.SceneClip`) once per `play()` call."""

    def __init__(self, scene: Any, *, rate: float = 1.0, image_transport: str = "raw",
                 publish_depth: bool = True, publish_mask: bool = False,
                 exo_frame_id: str = "exo_camera_optical_frame", world_frame_id: str = "world",
                 node_name: str = "egox_player", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.scene = scene
        self.rate = rate
        self.image_transport = image_transport
        self.exo_frame_id, self.world_frame_id = exo_frame_id, world_frame_id
        self.factory = RclpyFactory()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        if image_transport == "raw":
            self.image_pub = self.create_publisher(Image, "exo/image_raw", qos)
        else:
            self.image_pub = self.create_publisher(CompressedImage, "exo/image_raw/compressed",
                                                   qos)
        self.info_pub = self.create_publisher(CameraInfo, "exo/camera_info", qos)
        self.depth_pub = self.create_publisher(Image, "exo/depth", qos) if publish_depth else None
        self.mask_pub = self.create_publisher(Image, "exo/mask", qos) if publish_mask else None
        self.ego_pose_pub = self.create_publisher(PoseStamped, "ego/pose", qos)
        self.exo_pose_pub = self.create_publisher(PoseStamped, "exo/pose", qos)
        self.published = 0
        self.publish_times: dict[int, float] = {}     # stamp -> time.monotonic() at publish

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0,
                             topics: Sequence[str] = ("exo/image_raw", "ego/pose")) -> bool:
        """Wait until each of `topics` (relative names as published here) has `count`
        subscriptions (discovery), so the first frames are not published into the void."""
        pubs = {"exo/image_raw": self.image_pub, "exo/image_raw/compressed": self.image_pub,
                "exo/camera_info": self.info_pub, "exo/depth": self.depth_pub,
                "exo/mask": self.mask_pub, "ego/pose": self.ego_pose_pub,
                "exo/pose": self.exo_pose_pub}
        chosen = [pubs[t] for t in topics if pubs.get(t) is not None]
        deadline = time.monotonic() + timeout
        while min(p.get_subscription_count() for p in chosen) < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _pose(self, c2w: np.ndarray, header: Any) -> PoseStamped:
        position, quat = c2w_to_pose(c2w)
        msg = PoseStamped()
        msg.header = header
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(v) for v in position)
        q.x, q.y, q.z, q.w = (float(v) for v in quat)
        return msg

    def publish_frame(self, i: int) -> None:
        """Publish every topic of frame i; poses first so the node can match at once."""
        scene, f = self.scene, self.factory
        stamp = int(scene.stamps_ns[i])
        world = f.header(stamp, self.world_frame_id)
        self.ego_pose_pub.publish(self._pose(scene.ego_c2w[i], world))
        self.exo_pose_pub.publish(self._pose(scene.exo_c2w[i], world))
        header = f.header(stamp, self.exo_frame_id)
        self.info_pub.publish(f.camera_info(scene.exo_K, header))
        if self.depth_pub is not None:
            self.depth_pub.publish(numpy_to_image(
                np.asarray(scene.exo_depth_m[i], np.float32), "32FC1", header))
        if self.mask_pub is not None:
            self.mask_pub.publish(numpy_to_image(
                np.asarray(scene.dynamic_mask[i], np.uint8) * 255, "mono8", header))
        if self.image_transport == "raw":
            msg = numpy_to_image(scene.exo_rgb[i], "rgb8", header)
        else:
            msg = numpy_to_compressed(scene.exo_rgb[i], header, fmt="jpeg", quality=95)
        self.publish_times[stamp] = time.monotonic()
        self.image_pub.publish(msg)
        self.published += 1

    def play(self, stop: threading.Event | None = None) -> int:
        """Publish all frames, paced at fps * rate; returns the number of frames published."""
        n = len(self.scene.stamps_ns)
        period = 1.0 / (float(self.scene.fps) * self.rate) if self.rate > 0 else 0.0
        start = time.monotonic()
        for i in range(n):
            if stop is not None and stop.is_set():
                break
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publish_frame(i)
        return self.published


@dataclass(frozen=True)
class PlayerOptions:
    """What `egox_player` plays (egox_model.config settings, checked like the node's)."""

    seed: int = setting(0, "seed of the synthetic scene", low=0)
    loop: bool = setting(True, "play the scene again and again, stamps moving on")
    linger_s: float = setting(5.0, "seconds to stay after the last frame when not looping, "
                              "so reliable subscribers can still repair lost samples", low=0.0)

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_parameters(cls, node_name: str = "egox_player") -> PlayerOptions:
        """Read the parameters through a short-lived node named like the player, so
        `--params-file` sections and node-specific `-p NAME:VALUE` reach them; a value of the
        wrong type raises rclpy's InvalidParameterTypeException (ros_main reports it)."""
        probe = rclpy.create_node(node_name)
        try:
            default = cls()
            return cls(seed=probe.declare_parameter("seed", default.seed).value,
                       loop=probe.declare_parameter("loop", default.loop).value,
                       linger_s=probe.declare_parameter("linger_s", default.linger_s).value)
        finally:
            probe.destroy_node()


def main(args: list[str] | None = None) -> None:
    """`egox_player`: render the synthetic scene (parameter `seed`) and play it, looping.

    Parameters: seed (int >= 0), loop (bool), linger_s (float >= 0, after the last frame
    when not looping). Bad values end as one fatal line and exit status 2 (see ros_main).
    """
    with ros_main("egox_player", args):
        options = PlayerOptions.from_parameters()
        from egox_model.scene import SceneConfig, render_scene    # seconds (torch): not before

        scene = render_scene(SceneConfig(seed=options.seed))
        node = ScenePlayer(scene)
        threading.Thread(target=_spin_quietly, args=(node,), daemon=True).start()
        try:
            node.wait_for_subscribers(1, timeout=5.0)
            while rclpy.ok():
                node.play()
                if not options.loop:
                    # Stay a moment: reliable subscribers may still be repairing lost
                    # samples, which needs the publisher alive.
                    time.sleep(options.linger_s)
                    break
                # Restart stamps after the last one so consumers see time moving forward.
                span = int(scene.stamps_ns[-1] - scene.stamps_ns[0]) + int(1e9 / scene.fps)
                scene.stamps_ns = scene.stamps_ns + span
        finally:
            node.destroy_node()


def _spin_quietly(node: Node) -> None:
    """rclpy.spin(node) in a helper thread; ends without a traceback at shutdown."""
    try:
        rclpy.spin(node)
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    except _rclpy.RCLError:
        if node.context.ok():
            raise                  # else SIGINT shut the context down under the wait


if __name__ == "__main__":
    main()
