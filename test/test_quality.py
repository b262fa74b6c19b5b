"""Per-clip quality scores (egox_model.quality) and the filter expression on them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from egox_model.errors import ConfigError
from egox_model.output import GeneratorOutput
from egox_model.prior import EgoPrior
from egox_model.eval.metrics import psnr
from egox_model.quality import ClipQuality, clip_quality, temporal_flicker
from egox_model.quality_filter import QualityFilter


def _output(ego, prior_rgb, mask, fusion=None, diagnostics=None):
    F, h, w = mask.shape
    prior = EgoPrior(rgb=prior_rgb, depth_m=np.ones((F, h, w), np.float32), mask=mask,
                     exo_depth_m=np.ones((F, 4, 4), np.float32),
                     exo_static=np.ones((F, 4, 4), bool), fusion=fusion or {})
    return GeneratorOutput(ego_rgb=ego, prior=prior, backend="test",
                           stamps_ns=np.arange(F, dtype=np.int64) * 10 + 1000,
                           diagnostics=diagnostics or {})


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (4, 16, 9)])
def test_identical_output_and_prior(shape):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = rng.random(shape) < 0.6
    mask.flat[0] = True
    q = clip_quality(_output(rgb, rgb.copy(), mask))
    assert q.prior_psnr_db == math.inf
    assert q.prior_coverage == pytest.approx(mask.mean())
    assert q.flicker == 0.0 or (shape[0] == 1 and math.isnan(q.flicker))
    assert (q.frames, q.first_stamp_ns, q.last_stamp_ns) == (shape[0], 1000,
                                                             1000 + 10 * (shape[0] - 1))


def test_psnr_only_over_covered_pixels_and_exact():
    prior = np.full((2, 4, 6, 3), 100, np.uint8)
    ego = prior.copy()
    mask = np.zeros((2, 4, 6), bool)
    mask[:, :2] = True
    ego[:, 2:] = 0                       # uncovered: ignored
    ego[0, 0, 0] = 110                   # covered: error 10 on 3 channels of 1 pixel
    q = clip_quality(_output(ego, prior, mask))
    mse = 3 * 100 / (mask.sum() * 3)
    assert q.prior_psnr_db == pytest.approx(10 * math.log10(255**2 / mse))
    assert q.prior_coverage == pytest.approx(0.5)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (5, 17, 9)])
def test_covered_psnr_equals_the_float64_formula(shape):
    rng = np.random.default_rng(sum(shape))
    a, b = (rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(2))
    mask = rng.random(shape) < 0.5
    mask.flat[-1] = True
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[mask].mean()
    assert psnr(a, b, mask) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    b[mask] = a[mask]
    assert psnr(a, b, mask) == math.inf


def test_no_coverage_gives_nan_psnr_and_flicker():
    rgb = np.zeros((3, 4, 4, 3), np.uint8)
    q = clip_quality(_output(rgb, rgb, np.zeros((3, 4, 4), bool)))
    assert math.isnan(q.prior_psnr_db) and math.isnan(q.flicker) and q.prior_coverage == 0


def test_flicker_is_change_not_explained_by_the_prior():
    rng = np.random.default_rng(1)
    prior = rng.integers(20, 200, (5, 6, 8, 3), dtype=np.uint8)
    mask = np.ones((5, 6, 8), bool)
    # A constant offset follows the prior exactly: no flicker.
    assert temporal_flicker(prior + np.uint8(10), prior, mask) == 0.0
    # Alternating +-d on frames: |dO - dP| = 2d on every pixel between every pair.
    ego = prior.astype(np.int16) + np.where(np.arange(5) % 2, 5, -5)[:, None, None, None]
    assert temporal_flicker(ego.astype(np.uint8), prior, mask) == pytest.approx(10.0)
    # Pixels covered in only one of two frames are left out.
    partial = mask.copy()
    partial[1::2, :, :4] = False
    brute = []
    for t in range(4):
        both = partial[t] & partial[t + 1]
        brute.append(np.abs((ego[t + 1] - ego[t]) - (prior[t + 1].astype(np.int16)
                                                     - prior[t]))[both])
    assert temporal_flicker(ego.astype(np.uint8), prior, partial) == \
        pytest.approx(np.concatenate(brute).mean())


def test_fusion_residuals_and_settings():
    rgb = np.zeros((3, 4, 4, 3), np.uint8)
    fusion = {"residual_rms": [0.1, float("nan"), 0.3], "alpha_fit": [1.0, float("nan"), 1.0]}
    q = clip_quality(_output(rgb, rgb, np.ones((3, 4, 4), bool), fusion,
                             {"steps": 4, "seed": 7, "gga": {"strength": 3.0},
                              "note": "x", "table": [1, 2]}))
    assert q.fusion_residual_rms_mean == pytest.approx(0.2)
    assert q.fusion_residual_rms_max == pytest.approx(0.3)
    assert q.fusion_failed_frames == 1
    assert q.settings == {"steps": 4, "seed": 7, "gga.strength": 3.0}
    values = q.values()
    assert values["setting.gga.strength"] == 3.0 and values["backend"] == "test"
    back = ClipQuality.from_values({k: str(v) for k, v in values.items()})
    assert back.prior_psnr_db == q.prior_psnr_db and back.last_stamp_ns == q.last_stamp_ns
    assert back.settings["gga.strength"] == "3.0"


def test_an_output_without_the_prior_scores_nan():
    """backend remote with return_prior false: the prior's frames are (F, 0, 0, 3)."""
    ego = np.zeros((3, 4, 4, 3), np.uint8)
    q = clip_quality(_output(ego, np.zeros((3, 0, 0, 3), np.uint8), np.zeros((3, 0, 0), bool)))
    assert all(math.isnan(v) for v in (q.prior_psnr_db, q.prior_coverage, q.flicker))
    assert q.frames == 3
    with pytest.raises(Exception, match="differ in shape"):
        clip_quality(_output(ego, np.zeros((3, 4, 5, 3), np.uint8), np.zeros((3, 4, 5), bool)))


def test_metric_depth_clip_has_no_fusion_scores():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    q = clip_quality(_output(rgb, rgb, np.ones((2, 4, 4), bool)))
    assert math.isnan(q.fusion_residual_rms_mean) and q.fusion_failed_frames == 0


@pytest.mark.parametrize("text, values, expected", [
    ("prior_psnr_db>=20 and prior_coverage>=0.5", {"prior_psnr_db": 20, "prior_coverage": .5},
     True),
    ("prior_psnr_db>=20 and prior_coverage>=0.5", {"prior_psnr_db": 19.9,
                                                   "prior_coverage": .9}, False),
    ("prior_psnr_db >= 20 or flicker < 3", {"prior_psnr_db": 10, "flicker": 2.5}, True),
    ("not (flicker<3)", {"flicker": 2.5}, False),
    ("prior_psnr_db>=30", {"prior_psnr_db": float("inf")}, True),
    ("prior_psnr_db>=-1e3", {"prior_psnr_db": float("nan")}, False),
    ("backend=='wan' AND frames==49", {"backend": "wan", "frames": "49"}, True),
    ("backend!=\"prior\"", {"backend": "prior"}, False),
    ("a>1 or b>1 and c>1", {"a": 2, "b": 0, "c": 0}, True),      # and binds tighter
    ("(a>1 or b>1) and c>1", {"a": 2, "b": 0, "c": 0}, False),
])
def test_filter_expressions(text, values, expected):
    assert QualityFilter(text)(values) is expected


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("prior_psnr_db>=", "KEY OP VALUE"), ("__import__('os')", "KEY OP VALUE"),
    ("a>=1 and", "KEY OP VALUE"), ("(a>1", "not closed"), ("a>1 b>2", "unexpected"),
    ("a>=1; b", "cannot read"), ("psnr>=20", "unknown key 'psnr'"),
])
def test_filter_rejects_bad_expressions(text, match):
    with pytest.raises(ConfigError, match=match):
        QualityFilter(text, known_keys=["a", "b", "prior_psnr_db"])


def test_filter_names_missing_scores():
    with pytest.raises(ConfigError, match="flicker"):
        QualityFilter("flicker<3")({"prior_psnr_db": 3})
