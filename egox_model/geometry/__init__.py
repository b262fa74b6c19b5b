"""Cameras, poses, depth fusion, point clouds, the ego-prior renderer and GGA token geometry."""
from egox_model.geometry.camera import CameraModel, Intrinsics
from egox_model.geometry.pose import c2w_to_pose, check_c2w, look_at, pose_to_c2w

__all__ = ["CameraModel", "Intrinsics", "c2w_to_pose", "check_c2w", "look_at", "pose_to_c2w"]
