"""Paired clips from a rosbag with the exo topics and a real fisheye ego camera: the clips
BagClips cuts, with the ego images at their stamps undistorted to pinhole; clips without
ego images skipped. The bag is written with rosbags, the scene is the synthetic room."""
import numpy as np
import pytest
from exo_bags import TYPESTORE, write_exo_bag
from test_undistort import distort

from egox_model.config import from_flat
from egox_model.data import read_paired_clip, read_splits
from egox_model.geometry.pose import c2w_to_pose
from egox_model.scene import SceneConfig, render_scene
from egox_ros.errors import BagError
from egox_ros.messages import RosbagsFactory
from egox_ros.paired_from_bag import write_paired_from_bag
from egox_ros.params import EgoxConfig

D = np.array([0.08, -0.02, 0.004, -0.001])


def _camera_info(f, K, header, D=(), model=""):
    msg = f.camera_info(K, header)
    msg.d = np.asarray(D, dtype=np.float64)
    msg.distortion_model = model
    return msg


def _write_bag(path, scene, ego_frames):
    """The exo bag plus a fisheye head camera: /ego/camera_info once, /ego/image_raw (bgr8)
    at `ego_frames`, its clock 3 ms off the exo camera's."""
    f = RosbagsFactory(TYPESTORE)

    def ego_messages(i, stamp, header):
        msgs = {}
        if i == 0:
            msgs["/ego/camera_info"] = _camera_info(f, scene.ego_K, header, D, "equidistant")
        if i in ego_frames:
            bgr = distort(scene.ego_rgb[i], scene.ego_K.K, D, "equidistant")[..., ::-1].copy()
            msgs["/ego/image_raw"] = f.image(bgr, "bgr8", f.header(stamp + 3_000_000, "ego"))
        return msgs

    write_exo_bag(path, scene, extra_topics={"/ego/image_raw": "sensor_msgs/msg/Image",
                                             "/ego/camera_info": "sensor_msgs/msg/CameraInfo"},
                  extra=ego_messages)


@pytest.fixture(scope="module")
def scene():
    return render_scene(SceneConfig(num_frames=10, exo_size=(32, 48), ego_size=(48, 64),
                                    ego_hfov_deg=70.0))


def _config(scene):
    K = scene.ego_K
    return from_flat(EgoxConfig, {
        "clip_length": 5, "clip_stride": 5, "exo_width": 0, "exo_height": 0,
        "ego_width": K.width, "ego_height": K.height, "ego_fx": K.fx, "ego_fy": K.fy,
        "ego_cx": K.cx, "ego_cy": K.cy,
        "exo_pose": [float(v) for v in np.concatenate(c2w_to_pose(scene.exo_c2w[0]))]})


def test_paired_clips_from_bag(tmp_path, scene):
    _write_bag(tmp_path / "walk", scene, ego_frames=set(range(7)))
    result = write_paired_from_bag(tmp_path / "walk", tmp_path / "ds", _config(scene))
    assert result == {"clips": ["walk_00000"], "skipped": [1], "ego_camera": "equidistant"}
    assert read_splits(tmp_path / "ds") == {"train": ["walk_00000"]}
    paired = read_paired_clip(tmp_path / "ds" / "clips" / "walk_00000")
    clip = paired.clip
    np.testing.assert_array_equal(clip.stamps_ns, scene.stamps_ns[:5])
    np.testing.assert_allclose(clip.ego_c2w, scene.ego_c2w[:5], atol=1e-6)
    np.testing.assert_allclose(clip.exo_c2w, scene.exo_c2w[:5], atol=1e-6)
    np.testing.assert_allclose(clip.exo_depth_m, scene.exo_depth_m[:5], atol=1e-3)
    assert clip.ego_K == scene.ego_K and paired.source["kind"] == "rosbag"
    inner = (slice(None), slice(8, -8), slice(10, -10))
    err = np.abs(paired.ego_rgb[inner].astype(float) - scene.ego_rgb[:5][inner].astype(float))
    assert np.median(err) < 4 and np.mean(err) < 8, (np.median(err), np.mean(err))


def test_missing_ego_topic(tmp_path, scene):
    """A wrong ego topic is named: BagError from the API and from `egox paired-from-bag`
    (which `egox`'s entry point turns into one line and exit status 2)."""
    from typer.testing import CliRunner

    from egox_ros.cli import app

    _write_bag(tmp_path / "walk", scene, ego_frames=set(range(10)))
    with pytest.raises(BagError, match="lacks the ego camera topic"):
        write_paired_from_bag(tmp_path / "walk", tmp_path / "ds", _config(scene),
                              ego_image_topic="/head/image")
    run = CliRunner().invoke(app, ["paired-from-bag", str(tmp_path / "walk"),
                                   str(tmp_path / "ds"), "--ego-image-topic", "/head/image",
                                   "--clip_length", "5", "--clip_stride", "5"])
    assert isinstance(run.exception, BagError) and "/head/image" in str(run.exception)
