"""Import of the official EgoX meta format: a synthetic scene written in the release's layout
(3x4 world-to-camera extrinsics, 3x3 intrinsics, depth_maps/<take>/*.npy, rotated ego videos)
comes back as the scene's paired clip."""
import json

import numpy as np
import pytest

from egox_model.data import read_paired_clip, read_splits
from egox_model.data.official import import_official
from egox_model.errors import InputError
from egox_model.scene import SceneConfig, render_scene
from egox_model.video import write_video


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def scene():
    return render_scene(SceneConfig(num_frames=5, exo_size=(32, 48), ego_size=(32, 16)))


@pytest.fixture(scope="module")
def release(tmp_path_factory, scene):
    """The release's files for one take (ego videos stored rotated by 90 degrees), depth at
    full size under ROOT and at half size under ROOT/half."""
    root = tmp_path_factory.mktemp("release")
    videos = root / "videos" / "take_1"
    videos.mkdir(parents=True)
    write_video(videos / "exo.mp4", scene.exo_rgb, scene.fps)
    write_video(videos / "ego.mp4", np.rot90(scene.ego_rgb, -1, axes=(1, 2)).copy(), scene.fps)
    write_video(videos / "ego_Prior.mp4", np.rot90(scene.ego_rgb[..., ::-1], -1,
                                                   axes=(1, 2)).copy(), scene.fps)
    for data_root, step in ((root, 1), (root / "half", 2)):
        depth_dir = data_root / "depth_maps" / "take_1"
        depth_dir.mkdir(parents=True)
        for f, depth in enumerate(scene.exo_depth_m):
            np.save(depth_dir / f"{f:05d}.npy", depth[::step, ::step])
    meta = {"take_1/ego.mp4": {
        "exo_video_path": "videos/take_1/exo.mp4", "ego_video_path": "videos/take_1/ego.mp4",
        "ego_prior_path": "videos/take_1/ego_Prior.mp4", "prompt": "a table",
        "take_name": "take_1", "camera_extrinsics": np.linalg.inv(scene.exo_c2w[0])[:3].tolist(),
        "camera_intrinsics": scene.exo_K.K.tolist(),
        "ego_extrinsics": np.linalg.inv(scene.ego_c2w)[:, :3].tolist(),
        "ego_intrinsics": scene.ego_K.K.tolist()}}
    (root / "meta.json").write_text(json.dumps(meta))
    return root / "meta.json"


def test_official_round_trip(tmp_path, scene, release):
    names = import_official(release, tmp_path / "ds", ego_rotation_k=1)
    assert names == ["ego"] and read_splits(tmp_path / "ds") == {"train": ["ego"]}
    paired = read_paired_clip(tmp_path / "ds" / "clips" / "ego")
    clip = paired.clip
    np.testing.assert_allclose(clip.exo_c2w, scene.exo_c2w, atol=1e-12)
    np.testing.assert_allclose(clip.ego_c2w, scene.ego_c2w, atol=1e-12)
    assert clip.exo_K == scene.exo_K and clip.ego_K == scene.ego_K
    np.testing.assert_array_equal(clip.exo_depth_m, scene.exo_depth_m)
    assert clip.prompt == "a table" and paired.source["take_name"] == "take_1"
    assert paired.ego_rgb.shape == scene.ego_rgb.shape == (5, 32, 16, 3)
    assert _psnr(paired.ego_rgb, scene.ego_rgb) > 30
    assert _psnr(paired.prior_rgb, scene.ego_rgb[..., ::-1]) > 30
    assert _psnr(clip.exo_rgb, scene.exo_rgb) > 30


def test_official_depth_resized_and_errors(tmp_path, scene, release):
    """Half-size depth maps (another --data-root) are resized nearest-neighbour; max_frames
    and the split name apply; an entry without ego_intrinsics is refused by name."""
    import_official(release, tmp_path / "ds", data_root=release.parent / "half",
                    ego_rotation_k=1, max_frames=3, split="val")
    assert read_splits(tmp_path / "ds") == {"val": ["ego"]}
    clip = read_paired_clip(tmp_path / "ds" / "clips" / "ego").clip
    assert clip.num_frames == 3 and clip.exo_depth_m.shape == (3, 32, 48)
    np.testing.assert_array_equal(clip.exo_depth_m[:, ::2, ::2], scene.exo_depth_m[:3, ::2, ::2])
    entry = json.loads(release.read_text())
    del next(iter(entry.values()))["ego_intrinsics"]
    broken = tmp_path / "meta.json"
    broken.write_text(json.dumps(entry))
    with pytest.raises(InputError, match="lacks \\['ego_intrinsics'\\]"):
        import_official(broken, tmp_path / "ds2", base_dir=release.parent)
