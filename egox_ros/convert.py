"""`egox convert IN_BAG OUT_BAG`: run the egox pipeline offline over a recorded exo bag.

Reads rosbag2 (MCAP or sqlite3) with rosbags' AnyReader, feeds the messages in log-time
order through the same `ExoPipeline` the node uses (same `EgoxConfig`, same topic names
relative to `namespace`), runs the generator on every complete clip and writes the ego
topics (`<namespace>/<node_name>/ego/image`, `.../ego/camera_info`, and the prior) to a new
MCAP bag with log time = source exo stamp. No rclpy needed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from rosbags.highlevel import AnyReader
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egox_model.generator.base import Generator
from egox_ros.errors import BagError
from egox_ros.messages import RosbagsFactory
from egox_ros.params import EgoxConfig
from egox_ros.pipeline import ExoPipeline, output_messages

__all__ = ["convert_bag", "input_topics", "output_topics"]

_RELIABLE = Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.VOLATILE,
                QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


def _join(namespace: str, name: str) -> str:
    return "/" + "/".join(p for p in (namespace.strip("/"), name.strip("/")) if p)


def input_topics(config: EgoxConfig, namespace: str = "/",
                 remap: dict[str, str] | None = None) -> dict[str, tuple[str, bool]]:
    """Stream -> (absolute topic, required) for the node's inputs under `namespace`.

    `remap` maps relative names (e.g. "exo/image_raw") to absolute topics, like --remap.
    """
    remap = remap or {}
    names = {"exo": (config.exo_topic, True), "camera_info": ("exo/camera_info", True),
             "ego_pose": ("ego/pose", True),
             "exo_pose": ("exo/pose", config.exo_pose_source == "topic"),
             "depth": ("exo/depth", config.depth_source == "topic"),
             "mask": ("exo/mask", config.use_mask), "prompt": ("prompt", False)}
    return {stream: (remap.get(rel, _join(namespace, rel)), required)
            for stream, (rel, required) in names.items()
            if required or stream == "prompt"}


def output_topics(config: EgoxConfig, namespace: str = "/", node_name: str = "egox"
                  ) -> dict[str, tuple[str, str]]:
    """Relative output name -> (absolute topic, message type)."""
    rel = ["ego/image", "ego/camera_info"]
    if config.publish_prior:
        rel += ["ego_prior/image", "ego_prior/camera_info"]
    return {r: (_join(_join(namespace, node_name), r),
                "sensor_msgs/msg/Image" if r.endswith("image") else "sensor_msgs/msg/CameraInfo")
            for r in rel}


def convert_bag(in_bag: str | Path, out_bag: str | Path, config: EgoxConfig, generator: Generator,
                *, namespace: str = "/", node_name: str = "egox",
                remap: dict[str, str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                on_bad_input: Callable[[str, str, bool], None] | None = None) -> dict[str, Any]:
    """Convert `in_bag` to the ego bag `out_bag` (a new directory); returns a summary.

    Raises BagError when the bag cannot be opened or lacks a required topic.
    `progress(done, total)` is called per message read.
    """
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    if not in_bag.exists():
        raise BagError(f"input bag {in_bag} does not exist")
    if out_bag.exists():
        raise BagError(f"output bag {out_bag} already exists; choose a new directory")
    typestore = get_typestore(Stores.ROS2_KILTED)
    wanted = input_topics(config, namespace, remap)
    pipeline = ExoPipeline(config, on_bad_input=on_bad_input)
    handlers = {"exo": pipeline.on_exo_image, "camera_info": pipeline.on_camera_info,
                "ego_pose": pipeline.on_ego_pose, "exo_pose": pipeline.on_exo_pose,
                "depth": pipeline.on_depth, "mask": pipeline.on_mask,
                "prompt": pipeline.on_prompt}
    try:
        reader = AnyReader([in_bag], default_typestore=typestore)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises several unrelated types here
        raise BagError(f"cannot open {in_bag} as a rosbag2 bag (MCAP or sqlite3): {err}") from err
    summary: dict[str, Any] = {"clips": 0, "ego_frames": 0, "messages_read": 0}
    try:
        present = {c.topic for c in reader.connections}
        missing = [f"{topic} ({stream})" for stream, (topic, required) in wanted.items()
                   if required and topic not in present]
        if missing:
            raise BagError(f"{in_bag} lacks required topic(s) {', '.join(missing)}; it has "
                           f"{sorted(present)}. Remap the topics (--remap exo/image_raw=/your/"
                           "topic) or change the config (e.g. depth_source, exo_pose_source)")
        by_topic = {topic: stream for stream, (topic, _) in wanted.items()}
        connections = [c for c in reader.connections if c.topic in by_topic]
        total = sum(c.msgcount for c in connections)
        factory = RosbagsFactory(typestore)
        outputs = output_topics(config, namespace, node_name)
        t_start = time.monotonic()
        with Writer(out_bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            out_conns = {rel: writer.add_connection(topic, msgtype, typestore=typestore,
                                                    offered_qos_profiles=[_RELIABLE])
                         for rel, (topic, msgtype) in outputs.items()}

            def run(clips: list) -> None:
                for clip in clips:
                    output = generator.generate(clip)
                    for rel, msg in output_messages(factory, output, clip, config):
                        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                        writer.write(out_conns[rel], stamp,
                                     typestore.serialize_cdr(msg, msg.__msgtype__))
                    summary["clips"] += 1
                    summary["ego_frames"] += clip.num_frames

            for connection, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                run(handlers[by_topic[connection.topic]](msg) or [])
                summary["messages_read"] += 1
                if progress is not None:
                    progress(summary["messages_read"], total)
            run(pipeline.flush())
    finally:
        reader.close()
    summary["seconds"] = time.monotonic() - t_start
    summary["bad_inputs"] = dict(pipeline.bad_inputs)
    summary["unmatched"] = dict(pipeline.matcher.dropped)
    summary["output_topics"] = [topic for topic, _ in outputs.values()]
    return summary
