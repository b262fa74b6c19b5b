"""`egox convert IN_BAG OUT_BAG`: run the egox pipeline offline over a recorded exo bag.

Reads rosbag2 (MCAP or sqlite3) with rosbags' AnyReader, feeds the messages in log-time
order through the same `ExoPipeline` the node uses (same `EgoxConfig`, same topic names
relative to `namespace`; camera poses read from /tf and /tf_static where the config says
'tf'), runs the generator on every complete clip and writes the ego
topics (`<namespace>/<node_name>/ego/image`, `.../ego/camera_info`, the prior, and one
`.../clip_quality` DiagnosticArray per clip at its first exo stamp) to a new MCAP bag with
log time = source exo stamp. No rclpy needed.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from rosbags.highlevel import AnyReader
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egox_model.clip import Clip
from egox_model.clip_stream import ClipStream
from egox_model.generator.base import Generator
from egox_model.output import GeneratorOutput
from egox_model.quality import QUALITY_KEYS, clip_quality
from egox_model.quality_filter import QualityFilter
from egox_ros.errors import BagError, TfLookupError
from egox_ros.messages import CLIP_QUALITY_TYPE, RosbagsFactory
from egox_ros.params import EgoxConfig
from egox_ros.pipeline import ExoPipeline, output_messages
from egox_ros.tf_tree import STATIC_TOPIC, TF_TOPIC, TfBuffer, read_bag_tf

__all__ = ["BagClips", "EgoBagWriter", "convert_bag", "input_topics", "output_topics"]

_RELIABLE = Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.VOLATILE,
                QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


def _join(namespace: str, name: str) -> str:
    return "/" + "/".join(p for p in (namespace.strip("/"), name.strip("/")) if p)


def input_topics(config: EgoxConfig, namespace: str = "/",
                 remap: dict[str, str] | None = None) -> dict[str, tuple[str, bool]]:
    """Stream -> (absolute topic, required) for the node's inputs under `namespace`.

    `remap` maps relative names (e.g. "exo/image_raw") to absolute topics, like --remap.
    /tf and /tf_static are not among them: `BagClips` reads them first (`tf_topics`).
    """
    remap = remap or {}
    names = {"exo": (config.exo_topic, True), "camera_info": ("exo/camera_info", True),
             "ego_pose": ("ego/pose", config.ego_pose_source == "topic"),
             "exo_pose": ("exo/pose", config.exo_pose_source == "topic"),
             "depth": ("exo/depth", config.depth_source == "topic"),
             "mask": ("exo/mask", config.use_mask), "prompt": ("prompt", False)}
    return {stream: (remap.get(rel, _join(namespace, rel)), required)
            for stream, (rel, required) in names.items()
            if required or stream == "prompt"}


def tf_topics(remap: dict[str, str] | None = None) -> tuple[str, str]:
    """(/tf, /tf_static) topics, absolute as tf2 has them; remap "tf" / "tf_static" for a
    robot whose TF lives under a namespace."""
    remap = remap or {}
    return remap.get("tf", TF_TOPIC), remap.get("tf_static", STATIC_TOPIC)


def output_topics(config: EgoxConfig, namespace: str = "/", node_name: str = "egox"
                  ) -> dict[str, tuple[str, str]]:
    """Relative output name -> (absolute topic, message type)."""
    rel = ["ego/image", "ego/camera_info"]
    if config.publish_prior:
        rel += ["ego_prior/image", "ego_prior/camera_info"]
    topics = {r: (_join(_join(namespace, node_name), r),
                  "sensor_msgs/msg/Image" if r.endswith("image") else "sensor_msgs/msg/CameraInfo")
              for r in rel}
    topics["clip_quality"] = (_join(_join(namespace, node_name), "clip_quality"),
                              CLIP_QUALITY_TYPE)
    return topics


class BagClips:
    """The clips of one exo bag, in log-time order: `with BagClips(...) as clips: for clip in
    clips: ...`. Opening checks the bag and its topics (BagError, before any work);
    `messages_read`, `total_messages` and `pipeline` (its bad-input and matching counters)
    describe the reading so far. rclpy-free; the generator is the caller's business, so one
    process (`convert_bag`) or a cluster (`egox_ros.convert_ray`) can run it."""

    def __init__(self, in_bag: str | Path, config: EgoxConfig, *, namespace: str = "/",
                 remap: dict[str, str] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 on_bad_input: Callable[[str, str, bool], None] | None = None) -> None:
        self.in_bag = Path(in_bag)
        if not self.in_bag.exists():
            raise BagError(f"input bag {self.in_bag} does not exist")
        self.config = config
        self.wanted = input_topics(config, namespace, remap)
        self.tf_topics = tf_topics(remap)
        #: Every transform of the bag when the config reads camera poses from TF.
        self.tf = TfBuffer(tolerance_ns=round(config.tf.tolerance_s * 1e9)) \
            if config.tf_frames else None
        self.pipeline = ExoPipeline(config, on_bad_input=on_bad_input, tf=self.tf)
        self.progress = progress
        self.messages_read = 0
        self.total_messages = 0
        self.exo_messages = 0
        self._reader: AnyReader | None = None
        self._connections: list = []

    def __enter__(self) -> "BagClips":
        typestore = get_typestore(Stores.ROS2_KILTED)
        try:
            reader = AnyReader([self.in_bag], default_typestore=typestore)
            reader.open()
        except Exception as err:  # noqa: BLE001 - rosbags raises several unrelated types here
            raise BagError(f"cannot open {self.in_bag} as a rosbag2 bag (MCAP or sqlite3): "
                           f"{err}") from err
        try:
            present = {c.topic for c in reader.connections}
            missing = [f"{topic} ({stream})" for stream, (topic, required) in self.wanted.items()
                       if required and topic not in present]
            if missing:
                raise BagError(f"{self.in_bag} lacks required topic(s) {', '.join(missing)}; "
                               f"it has {sorted(present)}. Remap the topics (--remap "
                               "exo/image_raw=/your/topic) or change the config (e.g. "
                               "depth_source, exo_pose_source)")
            if self.tf is not None:
                self._read_tf(reader)
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        self._by_topic = {topic: stream for stream, (topic, _) in self.wanted.items()}
        self._connections = [c for c in reader.connections if c.topic in self._by_topic]
        self.total_messages = sum(c.msgcount for c in self._connections)
        self.exo_messages = sum(c.msgcount for c in self._connections
                                if self._by_topic[c.topic] == "exo")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _read_tf(self, reader: AnyReader) -> None:
        """Read every transform first (a frame's transforms may be logged after it). BagError
        when the bag has no TF or a camera frame is not connected to the world frame."""
        tf_topic, static_topic = self.tf_topics
        try:
            read_bag_tf(reader, self.tf, tf_topic=tf_topic, static_topic=static_topic)
        except BagError as err:
            raise BagError(f"{self.in_bag}: {err} (the config reads "
                           f"{sorted(self.config.tf_frames)} from TF)") from None
        for cause, count in self.tf.rejected.items():
            self.pipeline.report(f"tf_{cause}", f"{count} transform(s) of {tf_topic} / "
                                 f"{static_topic} rejected ({cause}); the last: "
                                 f"{self.tf.last_rejection}")
            self.pipeline.bad_inputs[f"tf_{cause}"] += count - 1
        for stream, frame in self.config.tf_frames.items():
            try:
                self.tf.path(self.config.tf.world_frame, frame)
            except TfLookupError as err:
                raise BagError(f"{self.in_bag}: {err}. Set tf.world_frame and tf."
                               f"{stream.split('_')[0]}_frame to frames of its TF tree") from None

    def __iter__(self) -> Iterator[Clip]:
        if self._reader is None:
            raise RuntimeError("BagClips must be entered (`with BagClips(...) as clips`) "
                               "before iterating")
        reader, pipeline = self._reader, self.pipeline
        handlers = {"exo": pipeline.on_exo_image, "camera_info": pipeline.on_camera_info,
                    "ego_pose": pipeline.on_ego_pose, "exo_pose": pipeline.on_exo_pose,
                    "depth": pipeline.on_depth, "mask": pipeline.on_mask,
                    "prompt": pipeline.on_prompt}
        for connection, _, raw in reader.messages(connections=self._connections):
            msg = reader.deserialize(raw, connection.msgtype)
            yield from handlers[self._by_topic[connection.topic]](msg) or []
            self.messages_read += 1
            if self.progress is not None:
                self.progress(self.messages_read, self.total_messages)
        yield from pipeline.flush()

    def counters(self) -> dict[str, Any]:
        """What the pipeline dropped, for the summary."""
        return {"bad_inputs": dict(self.pipeline.bad_inputs),
                "unmatched": dict(self.pipeline.matcher.dropped)}


class EgoBagWriter:
    """The ego bag being written: `write(clip, output)` appends one generated clip's topics
    (log time = source exo stamp) in the order it is called, each frame once (`stream`:
    overlapping clips write only their new frames); `with` closes the bag."""

    def __init__(self, out_bag: str | Path, config: EgoxConfig, *, namespace: str = "/",
                 node_name: str = "egox") -> None:
        self.out_bag = Path(out_bag)
        self.config = config
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.factory = RosbagsFactory(self.typestore)
        self.outputs = output_topics(config, namespace, node_name)
        self.node_name = node_name
        self.quality_warn = (QualityFilter(config.clip_quality_warn, known_keys=QUALITY_KEYS)
                             if config.clip_quality_warn else None)
        self.clips = 0
        self.ego_frames = 0
        self.stream = ClipStream(keep=config.clip_length - config.clip_stride)
        self._writer: Writer | None = None

    def __enter__(self) -> "EgoBagWriter":
        writer = Writer(self.out_bag, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        self._writer = writer
        self._conns = {rel: writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                  offered_qos_profiles=[_RELIABLE])
                       for rel, (topic, msgtype) in self.outputs.items()}
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, clip: Clip, output: GeneratorOutput) -> None:
        """Write the ego topics of one generated clip, then its clip_quality message."""
        quality = self.factory.clip_quality(
            clip_quality(output, clip.stamps_ns),
            self.factory.header(int(clip.stamps_ns[0]), self.config.ego_frame_id),
            f"{self.node_name}: clip quality", self.quality_warn)
        start = self.stream.record(clip, output)  # frames before it: written already
        for rel, msg in itertools.chain(output_messages(self.factory, output, clip, self.config,
                                                        start),
                                        [("clip_quality", quality)]):
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self._writer.write(self._conns[rel], stamp,
                               self.typestore.serialize_cdr(msg, msg.__msgtype__))
        self.clips += 1
        self.ego_frames += clip.num_frames - start

    def topics(self) -> list[str]:
        """The absolute output topics."""
        return [topic for topic, _ in self.outputs.values()]


def convert_bag(in_bag: str | Path, out_bag: str | Path, config: EgoxConfig, generator: Generator,
                *, namespace: str = "/", node_name: str = "egox",
                remap: dict[str, str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                on_bad_input: Callable[[str, str, bool], None] | None = None) -> dict[str, Any]:
    """Convert `in_bag` to the ego bag `out_bag` (a new directory); returns a summary.

    Raises BagError when the bag cannot be opened or lacks a required topic.
    `progress(done, total)` is called per message read. The generator runs on each clip as
    it completes (`egox_ros.convert_ray` dispatches the same clips to a Ray cluster).
    """
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    if not in_bag.exists():
        raise BagError(f"input bag {in_bag} does not exist")
    if out_bag.exists():
        raise BagError(f"output bag {out_bag} already exists; choose a new directory")
    clips = BagClips(in_bag, config, namespace=namespace, remap=remap, progress=progress,
                     on_bad_input=on_bad_input)
    with clips:
        t_start = time.monotonic()
        with EgoBagWriter(out_bag, config, namespace=namespace, node_name=node_name) as writer:
            for clip in clips:      # with the output of frames it shares with the one before
                writer.write(clip, generator.generate(writer.stream.with_context(clip)))
    return {"clips": writer.clips, "ego_frames": writer.ego_frames,
            "messages_read": clips.messages_read, "seconds": time.monotonic() - t_start,
            **clips.counters(), "output_topics": writer.topics()}
