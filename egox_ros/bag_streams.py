"""What `egox export-lerobot` reads from a bag: camera stamps and frames, state/action
streams (JointState, PoseStamped, Twist(Stamped) topics, or poses from TF through
`egox_ros.tf_tree`), clip_quality scores and episode markers. rclpy-free (rosbags)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from egox_ros.errors import BagError
from egox_ros.image_conversion import compressed_to_numpy, image_to_rgb
from egox_ros.messages import quality_values
from egox_ros.tf_tree import TF_TOPIC, TfBuffer, read_bag_tf

__all__ = ["BagStreams", "IMAGE_TYPES", "QUALITY_TYPE", "VECTOR_TYPES", "VectorStream",
           "is_tf", "label", "read_bag", "read_frames"]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
VECTOR_TYPES = ("sensor_msgs/msg/JointState", "geometry_msgs/msg/PoseStamped",
                "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
QUALITY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
NS = 1_000_000_000


def is_tf(spec: str) -> bool:
    return spec.startswith("tf:")


def label(topic: str) -> str:
    return topic.strip("/").replace("/", "_")


def header_stamp(raw: bytes) -> int:
    """header.stamp of a CDR message whose first field is a std_msgs/Header."""
    fmt = "<iI" if raw[1] == 1 else ">iI"
    sec, nanosec = struct.unpack_from(fmt, raw, 4)
    return sec * NS + nanosec


@dataclass
class VectorStream:
    """One state/action topic: stamps (N,), values (N, d), names, quaternion blocks."""

    topic: str
    stamps: np.ndarray
    values: np.ndarray
    names: list[str]
    quaternions: tuple[slice, ...] = ()


def _vector_of(topic: str, msgtype: str, msgs: list[tuple[int, Any]]) -> VectorStream:
    prefix = label(topic)
    rows, names, quats = [], [], ()
    for stamp, msg in msgs:
        if msgtype == "sensor_msgs/msg/JointState":
            joint_names = [f"{prefix}.{n}" for n in msg.name]
            if names and joint_names != names:
                raise BagError(f"{topic}: joint names changed from {names} to {joint_names} "
                               "at stamp {stamp}")
            names = joint_names
            rows.append(np.asarray(msg.position, np.float64))
        elif msgtype == "geometry_msgs/msg/PoseStamped":
            p, q = msg.pose.position, msg.pose.orientation
            rows.append([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
            names = [f"{prefix}.{c}" for c in ("x", "y", "z", "qx", "qy", "qz", "qw")]
            quats = (slice(3, 7),)
        else:                                   # Twist, TwistStamped
            twist = msg.twist if msgtype.endswith("TwistStamped") else msg
            rows.append([twist.linear.x, twist.linear.y, twist.linear.z,
                         twist.angular.x, twist.angular.y, twist.angular.z])
            names = [f"{prefix}.{c}" for c in ("vx", "vy", "vz", "wx", "wy", "wz")]
    order = np.argsort([s for s, _ in msgs], kind="stable")
    values = np.asarray(rows, np.float64)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise BagError(f"{topic}: messages carry {values.shape[1:]} values, names {names}")
    return VectorStream(topic, np.asarray([msgs[i][0] for i in order], np.int64),
                        values[order], names, quats)


@dataclass
class BagStreams:
    """What the first pass read of one bag."""

    paths: list[Path]                    # read together: the bag and its --with bag
    camera_stamps: dict[str, np.ndarray]
    vectors: dict[str, VectorStream]
    clips: list[dict[str, str]]
    markers: np.ndarray
    camera_types: dict[str, str] = field(default_factory=dict)
    tf: TfBuffer | None = None                    # with tf:TARGET:SOURCE state/action
    tf_links: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # spec -> moving
    #                                               link (child frame) -> its /tf stamps

    @property
    def path(self) -> Path:
        """The bag named as the source (the first)."""
        return self.paths[0]

    @property
    def name(self) -> str:
        return " + ".join(str(p) for p in self.paths)


def read_bag(paths: list[Path], *, cameras: list[str], specs: list[str], quality_topic: str,
             quality_required: bool, marker_topic: str = "") -> BagStreams:
    """Read `paths` (one bag, or bags merged by time) for the export: the header stamps of
    the `cameras` topics, every message of the state/action `specs` (topics, or
    tf:TARGET:SOURCE), of `quality_topic` (required or not) and of `marker_topic` ('' =
    none). BagError naming the missing topic / wrong type / empty stream; TfLookupError
    naming a missing TF link."""
    wanted = {**{t: "camera" for t in cameras},
              **{t: "vector" for t in specs if not is_tf(t)}}
    optional = {} if quality_required else {quality_topic: "quality"}
    if quality_required:
        wanted[quality_topic] = "quality"
    if marker_topic:
        wanted[marker_topic] = "marker"
    typestore = get_typestore(Stores.ROS2_KILTED)
    try:
        reader = AnyReader(paths, default_typestore=typestore)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises several unrelated types here
        raise BagError(f"cannot open {' + '.join(map(str, paths))} as rosbag2 bags (MCAP or "
                       f"sqlite3): {err}") from err
    path = " + ".join(map(str, paths))
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
        missing = [f"{t} ({role})" for t, role in wanted.items() if t not in types]
        if missing:
            raise BagError(f"{path} lacks topic(s) {', '.join(missing)}; it has "
                           f"{sorted(types)}")
        expected = {"camera": IMAGE_TYPES, "vector": VECTOR_TYPES, "quality": (QUALITY_TYPE,)}
        for topic, role in wanted.items():
            if role in expected and types[topic] not in expected[role]:
                raise BagError(f"{path}: {topic} is {types[topic]}; a {role} topic must be one "
                               f"of {', '.join(expected[role])}")
        roles = {**{t: r for t, r in optional.items() if types.get(t) == QUALITY_TYPE},
                 **wanted}
        camera_stamps: dict[str, list[int]] = {t: [] for t in cameras}
        vector_msgs: dict[str, list] = {t: [] for t in specs if not is_tf(t)}
        clips, markers = [], []
        conns = [c for c in reader.connections if c.topic in roles]
        for conn, log_time, raw in reader.messages(connections=conns):
            role = roles[conn.topic]
            if role == "camera":
                camera_stamps[conn.topic].append(header_stamp(raw))
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = _stamp_or(msg, log_time)
            if role == "vector":
                vector_msgs[conn.topic].append((stamp, msg))
            elif role == "quality":
                clips.append(quality_values(msg))
            else:
                markers.append(stamp)
        tf, tf_links = _read_tf(reader, [s for s in specs if is_tf(s)])
    finally:
        reader.close()
    vectors = {t: _vector_of(t, types[t], m) for t, m in vector_msgs.items() if m}
    empty = [t for t, m in [*vector_msgs.items(), *camera_stamps.items()] if not m]
    if empty:
        raise BagError(f"{path}: no messages on {', '.join(empty)}")
    return BagStreams(paths, {t: np.sort(np.asarray(s, np.int64))
                              for t, s in camera_stamps.items()},
                      vectors, clips, np.sort(np.asarray(markers, np.int64)),
                      {t: types[t] for t in cameras}, tf, tf_links)


def _read_tf(reader: AnyReader, specs: list[str]
             ) -> tuple[TfBuffer | None, dict[str, dict[str, np.ndarray]]]:
    """The bag's TF tree (egox_ros.tf_tree) and, per tf:TARGET:SOURCE spec, the moving links
    on its path with their /tf stamps (their gaps are checked like a topic's)."""
    if not specs:
        return None, {}
    buffer = TfBuffer()
    read_bag_tf(reader, buffer)
    stamps: dict[str, list[int]] = {}
    for conn, _, raw in reader.messages(connections=[c for c in reader.connections
                                                     if c.topic == TF_TOPIC]):
        for t in reader.deserialize(raw, conn.msgtype).transforms:
            stamps.setdefault(t.child_frame_id.lstrip("/"), []).append(
                int(t.header.stamp.sec) * NS + int(t.header.stamp.nanosec))
    links = {}
    for spec in specs:
        _, target, source = spec.split(":")
        up_source, up_target = buffer.path(target, source)     # names a missing link
        moving = [f for f in up_source[:-1] + up_target[:-1] if buffer.stamp_range(f)]
        links[spec] = {f: np.sort(np.asarray(stamps[f], np.int64)) for f in moving}
    return buffer, links


def _stamp_or(msg: Any, log_time: int) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return int(log_time)
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


def read_frames(paths: list[Path], topic: str, stamps: np.ndarray, picks: np.ndarray
                ) -> Iterator[np.ndarray]:
    """RGB frames of `topic` at the stamp indices `picks` (non-decreasing, repeats allowed),
    in order, reading the bag once and decoding each picked message once."""
    wanted = stamps[picks]
    needed = set(wanted.tolist())
    store: dict[int, tuple[bytes, str]] = {}
    position = 0
    with AnyReader(paths, default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            stamp = header_stamp(raw)
            if stamp not in needed:
                continue
            store[stamp] = (raw, conn.msgtype)
            while position < len(wanted) and wanted[position] in store:
                target = int(wanted[position])
                raw_msg, msgtype = store.pop(target)
                msg = reader.deserialize(raw_msg, msgtype)
                frame = compressed_to_numpy(msg) if msgtype == IMAGE_TYPES[1] \
                    else image_to_rgb(msg)
                if frame.ndim != 3:
                    raise BagError(f"{topic}: frames must be colour images")
                while position < len(wanted) and wanted[position] == target:
                    yield frame
                    position += 1
    if position != len(wanted):
        raise BagError(f"{topic}: {len(wanted) - position} frames not found on a second read")
