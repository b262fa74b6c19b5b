"""Metric scale from a known horizontal plane: exact on analytic planes, refuses what is not
the plane, and through the prior on a ray-cast scene with fused estimates."""
import zlib

import numpy as np
import pytest
import torch

from egox_model.config.tree import from_flat
from egox_model.errors import ConfigError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.plane_scale import PlaneScaleConfig, plane_correction
from egox_model.geometry.pose import look_at
from egox_model.geometry.projection import backproject
from egox_model.output import GeneratorOutput
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.quality import clip_quality
from egox_model.scene import synthetic_depth_estimates
from egox_model.scene.eval_scenes import EVAL_SCENES, render_eval_scene

K = Intrinsics(200.0, 200.0, 159.5, 119.5, 320, 240)


def _depth_to_planes(c2w: np.ndarray, planes: list[tuple[str, float, slice]]) -> np.ndarray:
    """(H, W) z-depth of camera c2w looking at planes ('z' or 'x', world coordinate,
    image columns covered); later planes are drawn over earlier ones."""
    rays = backproject(torch.ones(K.height, K.width, dtype=torch.float64),
                       torch.from_numpy(K.K)).numpy() @ c2w[:3, :3].T   # world, per unit z
    depth = np.zeros((K.height, K.width))
    for axis, value, columns in planes:
        i = "xyz".index(axis)
        t = (value - c2w[i, 3]) / rays[:, columns, i]
        depth[:, columns] = np.where(t > 0, t, 0.0)
    return depth.astype(np.float32)


@pytest.mark.parametrize("eye, target, z_m, error", [
    ((1.6, 0.0, 1.2), (0.0, 0.0, 0.0), 0.0, 1.04),        # looking down 37 deg, +4 %
    ((0.0, -2.5, 1.0), (0.0, 0.0, 0.2), 0.0, 0.93),       # shallow, -7 %
    ((0.5, 0.5, 1.9), (0.0, 0.0, 0.75), 0.75, 1.15),      # a table top at 0.75 m, +15 %
    ((-1.0, 0.3, 0.4), (0.0, 0.0, 0.0), -0.5, 0.985),     # a floor 0.5 m below the origin
])
def test_recovers_the_scale_of_a_plane_beside_another_surface(eye, target, z_m, error):
    c2w = look_at(np.array(eye), np.array(target))
    # The plane on most columns, a box top 0.25 m higher on a third of them.
    depth = _depth_to_planes(c2w, [("z", z_m, slice(None)), ("z", z_m + 0.25, slice(0, 100))])
    assert (depth > 0).mean() > 0.7
    # Two frames: one with a pure scale error, one with a shift in inverse depth as well.
    wrong = np.stack((depth * error, depth / (1.0 + 0.004 * depth)))
    config = PlaneScaleConfig(enabled=True, z_m=z_m)
    found = plane_correction(wrong, wrong > 0, K, np.stack((c2w, c2w)), config)
    assert found.found.all() and (found.plane_fraction > 0.5).all()
    assert (found.plane_fraction < 0.8).all()             # the box top is not the plane
    truth = np.stack((depth, depth))
    np.testing.assert_allclose(found.apply(wrong), truth, rtol=2e-4)
    assert plane_correction(wrong[:1], wrong[:1] > 0, K, c2w[None], config).scale == \
        pytest.approx(1 / error, rel=1e-6)


def test_no_plane_in_range_leaves_the_scale_alone():
    c2w = look_at(np.array([1.6, 0.0, 1.2]), np.zeros(3))
    wall = _depth_to_planes(c2w, [("x", -0.5, slice(None))])                # a vertical wall
    plane = _depth_to_planes(c2w, [("z", 0.0, slice(None))])
    config = PlaneScaleConfig(enabled=True, z_m=0.0)
    for depth in (wall, plane * 1.4):                     # no plane / beyond max_correction
        found = plane_correction(depth[None], (depth > 0)[None], K, c2w[None], config)
        assert not found.found.any() and found.scale == 1.0
        np.testing.assert_array_equal(found.apply(depth[None])[0], depth)
    nothing = np.zeros((1, *plane.shape), bool)
    found = plane_correction(plane[None], nothing, K, c2w[None], config)
    assert not found.found.any() and found.plane_fraction[0] == 0.0


def test_a_frame_without_the_plane_takes_its_neighbours_correction():
    c2w = look_at(np.array([1.6, 0.0, 1.2]), np.zeros(3))
    plane = _depth_to_planes(c2w, [("z", 0.0, slice(None))])
    wall = _depth_to_planes(c2w, [("x", -0.5, slice(None))])
    frames = np.stack((plane * 1.05, wall, plane * 0.97))
    found = plane_correction(frames, frames > 0, K, np.stack([c2w] * 3),
                             PlaneScaleConfig(enabled=True, z_m=0.0))
    np.testing.assert_array_equal(found.found, [True, False, True])
    assert found.a[1] == found.a[0] and found.b[1] == found.b[0]
    np.testing.assert_allclose(found.apply(frames)[2], plane, rtol=2e-4)
    with pytest.raises(ConfigError, match="max_correction"):
        PlaneScaleConfig(max_correction=1.5)


def test_the_prior_takes_its_scale_from_the_table_top():
    """Fused estimates with a 3 % scale bias (and jitter): the plane brings the lifted depth to the
    ground truth, and the prior and its quality record say what was applied."""
    spec = next(s for s in EVAL_SCENES if s.name == "closer-2x" and s.seed == 1)
    scene = render_eval_scene(spec, 3, exo_size=(96, 168), ego_size=(96, 96))
    estimates = synthetic_depth_estimates(scene.exo_depth_m, seed=zlib.crc32(b"plane"))
    clip = scene.to_clip(exo_depth_mono_m=estimates.depth_mono_m * np.float32(1.03),  # bias
                         exo_depth_video=estimates.depth_video)

    def scale_error(prior):
        lifted = prior.exo_static & (prior.exo_depth_m > 0) & (scene.exo_depth_m > 0)
        return np.median(prior.exo_depth_m[lifted] / scene.exo_depth_m[lifted]) - 1.0

    plain = render_ego_prior(clip)
    planed = render_ego_prior(clip, from_flat(PriorConfig, {"plane.enabled": True,
                                                            "plane.z_m": 0.0}))
    assert abs(scale_error(plain)) > 0.02
    assert abs(scale_error(planed)) < 0.001
    assert planed.fusion["plane"]["found_frames"] == 3
    expected = 1 / (1 + scale_error(plain))
    assert planed.fusion["plane"]["scale"] == pytest.approx(expected, rel=2e-3)
    output = GeneratorOutput(ego_rgb=planed.rgb, prior=planed, backend="prior",
                             stamps_ns=scene.stamps_ns)
    assert clip_quality(output).fusion_plane_scale == planed.fusion["plane"]["scale"]
    assert np.isnan(clip_quality(GeneratorOutput(ego_rgb=plain.rgb, prior=plain,
                                                 backend="prior",
                                                 stamps_ns=scene.stamps_ns)
                                 ).fusion_plane_scale)
