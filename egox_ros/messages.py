"""Building and reading the few message fields egox needs, for rclpy and rosbags alike.

Readers are duck-typed (rclpy and rosbags messages share field names). Builders go through a
`MessageFactory`: `RclpyFactory` makes rclpy messages for the node, `RosbagsFactory` makes
typestore messages for `egox convert`. Both build the same content.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from egox_model.geometry.camera import Intrinsics
from egox_model.errors import InputError
from egox_model.quality_filter import QualityFilter
from egox_model.geometry.pose import QUATERNION_TOLERANCE, check_unit_quaternion, pose_to_c2w
from egox_ros.errors import MessageError
from egox_ros.image_conversion import numpy_to_image

if TYPE_CHECKING:       # only a type here; importing it loads torch (the player needs none)
    from egox_model.quality import ClipQuality

__all__ = ["CLIP_QUALITY_TYPE", "MessageFactory", "RclpyFactory", "RosbagsFactory",
           "pose_msg_to_c2w", "quality_values", "stamp_ns"]

#: The message type of ~/clip_quality (one DiagnosticStatus per clip, header = first stamp).
CLIP_QUALITY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


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


def quality_values(msg: Any) -> dict[str, str]:
    """The key/values of a clip_quality DiagnosticArray's status (rclpy or rosbags)."""
    if len(msg.status) != 1:
        raise MessageError("bad_clip_quality", f"a clip_quality message holds one status, "
                           f"this one {len(msg.status)}")
    return {str(kv.key): str(kv.value) for kv in msg.status[0].values}


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
    _diagnostic_array: Any
    _diagnostic_status: Any
    _key_value: Any

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

    def clip_quality(self, quality: ClipQuality, header: Any, name: str,
                     warn_below: QualityFilter | None = None) -> Any:
        """diagnostic_msgs/DiagnosticArray holding one DiagnosticStatus `name` for a clip:
        hardware_id = backend, key/values = `quality.values()` (floats as Python writes
        them: inf, nan), level WARN when the prior covers nothing or the scores fail
        `warn_below` (the clip_quality_warn parameter), else OK (also when the backend sent
        no prior: its scores are nan)."""
        status_type = self._diagnostic_status
        scores = quality.values()
        values = [self._key_value(key=key, value=str(value)) for key, value in scores.items()]
        message = (f"prior PSNR {quality.prior_psnr_db:.1f} dB, coverage "
                   f"{quality.prior_coverage:.2f}, flicker {quality.flicker:.2f}")
        level = status_type.OK
        if math.isnan(quality.prior_coverage):
            message = "the backend returned no prior (remote.return_prior false): prior scores nan"
        elif not quality.prior_coverage > 0:
            level, message = status_type.WARN, "the ego prior covers no pixel of this clip"
        elif warn_below is not None and not warn_below(scores):
            level, message = status_type.WARN, f"fails {warn_below.text!r}: {message}"
        status = status_type(level=level, name=name, message=message,
                             hardware_id=quality.backend, values=values)
        return self._diagnostic_array(header=header, status=[status])


class RclpyFactory(MessageFactory):
    """rclpy message classes."""

    def __init__(self) -> None:
        from builtin_interfaces.msg import Time
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header
        self._time, self._header, self._image, self._info = Time, Header, Image, CameraInfo
        self._diagnostic_array, self._diagnostic_status = DiagnosticArray, DiagnosticStatus
        self._key_value = KeyValue

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
        self._diagnostic_array = types[CLIP_QUALITY_TYPE]
        self._diagnostic_status = types["diagnostic_msgs/msg/DiagnosticStatus"]
        self._key_value = types["diagnostic_msgs/msg/KeyValue"]

    def camera_info(self, K: Intrinsics, header: Any) -> Any:
        f = _camera_info_fields(K)
        return self._info(header=header, height=f["height"], width=f["width"],
                          distortion_model=f["distortion_model"], d=f["d"], k=f["k"],
                          r=f["r"], p=f["p"], binning_x=0, binning_y=0,
                          roi=self._roi(x_offset=0, y_offset=0, height=0, width=0,
                                        do_rectify=False))
