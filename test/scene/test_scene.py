"""The ground-truth scene: deterministic, self-consistent, moving object marked."""
import numpy as np

from egox_model.geometry.projection import backproject
from egox_model.scene import SceneConfig, render_scene, synthetic_depth_estimates

import torch

TINY = dict(num_frames=3, exo_size=(64, 112), ego_size=(64, 64))


def test_deterministic_from_seed():
    a, b = render_scene(SceneConfig(seed=3, **TINY)), render_scene(SceneConfig(seed=3, **TINY))
    c = render_scene(SceneConfig(seed=4, **TINY))
    np.testing.assert_array_equal(a.exo_rgb, b.exo_rgb)
    np.testing.assert_array_equal(a.ego_c2w, b.ego_c2w)
    assert not np.array_equal(a.exo_rgb, c.exo_rgb)


def test_shapes_stamps_and_moving_object(small_scene):
    s = small_scene
    assert s.exo_rgb.shape == (9, 224, 392, 3) and s.ego_rgb.shape == (9, 224, 224, 3)
    assert (s.exo_depth_m > 0).all()                      # a closed room: every ray hits
    assert np.abs(np.diff(s.stamps_ns) - 1e9 / 30).max() <= 1.0     # 30 fps, exact to 1 ns
    assert s.dynamic_mask.any(axis=(1, 2)).all()          # the ball is in every exo frame
    moved = np.abs(np.diff(s.dynamic_mask.astype(int), axis=0)).sum()
    assert moved > 0                                      # ... and it moves


def test_exo_and_ego_ground_truth_agree_on_covisible_points(small_scene):
    s = small_scene
    f = 4
    cam = backproject(torch.from_numpy(s.ego_depth_m[f]), torch.from_numpy(s.ego_K.K).float())
    world = cam.numpy() @ s.ego_c2w[f, :3, :3].T + s.ego_c2w[f, :3, 3]
    w2c = np.linalg.inv(s.exo_c2w[f])
    exo = world @ w2c[:3, :3].T + w2c[:3, 3]
    u = np.round(s.exo_K.fx * exo[..., 0] / exo[..., 2] + s.exo_K.cx).astype(int)
    v = np.round(s.exo_K.fy * exo[..., 1] / exo[..., 2] + s.exo_K.cy).astype(int)
    seen = s.ego_covisible[f]
    assert seen.mean() > 0.2
    colour_err = np.abs(s.exo_rgb[f][v[seen], u[seen]].astype(int) - s.ego_rgb[f][seen]).mean()
    assert colour_err < 4.0                               # view-independent shading


def test_depth_estimates_follow_their_exact_fusion_parameters(small_scene):
    est = synthetic_depth_estimates(small_scene.exo_depth_m, seed=1, scale_jitter=0.0,
                                    pixel_noise=0.0, outlier_fraction=0.0)
    inv = est.alpha[:, None, None] / est.depth_video + est.beta[:, None, None]
    np.testing.assert_allclose(1.0 / inv, small_scene.exo_depth_m, rtol=1e-4)


def test_video_depth_shape_error_is_smooth_bounded_and_off_by_default(small_scene):
    depth = small_scene.exo_depth_m
    exact = synthetic_depth_estimates(depth, seed=1)
    warped = synthetic_depth_estimates(depth, seed=1, video_warp=0.02)
    np.testing.assert_array_equal(warped.depth_mono_m, exact.depth_mono_m)
    valid = depth > 0
    ratio = warped.depth_video[valid] / exact.depth_video[valid]
    assert ratio.min() >= 0.98 - 1e-6 and ratio.max() <= 1.02 + 1e-6
    assert ratio.max() - ratio.min() > 0.02               # not a scale an affine fit removes
    # The same warp in every frame, and smooth: neighbouring pixels differ by far less.
    field = np.where(valid, warped.depth_video / np.where(valid, exact.depth_video, 1), 1.0)
    np.testing.assert_allclose(field[0][valid[0] & valid[-1]],
                               field[-1][valid[0] & valid[-1]], rtol=1e-6)
    assert np.abs(np.diff(field[0], axis=1))[valid[0][:, 1:] & valid[0][:, :-1]].max() < 0.002
    noisy = synthetic_depth_estimates(depth, seed=1, video_noise=0.01)
    spread = np.std(noisy.depth_video[valid] / exact.depth_video[valid])
    assert 0.008 < spread < 0.012
