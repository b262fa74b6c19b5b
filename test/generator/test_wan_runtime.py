"""Runtimes of the `wan` backend on the CPU: torch.compile gives eager's video; FP8 refuses
the CPU with a clear error; the configuration rejects combinations that cannot work."""
from __future__ import annotations

import numpy as np
import pytest

from egox_model.errors import ConfigError
from egox_model.generator.wan import WanConfig, WanGenerator
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


def _generator(model_dir, **options) -> WanGenerator:
    options = {"dtype": "float32", "device": "cpu", "num_inference_steps": 2,
               "progress": False, **options}
    return WanGenerator(WanConfig(model_dir=str(model_dir), **options))


def test_compile_runtime_gives_the_eager_video(model_dir):
    clip = tiny_clip()
    eager = _generator(model_dir).generate(clip)
    compiled_generator = _generator(model_dir, runtime="compile")
    compiled = compiled_generator.generate(clip)
    assert compiled_generator.loaded["runtime"] == {"runtime": "compile", "precision": "bf16",
                                                    "compile_mode": "default"}
    blocks = compiled_generator.pipe.transformer.blocks
    assert all(block._compiled_call_impl is not None for block in blocks)
    assert compiled.ego_rgb.shape == eager.ego_rgb.shape
    assert np.abs(compiled.ego_rgb.astype(int) - eager.ego_rgb.astype(int)).max() <= 2
    # The second clip of the same shape reuses the compiled blocks (and stays the same).
    again = compiled_generator.generate(clip)
    np.testing.assert_array_equal(again.ego_rgb, compiled.ego_rgb)


def test_fp8_on_the_cpu_is_a_clear_error(model_dir):
    with pytest.raises(ConfigError, match="precision.*compute capability >= 8.9"):
        _generator(model_dir, dtype="bfloat16", precision="fp8")


@pytest.mark.parametrize("options, key", [
    ({"runtime": "tensorrt", "cpu_offload": True, "device": "cuda"}, "cpu_offload"),
    ({"runtime": "jit"}, "runtime"),
    ({"precision": "int4"}, "precision"),
])
def test_config_rejects_runtime_combinations(options, key):
    with pytest.raises(ConfigError, match=key):
        WanConfig(**options)
