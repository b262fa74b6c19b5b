"""Lift -> render: exact at the source pose, nearest point wins, splats close holes without
growing silhouettes, and the prior of the ground-truth scene matches the ego ground truth."""
import numpy as np
import pytest
import torch

from egox_model.errors import ConfigError, InputError
from egox_model.eval.metrics import psnr
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import LiftConfig, PointCloud, lift_points
from egox_model.geometry.pose import look_at
from egox_model.geometry.render import RenderConfig, render_points
from egox_model.prior import render_ego_prior

K = Intrinsics(120.0, 120.0, 47.5, 31.5, 96, 64)


def _wavy_depth(frames=3):
    v, u = np.mgrid[0:64, 0:96]
    return np.broadcast_to(2.0 + 0.3 * np.sin(u / 9.0) + 0.2 * np.cos(v / 7.0),
                           (frames, 64, 96)).astype(np.float32)


def test_lift_render_round_trip_at_the_source_pose():
    rng = np.random.default_rng(0)
    rgb = np.broadcast_to(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (3, 64, 96, 3))
    c2w = np.repeat(look_at([0.0, 0.0, 1.0], [3.0, 0.5, 0.8])[None], 3, 0)
    depth = _wavy_depth()
    cloud = lift_points(rgb, depth, K, c2w)
    assert len(cloud) == 64 * 96                          # a static camera merges frames
    out = render_points(cloud, K, c2w[:2])
    assert out.mask.all()
    assert psnr(out.rgb.numpy(), np.asarray(rgb[:2])) > 40.0
    np.testing.assert_allclose(out.depth_m.numpy(), depth[:2], rtol=1e-5)


def test_moving_camera_lifts_each_strided_frame():
    rgb = np.zeros((4, 64, 96, 3), np.uint8)
    c2w = np.stack([look_at([0.0, 0.1 * f, 1.0], [3.0, 0.0, 1.0]) for f in range(4)])
    cloud = lift_points(rgb, _wavy_depth(4), K, c2w, config=LiftConfig(frame_stride=2))
    assert len(cloud) == 2 * 64 * 96


def test_nearest_point_wins_and_matches_brute_force():
    rng = np.random.default_rng(1)
    xyz = torch.from_numpy(rng.uniform([-1, -1, 1], [1, 1, 4], (3000, 3))).float()
    rgb = torch.from_numpy(rng.integers(0, 256, (3000, 3), dtype=np.uint8))
    c2w = np.stack([np.eye(4), look_at([0.2, 0.1, -0.3], [0.0, 0.0, 2.5], up=[0, -1, 0])])
    out = render_points(PointCloud(xyz, rgb), K, c2w, RenderConfig(max_splat_level=0))
    for view in range(2):
        w2c = np.linalg.inv(c2w[view])
        cam = xyz.double().numpy() @ w2c[:3, :3].T + w2c[:3, 3]
        u = np.floor(K.fx * cam[:, 0] / cam[:, 2] + K.cx + 0.5).astype(int)
        v = np.floor(K.fy * cam[:, 1] / cam[:, 2] + K.cy + 0.5).astype(int)
        best = np.full((64, 96), np.inf)
        color = np.zeros((64, 96, 3), np.uint8)
        for n in np.argsort(-cam[:, 2]):                  # far to near: nearest written last
            if cam[n, 2] > 0 and 0 <= u[n] < 96 and 0 <= v[n] < 64:
                best[v[n], u[n]] = cam[n, 2]
                color[v[n], u[n]] = rgb[n].numpy()
        covered = np.isfinite(best)
        np.testing.assert_array_equal(out.mask[view].numpy(), covered)
        np.testing.assert_array_equal(out.rgb[view].numpy()[covered], color[covered])
        np.testing.assert_allclose(out.depth_m[view].numpy()[covered], best[covered],
                                   rtol=1e-5)


def test_splats_close_gaps_but_keep_silhouettes():
    # A near plate sampled every 4 cm (3.2 px at 1.5 m) in front of a dense far wall.
    wall = [(x, y, 4.0) for x in np.linspace(-3, 3, 400) for y in np.linspace(-2, 2, 300)]
    plate = [(x, y, 1.5) for x in np.linspace(-0.3, 0.3, 16) for y in np.linspace(-0.2, 0.2, 11)]
    xyz = torch.tensor(wall + plate, dtype=torch.float32)
    rgb = torch.zeros(len(xyz), 3, dtype=torch.uint8)
    rgb[len(wall):] = 255
    spacing = torch.full((len(xyz),), 0.015)
    spacing[len(wall):] = 0.04
    raw = render_points(PointCloud(xyz, rgb), K, np.eye(4)[None])          # no spacing
    filled = render_points(PointCloud(xyz, rgb, spacing), K, np.eye(4)[None])
    plate_px = (slice(16, 48), slice(24, 72))             # the plate's projection, inside
    raw_plate = raw.depth_m[0][plate_px] < 2.0
    assert 0.05 < raw_plate.float().mean() < 0.5          # raw: the wall shows through
    assert (filled.depth_m[0][plate_px] < 2.0).all()      # splatted: a closed plate
    assert (filled.rgb[0][plate_px] == 255).all()
    outside = filled.depth_m[0].clone()
    outside[12:52, 20:76] = 0                             # the plate and one 4 px splat
    assert (outside[outside > 0] > 3.9).all()             # the silhouette did not grow more
    assert filled.mask.all()


def test_render_rejects_bad_poses_and_configs():
    cloud = PointCloud(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.uint8))
    with pytest.raises(InputError, match="c2w"):
        render_points(cloud, K, np.eye(4))
    with pytest.raises(ConfigError, match="max_splat_level"):
        RenderConfig(max_splat_level=-1)


def test_prior_from_ground_truth_depth_matches_the_ego_view(default_scene):
    prior = render_ego_prior(default_scene.to_clip())
    static = prior.mask & default_scene.ego_covisible
    assert static.mean() > 0.2
    assert psnr(prior.rgb, default_scene.ego_rgb, static) > 30.0
    depth_err = np.abs(prior.depth_m - default_scene.ego_depth_m)[static]
    assert np.median(depth_err / default_scene.ego_depth_m[static]) < 0.01
