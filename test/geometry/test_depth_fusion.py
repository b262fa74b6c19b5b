"""Depth fusion recovers known (alpha, beta) robustly and handles invalid depth."""
import numpy as np
import pytest
import torch

from egox_model.errors import ConfigError, InputError
from egox_model.geometry.depth_fusion import (FusionConfig, fit_inverse_affine, fuse_depth,
                                              smooth_over_clip)

ALPHA, BETA = 2.0, 0.1


def _estimates(rng, frames=6, shape=(96, 128), outliers=0.2, noise=0.02):
    depth = rng.uniform(0.5, 8.0, (frames, *shape)).astype(np.float32)
    video = 1.0 / ((1.0 / depth - BETA) / ALPHA)          # 1/D = ALPHA / D_v + BETA
    mono = depth * (1.0 + noise * rng.standard_normal(depth.shape))
    bad = rng.random(depth.shape) < outliers
    mono[bad] = rng.uniform(0.2, 20.0, int(bad.sum()))
    return depth, video.astype(np.float32), mono.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_alpha_beta_within_one_percent_under_noise_and_outliers(seed):
    depth, video, mono = _estimates(np.random.default_rng(seed))
    result = fuse_depth(video, mono, config=FusionConfig(momentum=0.0))
    assert np.abs(result.alpha / ALPHA - 1).max() < 0.01
    assert np.abs(result.beta / BETA - 1).max() < 0.01
    rel = np.abs(result.depth_m - depth) / depth
    assert np.median(rel) < 0.002


def test_invalid_pixels_are_skipped_and_stay_invalid():
    depth, video, mono = _estimates(np.random.default_rng(3), outliers=0.0)
    video[0, :10] = np.nan
    video[1, :10] = 0.0
    video[2, :10] = np.inf
    mono[3] = np.nan                                      # a frame without metric depth
    mono[4, ::2] = -1.0
    result = fuse_depth(video, mono)
    assert np.all(result.depth_m[0:3, :10] == 0.0)
    assert np.isfinite(result.depth_m).all()
    assert np.isnan(result.alpha_fit[3])                  # its own fit failed ...
    assert np.isclose(result.alpha[3], ALPHA, rtol=0.01)  # ... the smoothed one carries on
    np.testing.assert_allclose(result.depth_m[5, 10:], depth[5, 10:], rtol=0.01)


def test_static_mask_keeps_dynamic_pixels_out_of_the_fit():
    depth, video, mono = _estimates(np.random.default_rng(4), outliers=0.0)
    mono[:, :, :64] *= 3.0                                # a "moving object" with wrong depth
    static = np.ones_like(depth, dtype=bool)
    static[:, :, :64] = False
    good = fuse_depth(video, mono, static)
    assert np.abs(good.alpha / ALPHA - 1).max() < 0.01
    bad = fuse_depth(video, mono)                         # half the pixels lie
    assert np.abs(bad.alpha / ALPHA - 1).max() > 0.05


def test_momentum_smooths_per_frame_jitter():
    rng = np.random.default_rng(5)
    depth, video, mono = _estimates(rng, frames=20, outliers=0.0)
    mono *= (1.0 + 0.05 * rng.standard_normal(20))[:, None, None].astype(np.float32)
    raw = fuse_depth(video, mono, config=FusionConfig(momentum=0.0))
    smooth = fuse_depth(video, mono, config=FusionConfig(momentum=0.9))
    assert np.std(np.diff(smooth.alpha)) < 0.3 * np.std(np.diff(raw.alpha))
    np.testing.assert_allclose(raw.alpha_fit, smooth.alpha_fit)


def test_frames_are_fitted_together_as_each_would_be_alone():
    """The batched fit of fuse_depth equals the 1-D fit of each frame's own samples, also
    when frames have different numbers of usable pixels."""
    rng = np.random.default_rng(7)
    depth, video, mono = _estimates(rng, frames=5)
    static = rng.random(depth.shape) > np.linspace(0.1, 0.6, 5)[:, None, None]
    config = FusionConfig(sample_stride=2)
    result = fuse_depth(video, mono, static, config)
    assert len(set(result.inliers.tolist())) == 5
    for f in range(5):
        sel = static[f, ::2, ::2]
        alpha, beta, inliers, rms = fit_inverse_affine(
            1.0 / torch.from_numpy(video[f, ::2, ::2][sel]).double(),
            1.0 / torch.from_numpy(mono[f, ::2, ::2][sel]).double(), config)
        np.testing.assert_allclose([result.alpha_fit[f], result.beta_fit[f]], [alpha, beta],
                                   rtol=1e-9)
        assert result.inliers[f] == inliers
        assert result.residual_rms[f] == pytest.approx(rms, rel=1e-9)


def test_smoothing_looks_both_ways_across_the_clip():
    """The first frame gets the whole clip's evidence, not only its own fit's scale error."""
    rng = np.random.default_rng(8)
    depth, video, mono = _estimates(rng, frames=20, outliers=0.0)
    jitter = rng.standard_normal(20)
    jitter[0] = 3.0                                       # the first frame's scale is far off
    mono *= (1.0 + 0.05 * jitter)[:, None, None].astype(np.float32)
    result = fuse_depth(video, mono)
    spread = np.std(result.alpha_fit)
    assert abs(result.alpha[0] - result.alpha[-1]) < 0.2 * spread
    assert abs(result.alpha[0] - np.mean(result.alpha_fit)) < 0.2 * spread


def test_smooth_over_clip_weights_and_failed_frames():
    fits = np.array([[1.0, 0.0], [np.nan, np.nan], [4.0, 3.0], [2.0, 1.0]])
    w = 0.5 ** np.abs(np.arange(4)[:, None] - np.array([0, 2, 3])[None])
    expected = (w @ fits[[0, 2, 3]]) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(smooth_over_clip(fits, 0.5), expected)
    np.testing.assert_allclose(smooth_over_clip(fits, 0.5)[::-1],
                               smooth_over_clip(fits[::-1], 0.5))       # no direction
    independent = smooth_over_clip(fits, 0.0)
    np.testing.assert_array_equal(independent[[0, 2, 3]], fits[[0, 2, 3]])
    np.testing.assert_array_equal(independent[1], fits[0])              # nearest, earlier
    assert np.isnan(smooth_over_clip(np.full((3, 2), np.nan), 0.9)).all()


def test_bad_input_names_the_field():
    depth, video, mono = _estimates(np.random.default_rng(6), frames=2)
    with pytest.raises(InputError, match="depth_mono_m shape"):
        fuse_depth(video, mono[:, :10])
    with pytest.raises(InputError, match="non-empty"):
        fuse_depth(video[:0], mono[:0])
    with pytest.raises(InputError, match="every frame"):
        fuse_depth(video, np.zeros_like(mono))
    with pytest.raises(ConfigError, match="momentum"):
        FusionConfig(momentum=1.0)
