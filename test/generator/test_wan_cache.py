"""Step caching (`wan.cache`, diffusers' FirstBlockCache) on the tiny random-weight model with
GGA on attn1: which blocks run, that a clip never reuses another clip's cache, and that the
cache off (or a threshold nothing passes) leaves the output exactly as without hooks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egox_model.errors import ConfigError
from egox_model.generator.gga import GGAAttnProcessor
from egox_model.generator.wan import WanConfig, WanGenerator
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip

STEPS = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def make_generator(model_dir, **options) -> WanGenerator:
    options = {"dtype": "float32", "device": "cpu", "num_inference_steps": STEPS,
               "progress": False, **options}
    return WanGenerator(WanConfig(model_dir=str(model_dir), **options))


class BlockCounter:
    """Counts how often each block really computes: its FFN runs only then (a skipped block
    returns the cached residual without calling its submodules)."""

    def __init__(self, transformer) -> None:
        self.calls = [0] * len(transformer.blocks)
        self.handles = [block.ffn.register_forward_hook(self._hook(i))
                        for i, block in enumerate(transformer.blocks)]

    def _hook(self, index: int):
        def hook(module, args, output):
            self.calls[index] += 1
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def generate(generator, clip):
    counter = BlockCounter(generator.pipe.transformer)
    try:
        return generator.generate(clip), counter.calls
    finally:
        counter.remove()


def test_cache_skips_later_blocks_and_resets_between_clips(model_dir, clip):
    """A threshold every change passes: step 0 runs all blocks (nothing cached yet), later
    steps only block 0, per cache context (cond, uncond); a second clip starts afresh."""
    generator = make_generator(model_dir, cache="first_block", cache_threshold=1e6,
                               guidance_scale=5.0)
    assert generator.loaded["cache"] == {"cache": "first_block", "threshold": 1e6}
    assert all(isinstance(p, GGAAttnProcessor) for p in generator.pipe.attn1_processors)
    first, calls = generate(generator, clip)
    assert calls == [2 * STEPS, 2]                 # block 1: step 0 of cond and of uncond
    assert first.ego_rgb.shape == (clip.num_frames, clip.ego_K.height, clip.ego_K.width, 3)
    assert first.ego_rgb.dtype == np.uint8 and first.ego_rgb.std() > 0
    again, calls = generate(generator, clip)
    assert calls == [2 * STEPS, 2]                 # not served from the first clip's cache
    np.testing.assert_array_equal(again.ego_rgb, first.ego_rgb)


def test_cache_output_stays_finite(model_dir, clip):
    generator = make_generator(model_dir, cache="first_block", cache_threshold=1e6,
                               guidance_scale=1.0)
    transformer = generator.pipe.transformer
    outputs = []
    handle = transformer.register_forward_hook(
        lambda module, args, output: outputs.append(output[0].clone()))
    try:
        _, calls = generate(generator, clip)
    finally:
        handle.remove()
    assert calls == [STEPS, 1]
    assert len(outputs) == STEPS and all(torch.isfinite(o).all() for o in outputs)


def test_cache_off_or_never_hit_equals_no_cache(model_dir, clip):
    plain = make_generator(model_dir)
    assert "cache" not in plain.loaded and not plain.pipe.transformer.is_cache_enabled
    reference, calls = generate(plain, clip)
    assert calls == [2 * STEPS, 2 * STEPS]
    never_hit = make_generator(model_dir, cache="first_block", cache_threshold=1e-30)
    out, calls = generate(never_hit, clip)
    assert calls == [2 * STEPS, 2 * STEPS]
    np.testing.assert_array_equal(out.ego_rgb, reference.ego_rgb)


def test_cache_settings_are_checked():
    with pytest.raises(ConfigError, match="must be one of"):
        WanConfig(cache="teacache")
    with pytest.raises(ConfigError, match="cache_threshold=0.0: must be a number > 0"):
        WanConfig(cache_threshold=0.0)
    with pytest.raises(ConfigError, match="TensorRT engine does not have"):
        WanConfig(cache="first_block", runtime="tensorrt")
