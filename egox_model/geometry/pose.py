"""Camera poses: camera-to-world 4x4 float64 matrices ("c2w") in one world frame.

Quaternions: ROS messages order them (x, y, z, w); transforms3d orders them (w, x, y, z).
`pose_to_c2w` / `c2w_to_pose` are the only places that convert, and they take ROS order.
"""
from __future__ import annotations

import numpy as np
import transforms3d

from egox_model.errors import InputError
from egox_model.validation import require_finite, require_shape

__all__ = ["QUATERNION_TOLERANCE", "c2w_to_pose", "camera_centers", "check_c2w",
           "check_unit_quaternion", "look_at", "pose_to_c2w", "slerp"]

#: Largest |norm - 1| of an orientation quaternion taken as a unit one (float32 round-off and
#: printed poses stay well inside; tf2 ignores transforms beyond a similar bound).
QUATERNION_TOLERANCE = 1e-3


def pose_to_c2w(position_xyz: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 c2w from a position (m) and a ROS-ordered quaternion (x, y, z, w).

    The quaternion is normalised; a zero or non-finite one raises InputError.
    """
    position_xyz = np.asarray(position_xyz, dtype=np.float64)
    quat_xyzw = np.asarray(quat_xyzw, dtype=np.float64)
    require_shape("position", position_xyz, (3,))
    require_shape("orientation", quat_xyzw, (4,))
    require_finite("position", position_xyz)
    require_finite("orientation", quat_xyzw)
    norm = np.linalg.norm(quat_xyzw)
    if norm < 1e-9:
        raise InputError("orientation quaternion has zero norm")
    x, y, z, w = quat_xyzw / norm
    c2w = np.eye(4)
    c2w[:3, :3] = transforms3d.quaternions.quat2mat((w, x, y, z))
    c2w[:3, 3] = position_xyz
    return c2w


def check_unit_quaternion(name: str, quat_xyzw: np.ndarray,
                          tol: float = QUATERNION_TOLERANCE) -> float:
    """Return the norm of a finite quaternion; InputError naming `name` and the norm when it
    differs from 1 by more than `tol` (a pose source that does not normalise is a bug there:
    rescaling would hide it)."""
    quat_xyzw = np.asarray(quat_xyzw, dtype=np.float64)
    require_finite(name, quat_xyzw)
    norm = float(np.linalg.norm(quat_xyzw))
    if abs(norm - 1.0) > tol:
        raise InputError(f"{name} quaternion {quat_xyzw.tolist()} has norm {norm:.6g}, not 1 "
                         f"(tolerance {tol:g}); publish normalised quaternions")
    return norm


def c2w_to_pose(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `pose_to_c2w`: (position_xyz, quat_xyzw) with w >= 0."""
    check_c2w("c2w", c2w)
    w, x, y, z = transforms3d.quaternions.mat2quat(c2w[:3, :3])
    quat = np.array([x, y, z, w])
    return c2w[:3, 3].copy(), quat if w >= 0 else -quat


def slerp(q0_xyzw: np.ndarray, q1_xyzw: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical linear interpolation of two rotations given as ROS-ordered quaternions
    (x, y, z, w): `fraction` 0 gives q0, 1 gives q1, in between the rotation a constant angular
    rate reaches at that fraction of the way, along the shorter arc. Returns a unit quaternion.
    """
    q0 = np.asarray(q0_xyzw, dtype=np.float64)
    q1 = np.asarray(q1_xyzw, dtype=np.float64)
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    cos_angle = float(np.dot(q0, q1))
    if cos_angle < 0.0:                  # q and -q are the same rotation: take the shorter arc
        q1, cos_angle = -q1, -cos_angle
    if cos_angle > 1.0 - 1e-12:          # (nearly) the same rotation: sin(angle) ~ 0
        q = q0 + fraction * (q1 - q0)
    else:
        angle = np.arccos(cos_angle)
        q = (np.sin((1.0 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) \
            / np.sin(angle)
    return q / np.linalg.norm(q)


def check_c2w(name: str, c2w: np.ndarray, atol: float = 1e-4) -> np.ndarray:
    """Validate one (4x4) or many (..., 4, 4) rigid camera-to-world transforms."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[-2:] != (4, 4):
        raise InputError(f"{name} must be ...x4x4 camera-to-world matrices, got {c2w.shape}")
    require_finite(name, c2w)
    R = c2w[..., :3, :3]
    should_be_eye = R @ np.swapaxes(R, -1, -2)
    if not np.allclose(should_be_eye, np.eye(3), atol=atol) or np.any(np.linalg.det(R) < 0):
        raise InputError(f"{name} rotation part is not a proper rotation matrix")
    if not np.allclose(c2w[..., 3, :], [0.0, 0.0, 0.0, 1.0]):
        raise InputError(f"{name} last row must be [0, 0, 0, 1]")
    return c2w


def camera_centers(c2w: np.ndarray) -> np.ndarray:
    """Camera centres in world coordinates (m), shape (..., 3)."""
    return np.asarray(c2w)[..., :3, 3]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w of an optical-frame camera (z forward, y down) at `eye` looking at `target`.

    `up` is the world's up direction (REP 103 world: z up).
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise InputError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise InputError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w
