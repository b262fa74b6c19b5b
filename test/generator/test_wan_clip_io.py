"""Files for `egox generate`: camera / trajectory JSON and NPZ, depth NPZ, exo video -> Clip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from egox_model.clip_io import load_clip, read_camera, read_depth, write_camera
from egox_model.errors import InputError
from egox_model.geometry.camera import CameraModel, Intrinsics
from egox_model.geometry.pose import c2w_to_pose, look_at
from egox_model.video import write_video

K = Intrinsics(40.0, 41.0, 23.5, 15.5, 48, 32)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_camera_round_trip(tmp_path, suffix):
    c2w = np.stack([look_at([0.1 * i, -2.0, 1.0], [0.0, 0.0, 0.5]) for i in range(3)])
    path = write_camera(tmp_path / f"cam{suffix}", CameraModel(K), c2w)
    track = read_camera(path)
    assert track.camera.rectified == K
    np.testing.assert_allclose(track.c2w, c2w, atol=1e-12)
    np.testing.assert_allclose(track.for_frames(2, "ego"), c2w[:2])
    with pytest.raises(InputError, match="has 3 poses but the video has 5 frames"):
        track.for_frames(5, "ego")


def test_json_poses_in_ros_order_and_static_camera(tmp_path):
    c2w = look_at([1.0, -2.0, 1.5], [0.0, 0.0, 0.5])
    position, quat_xyzw = c2w_to_pose(c2w)
    path = tmp_path / "exo.json"
    path.write_text(json.dumps({"width": 48, "height": 32, "K": K.K.tolist(),
                                "poses": [{"position": position.tolist(),
                                           "orientation": quat_xyzw.tolist()}]}))
    track = read_camera(path)
    np.testing.assert_allclose(track.for_frames(4, "exo"), np.repeat(c2w[None], 4, 0), atol=1e-9)


@pytest.mark.parametrize("content, message", [
    ({"width": 48, "height": 32}, "lacks 'K'"),
    ({"width": 48, "height": 32, "K": K.K.tolist()}, "needs 'c2w'"),
    ({"width": 48, "height": 32, "K": [0] * 9, "c2w": np.eye(4).tolist()}, "uncalibrated"),
    ({"width": 48, "height": 32, "K": K.K.tolist(), "c2w": (2 * np.eye(4)).tolist()},
     "not a proper rotation"),
])
def test_bad_camera_files(tmp_path, content, message):
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        read_camera(path)


def test_load_clip_from_files(tmp_path):
    frames = 5
    ramp = (np.linspace(0, 255, 48)[None, None, :, None]
            + 20 * np.arange(frames)[:, None, None, None])
    video = np.broadcast_to(np.clip(ramp, 0, 255), (frames, 32, 48, 3)).astype(np.uint8)
    write_video(tmp_path / "exo.mp4", video, fps=30.0)
    write_camera(tmp_path / "exo.json", CameraModel(K), look_at([0, -2, 1], [0, 0, 0.5]))
    ego_K = Intrinsics(30.0, 30.0, 15.5, 15.5, 32, 32)
    ego = np.stack([look_at([0.1 * i, -1, 1], [0, 0, 0.5]) for i in range(frames + 2)])
    write_camera(tmp_path / "ego.npz", CameraModel(ego_K), ego)
    depth = np.full((frames, 32, 48), 2.0, np.float32)
    np.savez(tmp_path / "depth.npz", depth_m=depth, dynamic_mask=np.zeros_like(depth, bool))
    clip = load_clip(tmp_path / "exo.mp4", tmp_path / "exo.json", tmp_path / "ego.npz",
                     tmp_path / "depth.npz", prompt="a cup")
    assert clip.num_frames == frames and clip.exo_rgb.shape == (frames, 32, 48, 3)
    assert clip.ego_K == ego_K and clip.fps == 30.0 and clip.prompt == "a cup"
    np.testing.assert_array_equal(clip.stamps_ns, np.round(np.arange(5) * 1e9 / 30))
    np.testing.assert_allclose(clip.ego_c2w, ego[:frames])
    np.testing.assert_array_equal(clip.exo_depth_m, depth)
    assert clip.dynamic_mask.dtype == bool and not clip.dynamic_mask.any()
    assert np.abs(clip.exo_rgb.astype(int) - video).mean() < 4  # lossy H.264, same frames


def test_bad_depth_file(tmp_path):
    np.savez(tmp_path / "d.npz", depth=np.zeros((1, 2, 2)))
    with pytest.raises(InputError, match=r"unknown arrays \['depth'\]"):
        read_depth(tmp_path / "d.npz")
    with pytest.raises(InputError, match="must be an existing .npz"):
        read_depth(tmp_path / "missing.npz")
