"""The prior's depth fusion fed by a relative-depth backend recovers the scene's metric
scale when D_m is the true depth plus noise (D_v aligned frame to frame), over scenes of
different sizes, fields of view and seeds; without the alignment it does not."""
import numpy as np
import pytest

from egox_model.perception.perceive import Perception
from egox_model.perception.temporal import align_inverse_depth
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.scene import SceneConfig, render_scene
from standins import MetricFromTruth, RelativeFromTruth

SCENES = [SceneConfig(seed=3, num_frames=7, exo_size=(96, 168), ego_size=(48, 48)),
          SceneConfig(seed=5, num_frames=5, exo_size=(120, 120), ego_size=(40, 56),
                      exo_hfov_deg=60.0),
          SceneConfig(seed=8, num_frames=9, exo_size=(72, 160), ego_size=(48, 48),
                      exo_hfov_deg=100.0, fps=10.0)]


def _abs_rel(depth, truth, static):
    valid = (depth > 0) & (truth > 0) & static
    return float(np.median(np.abs(depth[valid] - truth[valid]) / truth[valid]))


@pytest.mark.parametrize("scene_config", SCENES, ids=["default-fov", "narrow", "wide-moving"])
def test_fusion_recovers_metric_scale(scene_config):
    scene = render_scene(scene_config)
    truth = scene.exo_depth_m
    perception = Perception(MetricFromTruth(truth, noise=0.03, seed=scene_config.seed),
                            RelativeFromTruth(truth, seed=scene_config.seed))
    bare = scene.to_clip()
    clip, diagnostics = perception.complete(
        type(bare)(**{**bare.__dict__, "exo_depth_m": None}))
    assert clip.exo_depth_mono_m is not None and clip.exo_depth_video is not None
    assert "weaker choice" in diagnostics["video_depth"]["note"]
    prior = render_ego_prior(clip, PriorConfig())
    static = ~scene.dynamic_mask
    fused = _abs_rel(prior.exo_depth_m, truth, static)
    valid = (prior.exo_depth_m > 0) & (truth > 0) & static
    scale = float(np.median(prior.exo_depth_m[valid] / truth[valid]))
    # Baseline: the same relative depth without the frame-to-frame alignment.
    raw = RelativeFromTruth(truth, seed=scene_config.seed).estimate(None, None).values
    with np.errstate(divide="ignore"):
        unaligned_dv = np.where(raw > 0, 1 / raw, 0).astype(np.float32)
    baseline = render_ego_prior(
        type(clip)(**{**clip.__dict__, "exo_depth_video": unaligned_dv}), PriorConfig())
    unaligned = _abs_rel(baseline.exo_depth_m, truth, static)
    print(f"{scene_config.exo_size} hfov {scene_config.exo_hfov_deg}: fused abs rel "
          f"{fused:.4f} (unaligned D_v {unaligned:.4f}), scale {scale:.4f}")
    assert abs(scale - 1) < 0.01
    assert fused < 0.01                      # D_m noise is 3 % per pixel
    assert unaligned > 3 * fused


def test_alignment_is_exact_for_affine_flicker():
    rng = np.random.default_rng(0)
    inv = rng.uniform(0.1, 1.0, (1, 40, 50)).astype(np.float32)
    scale, shift = np.array([1.0, 2.0, 0.5, 1.3]), np.array([0.0, 0.1, -0.02, 0.4])
    frames = (scale[:, None, None] * inv + shift[:, None, None]).astype(np.float32)
    aligned, fits = align_inverse_depth(frames)
    np.testing.assert_allclose(aligned, np.repeat(inv, 4, 0), rtol=1e-4)
    np.testing.assert_allclose(fits["scale"][1:], 1 / scale[1:], rtol=1e-4)
    assert fits["failed_fits"] == 0


@pytest.mark.parametrize("seed,noise", [(11, 0.03), (12, 0.06)])
def test_static_camera_smoothing_reduces_flicker_without_trails(seed, noise):
    from egox_model.perception.temporal import video_depth

    scene = render_scene(SceneConfig(seed=seed, num_frames=9, fps=5.0, exo_size=(96, 168),
                                     ego_size=(32, 32)))
    truth, moving = scene.exo_depth_m, scene.dynamic_mask
    inverse = RelativeFromTruth(truth, seed=seed, noise=noise).estimate(None, None).values
    plain, _ = video_depth(inverse, smoothing=0.0)
    smooth, info = video_depth(inverse, smoothing=0.5)
    static = (truth > 0).all(0) & ~moving.any(0)

    def flicker(dv):            # temporal spread of D_v relative to the truth, static pixels
        ratio = np.where(dv > 0, dv, np.nan)[1:, static] / truth[1:, static]
        return float(np.nanmean(np.nanstd(ratio / np.nanmedian(ratio, 0), 0)))

    print(f"noise {noise}: D_v flicker {flicker(plain):.4f} -> {flicker(smooth):.4f} "
          f"(smoothed {info['smoothed_fraction']:.2f} of pixels)")
    assert flicker(smooth) < 0.85 * flicker(plain)
    # The moving ball is not smeared: where it is, D_v follows this frame's estimate.
    ball = moving[1:] & (truth[1:] > 0)
    np.testing.assert_allclose(smooth[1:][ball], plain[1:][ball], rtol=0.25)
    with np.errstate(divide="ignore"):
        off, _ = video_depth(inverse, smoothing=0.5, camera_static=False)
    np.testing.assert_array_equal(off, plain)


@pytest.mark.parametrize("scene_config, bias", zip(SCENES, (0.94, 1.07, 0.96)),
                         ids=["default-fov", "narrow", "wide-moving"])
def test_a_known_floor_removes_a_biased_metric_models_scale(scene_config, bias):
    """A metric model whose scale is off by several % (fusion keeps its scale): with the
    floor's height given (prior.plane), the prior's exo depth is metric again."""
    from egox_model.config.tree import from_flat

    scene = render_scene(scene_config)
    truth = scene.exo_depth_m
    perception = Perception(MetricFromTruth(truth * bias, noise=0.03, seed=scene_config.seed),
                            RelativeFromTruth(truth, seed=scene_config.seed))
    bare = scene.to_clip()
    clip, _ = perception.complete(type(bare)(**{**bare.__dict__, "exo_depth_m": None}))
    static = ~scene.dynamic_mask

    def scale(prior):
        valid = (prior.exo_depth_m > 0) & (truth > 0) & static
        return float(np.median(prior.exo_depth_m[valid] / truth[valid]))

    plain = render_ego_prior(clip, PriorConfig())
    floor = render_ego_prior(clip, from_flat(PriorConfig, {"plane.enabled": True,
                                                           "plane.z_m": 0.0}))
    assert abs(scale(plain) - bias) < 0.01
    assert abs(scale(floor) - 1) < 0.003
    assert floor.fusion["plane"]["found_frames"] == scene_config.num_frames
