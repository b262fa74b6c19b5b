"""Paired training clips from rosbags that hold the exo topics egox reads plus a real ego
camera (a head camera worn once gives pairs): `write_paired_from_bag`.

The exo side is read exactly as `egox convert` reads it (`BagClips`: the same `EgoxConfig`,
topics relative to `namespace`, remaps, clip length / stride, depth, masks, poses), so each
paired clip is one clip the node would generate. The ego side comes from `ego_image_topic`
(Image, any colour encoding) and its `ego_info_topic` (CameraInfo; fisheye `equidistant` and
plumb-bob views are undistorted to the pinhole `rectified` camera): for every exo frame the
ego image whose header stamp is nearest, within `max_gap_ns`. The ego camera's pose per frame
is the clip's `ego/pose` (the optical frame of that real camera). rclpy-free.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from egox_model.data.format import PairedClip, add_to_split, write_paired_clip
from egox_model.data.undistort import undistort_frames
from egox_model.geometry.camera import CameraModel
from egox_ros.convert import BagClips
from egox_ros.errors import BagError
from egox_ros.image_conversion import image_to_rgb
from egox_ros.messages import stamp_ns
from egox_ros.params import EgoxConfig

__all__ = ["write_paired_from_bag"]


class _EgoCamera:
    """The real ego camera of a bag: its CameraModel and images looked up by header stamp."""

    def __init__(self, in_bag: Path, image_topic: str, info_topic: str) -> None:
        self.reader = AnyReader([in_bag], default_typestore=get_typestore(Stores.ROS2_KILTED))
        self.reader.open()
        by_topic = {c.topic: c for c in self.reader.connections}
        missing = [t for t in (image_topic, info_topic) if t not in by_topic]
        if missing:
            self.reader.close()
            raise BagError(f"{in_bag} lacks the ego camera topic(s) {missing}; it has "
                           f"{sorted(by_topic)} (set ego_image_topic / ego_info_topic)")
        self.image_conn, info_conn = by_topic[image_topic], by_topic[info_topic]
        for conn, _, raw in self.reader.messages(connections=[info_conn]):
            msg = self.reader.deserialize(raw, conn.msgtype)
            self.camera = CameraModel.from_camera_info(
                width=int(msg.width), height=int(msg.height), K=msg.k, D=msg.d, P=msg.p,
                distortion_model=str(msg.distortion_model))
            break
        else:
            self.reader.close()
            raise BagError(f"{in_bag}: {info_topic} has no message")

    def frames(self, stamps_ns: np.ndarray, max_gap_ns: int) -> np.ndarray | None:
        """Ego RGB (F, H, W, 3) at the nearest header stamps (log times searched within
        max_gap_ns of the clip), or None when some stamp has no image close enough."""
        found: dict[int, np.ndarray] = {}
        start, stop = int(stamps_ns[0]) - max_gap_ns, int(stamps_ns[-1]) + max_gap_ns + 1
        for conn, _, raw in self.reader.messages(connections=[self.image_conn], start=start,
                                                 stop=stop):
            msg = self.reader.deserialize(raw, conn.msgtype)
            found[stamp_ns(msg.header)] = image_to_rgb(msg)
        if not found:
            return None
        keys = np.array(sorted(found))
        nearest = keys[np.abs(keys[None] - stamps_ns[:, None]).argmin(axis=1)]
        if np.abs(nearest - stamps_ns).max() > max_gap_ns:
            return None
        return np.stack([found[int(k)] for k in nearest])

    def close(self) -> None:
        self.reader.close()


def write_paired_from_bag(in_bag: str | Path, out_root: str | Path, config: EgoxConfig, *,
                          ego_image_topic: str = "/ego/image_raw",
                          ego_info_topic: str = "/ego/camera_info", namespace: str = "/",
                          remap: dict[str, str] | None = None, name_prefix: str = "",
                          max_gap_ns: int = 20_000_000, split: str = "train") -> dict:
    """Write every clip of `in_bag` that has ego images at all its stamps as a paired clip
    OUT_ROOT/clips/<prefix>_<index> (prefix: the bag's name) and add them to `split` of
    OUT_ROOT/splits.json. Returns {"clips": names, "skipped": clip indices without ego
    images, "ego_camera": distortion model}."""
    in_bag, out_root = Path(in_bag), Path(out_root)
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", name_prefix or in_bag.name)
    names, skipped = [], []
    ego = _EgoCamera(in_bag, ego_image_topic, ego_info_topic)
    try:
        with BagClips(in_bag, config, namespace=namespace, remap=remap) as clips:
            for index, clip in enumerate(clips):
                frames = ego.frames(clip.stamps_ns, max_gap_ns)
                if frames is None:
                    skipped.append(index)
                    continue
                ego_rgb, ego_K = undistort_frames(ego.camera, frames)
                paired = PairedClip(
                    name=f"{prefix}_{index:05d}",
                    clip=dataclasses.replace(clip, ego_K=ego_K, context=None),
                    ego_rgb=ego_rgb,
                    source={"kind": "rosbag", "bag": str(in_bag), "clip": index,
                            "ego_image_topic": ego_image_topic})
                write_paired_clip(out_root / "clips" / paired.name, paired)
                names.append(paired.name)
    finally:
        ego.close()
    add_to_split(out_root, split, names)
    return {"clips": names, "skipped": skipped,
            "ego_camera": ego.camera.distortion_model or "pinhole"}
