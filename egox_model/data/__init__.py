"""Paired exo/ego clips for training and evaluation: the format, its reader and writers.

Modules: `format` (the on-disk format, `PairedClip`, splits), `synthetic` (clips of the
synthetic room), `official` (the official EgoX release's meta.json), `undistort` (fisheye /
plumb-bob views to pinhole). The rosbag writer is `egox_ros.paired_from_bag` (it reads ROS
messages).
"""
from egox_model.data.format import (FORMAT, VERSION, PairedClip, add_to_split, clip_dirs,
                                    read_paired_clip, read_splits, write_paired_clip,
                                    write_splits)

__all__ = ["FORMAT", "VERSION", "PairedClip", "add_to_split", "clip_dirs", "read_paired_clip",
           "read_splits", "write_paired_clip", "write_splits"]
