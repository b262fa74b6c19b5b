"""A TF tree built from /tf and /tf_static messages (`tf2_msgs/msg/TFMessage`), rclpy-free.

Conventions are tf2's: a `TransformStamped` gives the pose of `child_frame_id` in its parent
`header.frame_id`, i.e. T_parent_child, the 4x4 float64 transform mapping points in the child
frame to the parent frame. `TfBuffer.lookup(target, source, stamp_ns)` returns T_target_source
by chaining the transforms along the tree through the frames' common ancestor (up or down
either side), so `lookup(world, camera_optical_frame, t)` is the camera's c2w at t.

Time: a frame published on /tf_static holds at every stamp. One published on /tf is
interpolated between its two samples around the stamp (translation linearly, rotation by
slerp); a stamp up to `tolerance_ns` before its first or after its last sample takes that
sample; further out is refused (`TfExtrapolationError`), never extrapolated. Each frame has one
parent: a message giving a frame another parent, or moving it between /tf and /tf_static,
replaces what was known of it (the latest definition wins).

Readers are duck-typed (rclpy and rosbags messages share field names); `read_bag_tf` fills a
buffer from a bag opened with rosbags' AnyReader, `TfBuffer.from_bag` from a bag path.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from egox_model.errors import InputError
from egox_model.geometry.pose import check_unit_quaternion, pose_to_c2w, slerp
from egox_ros.errors import BagError, TfExtrapolationError, TfLookupError

__all__ = ["STATIC_TOPIC", "TF_TOPIC", "TfBuffer", "TransformLookup", "read_bag_tf"]

TF_TOPIC = "/tf"
STATIC_TOPIC = "/tf_static"


class TransformLookup(Protocol):
    """What the pipeline needs of TF: `TfBuffer` here, tf2_ros' Buffer in the node."""

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """T_target_source (4x4 float64) at `stamp_ns`; TfError when TF cannot give it."""


def _frame(name: str) -> str:
    """tf2 frame ids carry no leading '/' (bags converted from ROS 1 often do)."""
    return str(name).lstrip("/")


@dataclass
class _Link:
    """The transforms of one frame to its parent: one sample if static, else by stamp."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quats_xyzw: list[np.ndarray] = field(default_factory=list)

    def add(self, stamp_ns: int, translation: np.ndarray, quat_xyzw: np.ndarray) -> None:
        if self.static:
            self.stamps[:] = [stamp_ns]
            self.translations[:], self.quats_xyzw[:] = [translation], [quat_xyzw]
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:   # republished: replace it
            self.translations[i], self.quats_xyzw[i] = translation, quat_xyzw
            return
        self.stamps.insert(i, stamp_ns)
        self.translations.insert(i, translation)
        self.quats_xyzw.insert(i, quat_xyzw)

    def at(self, child: str, stamp_ns: int, tolerance_ns: int) -> np.ndarray:
        """T_parent_child at `stamp_ns` (4x4)."""
        stamps = self.stamps
        if self.static:
            return pose_to_c2w(self.translations[0], self.quats_xyzw[0])
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return pose_to_c2w(self.translations[i], self.quats_xyzw[i])
        if i == 0 or i == len(stamps):
            end = 0 if i == 0 else len(stamps) - 1
            outside_ns = abs(stamp_ns - stamps[end])
            if outside_ns > tolerance_ns:
                when = "before the first" if i == 0 else "after the last"
                raise TfExtrapolationError(
                    f"transform {self.parent!r} -> {child!r} is not known at stamp "
                    f"{stamp_ns} ns: /tf has it from {stamps[0]} to {stamps[-1]} ns "
                    f"({len(stamps)} samples) and the stamp is {outside_ns / 1e6:.3f} ms "
                    f"{when}; TF is not extrapolated beyond the tolerance "
                    f"({tolerance_ns / 1e6:g} ms)", may_resolve=i == len(stamps))
            return pose_to_c2w(self.translations[end], self.quats_xyzw[end])
        s0, s1 = stamps[i - 1], stamps[i]
        fraction = (stamp_ns - s0) / (s1 - s0)
        translation = self.translations[i - 1] + fraction * (self.translations[i]
                                                             - self.translations[i - 1])
        return pose_to_c2w(translation, slerp(self.quats_xyzw[i - 1], self.quats_xyzw[i],
                                              fraction))


class TfBuffer:
    """Frames and their transforms to their parents, from /tf and /tf_static messages.

    `tolerance_ns`: how far (ns) a stamp may lie outside a moving frame's samples and still
    take the nearest one. `rejected` counts transforms refused on arrival by cause
    ("bad_transform": non-finite or zero quaternion; "quaternion_not_unit"; "self_parent"),
    `last_rejection` says why the latest one was.
    """

    def __init__(self, *, tolerance_ns: int = 0) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        self.tolerance_ns = int(tolerance_ns)
        self._links: dict[str, _Link] = {}
        self.rejected: Counter[str] = Counter()
        self.last_rejection = ""

    # ---- filling ---------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, stamp_ns: int, translation_xyz: Any,
                      quat_xyzw: Any, *, static: bool) -> bool:
        """Add T_parent_child (translation in m, ROS-ordered quaternion) at `stamp_ns`.
        Returns False, counting it in `rejected`, for a transform tf2 would refuse too."""
        parent, child = _frame(parent), _frame(child)
        translation = np.asarray(translation_xyz, dtype=np.float64)
        quat = np.asarray(quat_xyzw, dtype=np.float64)
        try:
            if parent == child:
                raise InputError(f"frame {child!r} is given itself as parent")
            if not (np.all(np.isfinite(translation)) and np.linalg.norm(quat) > 1e-6):
                raise InputError(f"translation {translation.tolist()} or rotation "
                                 f"{quat.tolist()} is not finite or is zero")
            norm = check_unit_quaternion(f"transform {parent!r} -> {child!r}", quat)
        except InputError as err:
            cause = ("self_parent" if parent == child else "quaternion_not_unit"
                     if "norm" in str(err) else "bad_transform")
            self.rejected[cause] += 1
            self.last_rejection = f"{parent} -> {child} at {stamp_ns} ns: {err}"
            return False
        link = self._links.get(child)
        if link is None or link.parent != parent or link.static != static:
            link = self._links[child] = _Link(parent, static)
        link.add(int(stamp_ns), translation, quat / norm)
        return True

    def add_message(self, msg: Any, *, static: bool) -> int:
        """Add every transform of a `tf2_msgs/msg/TFMessage` (from /tf_static if `static`);
        returns how many were accepted."""
        accepted = 0
        for t in msg.transforms:
            stamp = int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec)
            tr, q = t.transform.translation, t.transform.rotation
            accepted += self.set_transform(t.header.frame_id, t.child_frame_id, stamp,
                                           (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w),
                                           static=static)
        return accepted

    @classmethod
    def from_bag(cls, bag: str | Path, *, tolerance_ns: int = 0, tf_topic: str = TF_TOPIC,
                 static_topic: str = STATIC_TOPIC) -> "TfBuffer":
        """The TF tree of a whole rosbag2 bag (MCAP or sqlite3). BagError if it cannot be
        opened or has neither topic."""
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        buffer = cls(tolerance_ns=tolerance_ns)
        try:
            reader = AnyReader([Path(bag)], default_typestore=get_typestore(Stores.ROS2_KILTED))
            reader.open()
        except Exception as err:  # noqa: BLE001 - rosbags raises several unrelated types here
            raise BagError(f"cannot open {bag} as a rosbag2 bag (MCAP or sqlite3): {err}") \
                from err
        try:
            read_bag_tf(reader, buffer, tf_topic=tf_topic, static_topic=static_topic)
        finally:
            reader.close()
        return buffer

    # ---- reading ---------------------------------------------------------------------------
    def frames(self) -> set[str]:
        """Every frame named by a transform, as child or parent."""
        return set(self._links) | {link.parent for link in self._links.values()}

    def parent(self, frame: str) -> str | None:
        """The parent of `frame` (None for a root or an unknown frame)."""
        link = self._links.get(_frame(frame))
        return None if link is None else link.parent

    def _chain(self, frame: str) -> list[str]:
        """`frame` and its ancestors up to its root."""
        chain, seen = [frame], {frame}
        while (link := self._links.get(chain[-1])) is not None:
            if link.parent in seen:
                raise TfLookupError(f"TF has a loop: {' -> '.join(chain)} -> {link.parent}")
            chain.append(link.parent)
            seen.add(link.parent)
        return chain

    def path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """The frames from `source` up to the common ancestor and from `target` up to it
        (both ending with the ancestor). TfLookupError naming the missing link if the two
        frames are not in one tree."""
        target, source = _frame(target), _frame(source)
        known = self.frames()
        for name in (target, source):
            if name not in known:
                raise TfLookupError(
                    f"no transform from {target!r} to {source!r}: frame {name!r} is in "
                    f"neither /tf nor /tf_static (frames there: {sorted(known)})",
                    may_resolve=True)
        up_source, up_target = self._chain(source), self._chain(target)
        in_target = set(up_target)
        for i, name in enumerate(up_source):
            if name in in_target:
                return up_source[:i + 1], up_target[:up_target.index(name) + 1]
        root_s, root_t = up_source[-1], up_target[-1]
        also = f" (nor has {root_t!r}, the root above {target!r})" if root_t != target else ""
        raise TfLookupError(f"no transform from {target!r} to {source!r}: {root_s!r} has no "
                            f"parent in /tf or /tf_static{also}", may_resolve=True)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """T_target_source at `stamp_ns` (4x4 float64): maps points in `source` to `target`.

        TfLookupError when the frames are not connected (naming the missing link),
        TfExtrapolationError when a moving link on the path is not known at the stamp.
        """
        up_source, up_target = self.path(target, source)
        stamp_ns = int(stamp_ns)
        return np.linalg.inv(self._to_ancestor(up_target, stamp_ns)) \
            @ self._to_ancestor(up_source, stamp_ns)

    def _to_ancestor(self, chain: list[str], stamp_ns: int) -> np.ndarray:
        """T_ancestor_frame for `chain` = [frame, parent, ..., ancestor]."""
        T = np.eye(4)
        for child in chain[:-1]:
            T = self._links[child].at(child, stamp_ns, self.tolerance_ns) @ T
        return T

    def stamp_range(self, frame: str) -> tuple[int, int] | None:
        """(first, last) stamp of a moving frame's link to its parent; None if static or
        unknown."""
        link = self._links.get(_frame(frame))
        if link is None or link.static:
            return None
        return link.stamps[0], link.stamps[-1]


def read_bag_tf(reader: Any, buffer: TfBuffer, *, tf_topic: str = TF_TOPIC,
                static_topic: str = STATIC_TOPIC) -> int:
    """Add every transform on `tf_topic` and `static_topic` of an open rosbags AnyReader to
    `buffer`; returns how many were accepted. BagError if the bag has neither topic."""
    connections = [c for c in reader.connections if c.topic in (tf_topic, static_topic)]
    if not connections:
        raise BagError(f"the bag has no {tf_topic} or {static_topic} topic to read camera "
                       f"poses from; it has {sorted({c.topic for c in reader.connections})}")
    accepted = 0
    for connection, _, raw in reader.messages(connections=connections):
        msg = reader.deserialize(raw, connection.msgtype)
        accepted += buffer.add_message(msg, static=connection.topic == static_topic)
    return accepted
