"""GGA token geometry against a brute-force per-pixel computation."""
import numpy as np
import pytest
import torch

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import look_at
from egox_model.geometry.tokens import latent_frame_indices, token_geometry

EXO_K = Intrinsics(60.0, 62.0, 31.0, 15.5, 64, 32)
EGO_K = Intrinsics(40.0, 40.0, 15.5, 16.0, 32, 32)


def _brute_force(depth, exo_c2w, ego_c2w):
    frames = range(0, depth.shape[0], 4)
    lat_exo = EXO_K.resized(8, 4)
    lat_ego = EGO_K.resized(4, 4)
    ego_dirs = np.zeros((len(frames), 2, 2, 3))
    exo_points = np.zeros((len(frames), 2, 4, 3))
    for t, f in enumerate(frames):
        for r in range(4):                                # latent rows
            for c in range(8):                            # latent cols (exo)
                block = depth[f, 8 * r:8 * r + 8, 8 * c:8 * c + 8]
                ok = block > 0
                d = block[ok].mean() if ok.mean() >= 0.5 else np.nan
                ray = [(c - lat_exo.cx) / lat_exo.fx, (r - lat_exo.cy) / lat_exo.fy, 1.0]
                world = exo_c2w[f, :3, :3] @ (np.array(ray) * d) + exo_c2w[f, :3, 3]
                exo_points[t, r // 2, c // 2] += world / 4
            for c in range(4):                            # latent cols (ego)
                ray = np.array([(c - lat_ego.cx) / lat_ego.fx, (r - lat_ego.cy) / lat_ego.fy, 1])
                world = ego_c2w[f, :3, :3] @ (ray / np.linalg.norm(ray))
                ego_dirs[t, r // 2, c // 2] += world / 4
    return ego_dirs, exo_points


def test_matches_brute_force_per_pixel_computation():
    rng = np.random.default_rng(0)
    F = 5
    depth = rng.uniform(1.0, 4.0, (F, 32, 64)).astype(np.float32)
    depth[:, :8, :8] = 0.0                                # one invalid block -> NaN token
    depth[:, 8:16, 8:16][:, :, :3] = np.nan               # 3/8 invalid: still valid
    exo_c2w = np.stack([look_at([2.0, -1.0, 1.5], [0, 0, 0.7])] * F)
    ego_c2w = np.stack([look_at([-1.0, 0.1 * f, 1.6], [0, 0, 0.7]) for f in range(F)])
    geo = token_geometry(EXO_K, exo_c2w, depth, EGO_K, ego_c2w)
    ego_dirs, exo_points = _brute_force(depth, exo_c2w, ego_c2w)
    assert geo.num_frames == 2 and geo.exo_hw == (2, 4) and geo.ego_hw == (2, 2)
    np.testing.assert_allclose(geo.ego_dirs.numpy(), ego_dirs, atol=1e-5)
    np.testing.assert_allclose(geo.exo_points.numpy(), exo_points, atol=1e-4)
    assert np.isnan(geo.exo_points[:, 0, 0].numpy()).all()
    np.testing.assert_allclose(geo.ego_centers.numpy(), ego_c2w[[0, 4], :3, 3], atol=1e-6)
    assert (geo.ego_dirs.norm(dim=-1) < 1.0).all()        # pooled rays are not renormalised


def test_frames_and_sizes_are_checked():
    assert latent_frame_indices(49).tolist() == list(range(0, 49, 4))
    with pytest.raises(InputError, match="4k\\+1"):
        latent_frame_indices(48)
    depth = np.ones((5, 32, 64), np.float32)
    with pytest.raises(InputError, match="multiple of 16"):
        token_geometry(EXO_K, np.tile(np.eye(4), (5, 1, 1)), depth,
                       Intrinsics(40, 40, 11.5, 11.5, 24, 24), np.tile(np.eye(4), (5, 1, 1)))


def test_geometry_moves_to_a_dtype():
    depth = np.ones((1, 32, 64), np.float32)
    geo = token_geometry(EXO_K, np.eye(4)[None], depth, EGO_K, np.eye(4)[None])
    assert geo.to(dtype=torch.float64).exo_points.dtype == torch.float64
