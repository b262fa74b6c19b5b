"""CUDA-only checks of the GGA kernels and the `wan` backend (skipped without a GPU).

CI has no GPU; `scripts/gpu_checks.sh` runs these on a lent one with
`python3 -m pytest --noconftest test/cuda`. They guard what only a GPU shows: cuDNN
returns NaN for float32 attention without raising (torch 2.11, cuDNN 9.19), and with model
CPU offload the VAE reaches the GPU only inside `encode`/`decode`.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egox_model.bench import random_token_geometry
from egox_model.clip import Clip
from egox_model.generator.gga import GGAConfig, gga_attention, gga_tables
from egox_model.generator.wan import WanConfig, WanGenerator
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 4e-3)])
@pytest.mark.parametrize("kernel", ["split", "chunked"])
def test_kernels_equal_dense_on_cuda(kernel: str, dtype: torch.dtype, atol: float) -> None:
    g = torch.Generator().manual_seed(0)
    tables = gga_tables(random_token_geometry(2, g), "cuda")
    q, k, v = (torch.randn(1, tables.num_tokens, 4, 64, generator=g).to("cuda", dtype)
               .transpose(1, 2) for _ in range(3))
    dense = gga_attention(q, k, v, tables, GGAConfig(kernel="dense")).float()
    out = gga_attention(q, k, v, tables, GGAConfig(kernel=kernel)).float()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, dense, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


def _generate(model_dir, clip: Clip, **options) -> np.ndarray:
    config = WanConfig(model_dir=str(model_dir), device="cuda", num_inference_steps=3,
                       progress=False, **options)
    return WanGenerator(config).generate(clip).ego_rgb


def _clip() -> Clip:
    """17 frames at the default clip size, 448 x 784 | 448 x 448."""
    return tiny_clip(frames=17, exo_hw=(448, 784), ego_hw=(448, 448))


def test_cpu_offload_gives_the_same_video(model_dir) -> None:
    clip = _clip()
    plain = _generate(model_dir, clip)
    assert plain.shape == (17, 448, 448, 3) and plain.std() > 0
    np.testing.assert_array_equal(_generate(model_dir, clip, cpu_offload=True), plain)
    tiled = _generate(model_dir, clip, cpu_offload=True, vae_tiling=True)
    assert tiled.shape == plain.shape and tiled.std() > 0


def test_float32_split_matches_dense_in_the_model(model_dir) -> None:
    clip = _clip()
    split = _generate(model_dir, clip, dtype="float32").astype(np.int16)
    dense = _generate(model_dir, clip, dtype="float32",
                      gga=GGAConfig(kernel="dense")).astype(np.int16)
    no_gga = _generate(model_dir, clip, dtype="float32",
                       gga=GGAConfig(strength=0.0)).astype(np.int16)
    assert split.std() > 0
    assert np.abs(split - dense).mean() < 0.1 * np.abs(split - no_gga).mean()


def _has_fp8() -> str | None:
    """Why FP8 cannot run here, or None."""
    if torch.cuda.get_device_capability() < (8, 9):
        return "FP8 needs compute capability >= 8.9"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed"
    return None


@pytest.mark.parametrize("runtime, precision", [("compile", "bf16"), ("eager", "fp8"),
                                                ("compile", "fp8")])
def test_runtimes_and_fp8_stay_close_to_eager(model_dir, runtime: str, precision: str) -> None:
    """torch.compile computes what eager does; FP8 linear layers stay close on the tiny model
    (the denoised video differs by a few grey levels, not more)."""
    if precision == "fp8" and _has_fp8():
        pytest.skip(_has_fp8())
    clip = tiny_clip(frames=5, exo_hw=(64, 96), ego_hw=(64, 64))
    eager = _generate(model_dir, clip, dtype="bfloat16").astype(np.int16)
    other = _generate(model_dir, clip, dtype="bfloat16", runtime=runtime,
                      precision=precision).astype(np.int16)
    assert other.shape == eager.shape
    assert np.abs(other - eager).mean() < (1.0 if precision == "bf16" else 6.0)
