"""Building and reading the few message fields egox needs, for rclpy and rosbags alike.

Readers are duck-typed (rclpy and rosbags messages share field names). Builders go through a
`MessageFactory`: `RclpyFactory` makes rclpy messages for the node, `RosbagsFactory` makes
typestore messages for `egox convert`. Both build the same content.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from egox_model.geometry.camera import Intrinsics
from egox_model.errors import InputError
from egox_model.geometry.pose import QUATERNION_TOLERANCE, check_unit_quaternion, pose_to_c2w
from egox_ros.errors import MessageError
from egox_ros.image_conversion import numpy_to_image

__all__ = ["MessageFactory", "RclpyFactory", "RosbagsFactory", "pose_msg_to_c2w", "stamp_ns"]


def stamp_ns(header: Any) -> int:
    """header.stamp as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def pose_msg_to_c2w(msg: Any, quat_tol: float = QUATERNION_TOLERANCE) -> np.ndarray:
    """4x4 c2w of a PoseStamped, Odometry or Pose.

    MessageError("bad_pose") if a value is not finite or the quaternion is zero;
    MessageError("quaternion_not_unit") if its norm differs from 1 by more than `quat_tol`
    (the pose is rejected, as tf2 rejects such transforms; within the tolerance it is
    normalised).
    """
    pose = msg
    if hasattr(pose, "pose"):          # PoseStamped.pose, Odometry.pose (PoseWithCovariance)
        pose = pose.pose
    if hasattr(pose, "pose"):
        pose = pose.pose
    p, q = pose.position, pose.orientation
    values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
    if not all(math.isfinite(v) for v in values):
        raise MessageError("bad_pose", f"pose has non-finite values {values}")
    if math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w) < 1e-6:
        raise MessageError("bad_pose", "pose orientation quaternion has zero norm")
    try:
        check_unit_quaternion("pose orientation", np.array(values[3:]), quat_tol)
    except InputError as err:
        raise MessageError("quaternion_not_unit", str(err)) from err
    return pose_to_c2w(np.array(values[:3]), np.array(values[3:]))


def _camera_info_fields(K: Intrinsics) -> dict[str, Any]:
    k = K.K
    p = np.zeros((3, 4))
    p[:, :3] = k
    return {"height": K.height, "width": K.width, "distortion_model": "plumb_bob",
            "d": np.zeros(5), "k": k.reshape(-1), "r": np.eye(3).reshape(-1),
            "p": p.reshape(-1)}


class MessageFactory:
    """Header / image / camera_info builders over one set of message classes, which a
    subclass provides as `_time`, `_header`, `_image` and `_info`."""

    _time: Any
    _header: Any
    _image: Any
    _info: Any

    def header(self, stamp: int, frame_id: str) -> Any:
        """std_msgs/Header at `stamp` ns."""
        sec, nanosec = divmod(int(stamp), 1_000_000_000)
        return self._header(stamp=self._time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def image(self, pixels: np.ndarray, encoding: str, header: Any) -> Any:
        """sensor_msgs/Image."""
        return numpy_to_image(pixels, encoding, header, msg_type=self._image)

    def camera_info(self, K: Intrinsics, header: Any) -> Any:
        """sensor_msgs/CameraInfo of an undistorted pinhole camera K."""
        raise NotImplementedError


class RclpyFactory(MessageFactory):
    """rclpy message classes."""

    def __init__(self) -> None:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header
        self._time, self._header, self._image, self._info = Time, Header, Image, CameraInfo

    def camera_info(self, K: Intrinsics, header: Any) -> Any:
        f = _camera_info_fields(K)
        msg = self._info(header=header, height=f["height"], width=f["width"],
                         distortion_model=f["distortion_model"])
        msg.d = f["d"].tolist()
        msg.k, msg.r, msg.p = f["k"], f["r"], f["p"]
        return msg


class RosbagsFactory(MessageFactory):
    """rosbags typestore message classes (for writing bags directly)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore
        types = typestore.types
        self._time = types["builtin_interfaces/msg/Time"]
        self._header = types["std_msgs/msg/Header"]
        self._image = types["sensor_msgs/msg/Image"]
        self._info = types["sensor_msgs/msg/CameraInfo"]
        self._roi = types["sensor_msgs/msg/RegionOfInterest"]

    def camera_info(self, K: Intrinsics, header: Any) -> Any:
        f = _camera_info_fields(K)
        return self._info(header=header, height=f["height"], width=f["width"],
                          distortion_model=f["distortion_model"], d=f["d"], k=f["k"],
                          r=f["r"], p=f["p"], binning_x=0, binning_y=0,
                          roi=self._roi(x_offset=0, y_offset=0, height=0, width=0,
                                        do_rectify=False))
