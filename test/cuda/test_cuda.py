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
from egox_model.generator.wan.tiny import save_tiny_model_dir
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import look_at

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


def _clip(frames: int = 17) -> Clip:
    """A textured plane 2.5-4 m in front of a static exo camera; the ego camera pans."""
    height, width = 448, 784
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height,
                    ((xx // 32 + yy // 32) % 2) * 255], -1).astype(np.uint8)
    depth_m = (2.5 + 0.5 * np.sin(xx / 60.0) + yy / height).astype(np.float32)
    ego_c2w = np.stack([look_at([0.3 * (i / frames - 0.5), -0.1, 0.3], [0.0, 0.0, 3.0],
                                up=[0, -1, 0]) for i in range(frames)])
    return Clip(exo_rgb=np.repeat(rgb[None], frames, 0),
                exo_K=Intrinsics(420.0, 420.0, (width - 1) / 2, (height - 1) / 2, width, height),
                exo_c2w=np.repeat(np.eye(4)[None], frames, 0),
                ego_K=Intrinsics(300.0, 300.0, 223.5, 223.5, 448, 448), ego_c2w=ego_c2w,
                exo_depth_m=np.repeat(depth_m[None], frames, 0), prompt="a red cup")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


def _generate(model_dir, clip: Clip, **options) -> np.ndarray:
    config = WanConfig(model_dir=model_dir, device="cuda", num_inference_steps=3,
                       progress=False, **options)
    return WanGenerator(config).generate(clip).ego_rgb


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
    dense = _generate(model_dir, clip, dtype="float32", gga_kernel="dense").astype(np.int16)
    no_gga = _generate(model_dir, clip, dtype="float32", gga=False).astype(np.int16)
    assert split.std() > 0
    assert np.abs(split - dense).mean() < 0.1 * np.abs(split - no_gga).mean()
