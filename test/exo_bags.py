"""Exo bags for the tests, written with rosbags as `egox record` would record them.

Imported by test modules (test/ is on sys.path through its conftest): a scene (anything with
exo_rgb, exo_depth_m, exo_K, ego_c2w and stamps_ns, e.g. `render_scene(...)` or
ros_fixtures' `tiny_scene`) becomes /exo/image_raw (rgb8), /exo/camera_info, /exo/depth
(16UC1, mm) and /ego/pose (PoseStamped, world frame) at the scene's stamps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egox_model.geometry.pose import c2w_to_pose
from egox_ros.messages import RosbagsFactory

__all__ = ["EXO_TOPICS", "TYPESTORE", "exo_messages", "pose_stamped", "write_exo_bag"]

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
#: Topic -> message type of an exo bag.
EXO_TOPICS = {"/exo/image_raw": "sensor_msgs/msg/Image",
              "/exo/camera_info": "sensor_msgs/msg/CameraInfo",
              "/exo/depth": "sensor_msgs/msg/Image",
              "/ego/pose": "geometry_msgs/msg/PoseStamped"}
#: Extra messages of frame i: (i, stamp_ns, exo header) -> {topic: message}.
ExtraMessages = Callable[[int, int, Any], dict[str, Any]]


def pose_stamped(c2w: np.ndarray, header: Any) -> Any:
    """geometry_msgs/PoseStamped of a 4x4 c2w (rosbags class)."""
    types = TYPESTORE.types
    p, q = c2w_to_pose(c2w)
    return types["geometry_msgs/msg/PoseStamped"](
        header=header, pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](*map(float, p)),
            orientation=types["geometry_msgs/msg/Quaternion"](*map(float, q))))


def exo_messages(scene: Any, i: int, header: Any, topics: dict[str, str]) -> dict[str, Any]:
    """Frame i's messages of those EXO_TOPICS that are in `topics`."""
    f = RosbagsFactory(TYPESTORE)
    msgs = {"/exo/image_raw": lambda: f.image(scene.exo_rgb[i], "rgb8", header),
            "/exo/camera_info": lambda: f.camera_info(scene.exo_K, header),
            "/exo/depth": lambda: f.image((scene.exo_depth_m[i] * 1000).astype(np.uint16),
                                          "16UC1", header),
            "/ego/pose": lambda: pose_stamped(scene.ego_c2w[i], header)}
    return {topic: make() for topic, make in msgs.items() if topic in topics}


def write_exo_bag(path: Path, scene: Any, *, offset_ns: int = 0, depth: bool = True,
                  pose: bool = True, frame_id: str = "exo",
                  storage: StoragePlugin = StoragePlugin.MCAP,
                  extra_topics: dict[str, str] | None = None,
                  extra: ExtraMessages | None = None,
                  before: Callable[[Writer], None] | None = None) -> None:
    """Write an exo bag of `scene` (stamps shifted by `offset_ns`) to `path`.

    `depth` / `pose`: include /exo/depth / /ego/pose. `extra_topics` and `extra` add topics
    and their messages per frame; `before(writer)` writes first (e.g. /tf_static)."""
    topics = {t: m for t, m in EXO_TOPICS.items()
              if (depth or t != "/exo/depth") and (pose or t != "/ego/pose")}
    f = RosbagsFactory(TYPESTORE)
    with Writer(path, version=9, storage_plugin=storage) as writer:
        if before is not None:
            before(writer)
        conns = {t: writer.add_connection(t, m, typestore=TYPESTORE)
                 for t, m in {**topics, **(extra_topics or {})}.items()}
        for i, stamp in enumerate(int(s) + offset_ns for s in scene.stamps_ns):
            header = f.header(stamp, frame_id)
            msgs = exo_messages(scene, i, header, topics)
            if extra is not None:
                msgs.update(extra(i, stamp, header))
            for topic, msg in msgs.items():
                writer.write(conns[topic], stamp, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
