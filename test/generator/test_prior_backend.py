"""Backend `prior`: the rendered prior kept where covered, holes filled, labelled."""
import numpy as np
import pytest

from egox_model.config import from_flat
from egox_model.errors import ConfigError
from egox_model.eval.metrics import psnr
from egox_model.generator import GeneratorConfig, make_generator
from egox_model.generator.prior_backend import fill_uncovered


def test_prior_backend_end_to_end(small_scene):
    clip = small_scene.to_clip()
    steps = []
    generator = make_generator(GeneratorConfig())
    out = generator.generate(clip, callback=lambda i, n: steps.append((i, n)))
    assert out.backend == "prior" and "not the diffusion model" in out.diagnostics["note"]
    assert out.ego_rgb.shape == small_scene.ego_rgb.shape and out.ego_rgb.dtype == np.uint8
    np.testing.assert_array_equal(out.stamps_ns, small_scene.stamps_ns)
    covered = out.prior.mask
    np.testing.assert_array_equal(out.ego_rgb[covered], out.prior.rgb[covered])
    assert (out.ego_rgb[~covered].max(axis=-1) > 0).mean() > 0.99   # holes are filled
    assert psnr(out.ego_rgb, small_scene.ego_rgb) > psnr(out.prior.rgb, small_scene.ego_rgb)
    assert steps == [(0, 2), (1, 2)]
    assert set(out.ms_per_frame) >= {"lift", "render", "hole_fill"}


def test_fill_keeps_covered_pixels_and_fills_smoothly():
    v, u = np.mgrid[0:64, 0:64]
    ramp = np.stack([u * 4, v * 4, np.full_like(u, 128)], -1).astype(np.uint8)
    covered = np.ones((64, 64), bool)
    covered[20:40, 20:40] = False
    filled = fill_uncovered(np.where(covered[..., None], ramp, 0), covered)
    np.testing.assert_array_equal(filled[covered], ramp[covered])
    assert np.abs(filled[~covered].astype(int) - ramp[~covered]).mean() < 20


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ConfigError, match=r"backend='nope': must be one of "
                       r"\['prior', 'wan', 'remote'\]"):
        GeneratorConfig(backend="nope")


def test_prior_settings_reach_the_backend(small_scene):
    clip = small_scene.to_clip()
    coarse = make_generator(from_flat(GeneratorConfig, {"prior.render.max_splat_level": 0,
                                                        "prior.lift.mesh": False,
                                                        "prior.lift.frame_stride": 8}))
    assert coarse.prior_config.render.max_splat_level == 0
    assert not coarse.prior_config.lift.mesh
    default = make_generator(GeneratorConfig()).generate(clip).prior
    points = coarse.generate(clip).prior
    assert points.mask.mean() < default.mask.mean()      # 1-pixel points leave gaps
