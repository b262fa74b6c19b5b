"""`egox_recorder` / `egox record`: write chosen topics to a rosbag2 MCAP bag with rosbags.

rosbag2_py is not on PyPI, so this is a small recorder of its own: it subscribes to each
topic in serialized form (no deserialize/serialize round trip), writes the CDR bytes with
`rosbags.rosbag2.Writer` (bag version 9, MCAP storage, typestore ROS2_KILTED), stores the
publishers' offered QoS in the metadata, and uses the message's header stamp as log time
(receive time for messages without a header). Topics are picked up when discovered; the bag
is closed cleanly on shutdown.

Crash safety: rosbags' MCAP writer keeps the open chunk (up to 1 MiB of messages, and the
schema and channel records of new topics) in memory and writes the file through a buffer, so
a recorder killed with SIGKILL lost everything since the last full chunk (measured: 0 bytes on
disk after 3 s of a 30 fps 64x48 image + pose stream, 3.7 s of messages at most later). A
timer now closes the open chunk and flushes the file every `flush_period_s` (default 1 s):
what a crash loses is bounded by that period. The file then lacks only its summary, footer
and metadata.yaml; `egox bag repair` (egox_ros/bag_repair.py) rebuilds them. The flush hands
the bytes to the operating system, which keeps them when the process dies; it does not fsync
(a power cut may still lose what the OS had not written yet).
"""
from __future__ import annotations

import importlib
import math
import struct
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import rclpy.logging
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                       ReliabilityPolicy)
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from egox_model.errors import ConfigError
from egox_ros.spin import spin_node

__all__ = ["BagRecorder", "main"]

_TYPESTORE = None


def typestore():
    """The shared ROS 2 Kilted typestore."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def _message_class(type_name: str) -> Any:
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _qos_time(duration: Any) -> QosTime:
    ns = int(getattr(duration, "nanoseconds", 0))
    if ns <= 0 or ns >= 2**63 - 1:
        return QosTime(0, 0)                  # "infinite / unspecified", as rosbag2 stores it
    return QosTime(*divmod(ns, 1_000_000_000))


def rosbags_qos(profile: QoSProfile) -> Qos:
    """rclpy QoSProfile -> rosbags Qos (offered_qos_profiles metadata)."""
    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)),
               deadline=_qos_time(profile.deadline), lifespan=_qos_time(profile.lifespan),
               liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


class BagRecorder(Node):
    """Records `topics` (absolute names) to the MCAP bag directory `bag_path`.

    Both come from the arguments or, overriding them, the parameters `bag_path` and
    `topics`. The bag directory must not exist yet (rosbags refuses to overwrite); a missing
    or existing `bag_path` and missing or relative topic names raise ConfigError.
    `flush_period_s` (also a parameter) is how often, in seconds, the open chunk is written
    and the file flushed, i.e. at most how much a crash of the process loses; 0 leaves it
    to rosbags (a chunk is written when it reaches 1 MiB).
    """

    def __init__(self, bag_path: str | Path | None = None, topics: Sequence[str] | None = None,
                 *, node_name: str = "egox_recorder", discovery_period_s: float = 0.1,
                 flush_period_s: float = 1.0, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        # Everything close() needs exists before anything below can raise: a node that
        # failed half-way is still destroyed (by its caller or the context's shutdown).
        self.writer: Writer | None = None
        self.counts: dict[str, int] = {}
        self._connections: dict[str, Any] = {}
        self._topic_subs: dict[str, Any] = {}
        self._stamp_in_header: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._closed = False
        bag_path = self.declare_parameter("bag_path", str(bag_path or "")).value
        topics = self.declare_parameter("topics", list(topics or [""])).value
        self.flush_period_s = self.declare_parameter(
            "flush_period_s", float(flush_period_s), ParameterDescriptor(
                description="seconds between writes of the open chunk to the file: at most "
                            "what a crash loses (0: only when a 1 MiB chunk is full)")).value
        self.topics = [t for t in topics or [] if t]        # `-p topics:=[]` reads as None
        self.bag_path = Path(bag_path)
        _check_parameters(bag_path, self.topics, self.flush_period_s)
        self.writer = _open_writer(self.bag_path)
        self._timer = self.create_timer(discovery_period_s, self._discover)
        self._flush_timer = (self.create_timer(self.flush_period_s, self.flush)
                             if self.flush_period_s > 0 else None)
        self._discover()

    def _discover(self) -> None:
        if self._closed:
            return
        known = dict(self.get_topic_names_and_types())
        for topic in self.topics:
            if topic in self._connections or topic not in known:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            self._subscribe(topic, known[topic][0], [i.qos_profile for i in infos])

    def _subscribe(self, topic: str, type_name: str, offered: list[QoSProfile]) -> None:
        store = typestore()
        fields = store.fielddefs[type_name][1] if type_name in store.fielddefs else []
        self._stamp_in_header[topic] = bool(fields) and fields[0][0] == "header"
        with self._lock:
            self._connections[topic] = self.writer.add_connection(
                topic, type_name, typestore=store,
                offered_qos_profiles=[rosbags_qos(q) for q in offered])
            self.counts[topic] = 0
        reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        transient = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500,
                         reliability=(ReliabilityPolicy.RELIABLE if reliable
                                      else ReliabilityPolicy.BEST_EFFORT),
                         durability=(DurabilityPolicy.TRANSIENT_LOCAL if transient
                                     else DurabilityPolicy.VOLATILE),
                         liveliness=LivelinessPolicy.AUTOMATIC)
        self._topic_subs[topic] = self.create_subscription(
            _message_class(type_name), topic, lambda data, t=topic: self._write(t, data), qos,
            raw=True)
        self.get_logger().info(f"recording {topic} [{type_name}]")

    def _log_time(self, topic: str, data: bytes) -> int:
        if self._stamp_in_header.get(topic) and len(data) >= 12:
            fmt = "<iI" if data[1] == 1 else ">iI"      # CDR encapsulation: 1 = little endian
            sec, nanosec = struct.unpack_from(fmt, data, 4)
            return sec * 1_000_000_000 + nanosec
        return self.get_clock().now().nanoseconds

    def _write(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self.writer.write(self._connections[topic], self._log_time(topic, data), data)
            self.counts[topic] += 1

    def flush(self) -> None:
        """Write the open chunk (if it holds messages) and flush the file to the OS.

        Afterwards every message written so far survives a crash of this process (the file
        then needs `egox bag repair`). Called by the timer every `flush_period_s`.
        """
        with self._lock:
            if self._closed or self.writer is None:
                return
            storage = self.writer.storage
            if storage.chunk.msgs:               # rosbags' McapWriter (checked in _open_writer)
                storage.close_chunk()
            storage.bio.flush()

    @property
    def subscribed(self) -> int:
        """Topics discovered and subscribed so far."""
        with self._lock:
            return len(self._connections)

    def matched(self) -> bool:
        """True when every topic is subscribed and matched with at least one publisher."""
        with self._lock:
            subs = dict(self._topic_subs)
        return len(subs) == len(self.topics) and all(
            s.get_publisher_count() > 0 for s in subs.values())

    @property
    def total(self) -> int:
        """Messages written so far."""
        with self._lock:
            return sum(self.counts.values())

    def wait_for(self, topic: str, count: int, timeout: float) -> bool:
        """Wait (without spinning: another thread spins) until `count` messages of `topic`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counts.get(topic, 0) >= count:
                return True
            time.sleep(0.02)
        return self.counts.get(topic, 0) >= count

    def close(self) -> None:
        """Flush and close the bag (idempotent); later messages are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.writer is None:                  # __init__ failed before opening it
                return
            self.writer.close()
        # After SIGINT the context is already shut down; the node's logger would also try
        # /rosout and print "Failed to publish log message to rosout".
        logger = (self.get_logger() if self.context.ok()
                  else rclpy.logging.get_logger(f"{self.get_logger().name}.bag"))
        logger.info(f"bag closed: {self.bag_path} ({sum(self.counts.values())} messages)")

    def destroy_node(self) -> None:
        """Close the bag, then destroy the node."""
        self.close()
        super().destroy_node()


_EXAMPLE = 'e.g. --ros-args -p bag_path:=run1_bag -p topics:="[/exo/image_raw, /ego/pose]"'


def _check_parameters(bag_path: str, topics: list[str], flush_period_s: float = 1.0) -> None:
    """ConfigError naming every missing or wrong one of bag_path, topics and flush_period_s."""
    problems = []
    if not (math.isfinite(flush_period_s) and flush_period_s >= 0):
        problems.append(f"parameter flush_period_s={flush_period_s!r}: must be a number of "
                        "seconds >= 0, e.g. 1.0 (0: flush only full 1 MiB chunks)")
    if not bag_path:
        problems.append(f"parameter bag_path={bag_path!r}: set it to a new directory for the "
                        "bag")
    if not topics:
        problems.append(f"parameter topics={topics!r}: list the absolute names of the topics "
                        "to record")
    relative = [t for t in topics if not t.startswith("/")]
    if relative:
        problems.append(f"parameter topics={topics!r}: {relative} are not absolute topic "
                        "names; start each with /")
    if not bag_path or not topics:                   # only egox_recorder leaves them unset
        problems[-1] += f" ({_EXAMPLE})"
    if problems:
        raise ConfigError("; ".join(problems))


def _open_writer(path: Path) -> Writer:
    """An open MCAP Writer on the new directory `path`; ConfigError when it cannot be."""
    if path.exists():                            # rosbags refuses to overwrite
        raise ConfigError(f"parameter bag_path={str(path)!r}: {path} already exists; a bag "
                          "goes into a new directory: choose another path or remove it")
    try:
        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
    except (WriterError, OSError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ConfigError(f"parameter bag_path={str(path)!r}: cannot create the bag: "
                          f"{reason}") from err
    storage = writer.storage
    if not all(hasattr(storage, name) for name in ("chunk", "close_chunk", "bio")):
        writer.abort()
        raise RuntimeError(f"{type(storage).__name__} of this rosbags version has no chunk/"
                           "close_chunk/bio, which BagRecorder.flush uses; install the pinned "
                           "version: pip install rosbags==0.11.9")
    return writer


def main(args: list[str] | None = None) -> None:
    """`egox_recorder --ros-args -p bag_path:=DIR -p topics:="[/a, /b]"`."""
    spin_node(BagRecorder, "egox_recorder", args)


if __name__ == "__main__":
    main()
