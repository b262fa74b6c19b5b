"""TensorRT engines of the tiny model on a GPU (runtime 'tensorrt'; skipped without CUDA or
the tensorrt package). `scripts/gpu_checks.sh` runs test/cuda with `--noconftest`.

Truth: the same weights run eagerly in bf16 with GGAAttnProcessor ("split"); the engine is
built by `export_engine` exactly as `egox export-trt` does, then used through the generator.
"""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from egox_model.errors import ModelLoadError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig
from egox_model.generator.wan import WanConfig, WanGenerator
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.generator.wan.tensorrt import TensorRTEngine, export_engine
from egox_model.generator.wan.tensorrt.build import load_fused_transformer
from egox_model.generator.wan.tensorrt.processor import gga_bias_input
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip
from egox_model.geometry.tokens import token_geometry
from egox_model.prior import PriorConfig, render_ego_prior

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is None,
    reason="needs a CUDA GPU and TensorRT (pip install tensorrt-cu13==11.4.0.106)")

FRAMES, EXO_HW, EGO_HW = 9, (128, 192), (128, 128)


def _clip():
    return tiny_clip(frames=FRAMES, exo_hw=EXO_HW, ego_hw=EGO_HW)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    config = WanConfig(model_dir=str(save_tiny_model_dir(root / "model")), device="cuda",
                       dtype="bfloat16", engine_dir=str(root / "engines"),
                       num_inference_steps=3, progress=False)
    return config, export_engine(config, FRAMES, EXO_HW, EGO_HW)


def test_engine_equals_eager_gga(built) -> None:
    config, result = built
    assert result.built == ("onnx", "engine") and result.plan_path.is_file()
    clip = _clip()
    prior = render_ego_prior(clip, PriorConfig())
    geometry = token_geometry(clip.exo_K, clip.exo_c2w, prior.exo_depth_m, clip.ego_K,
                              clip.ego_c2w).to("cuda")
    transformer = load_fused_transformer(config, torch.device("cuda"))
    inputs = result.shape.example_inputs(transformer.config, torch.bfloat16, "cuda", seed=2)
    inputs["gga_bias"] = gga_bias_input(geometry, GGAConfig(), torch.bfloat16, "cuda")
    processor = GGAAttnProcessor(GGAConfig(kernel="split"))
    install_attn1_processor(transformer, processor)
    processor.set_geometry(geometry)
    with torch.no_grad():
        eager = transformer(**{k: v for k, v in inputs.items() if k != "gga_bias"},
                            return_dict=False)[0].float()
    engine = TensorRTEngine(result.plan_path, "cuda")
    out = engine(**inputs)["noise_pred"].float()
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    scale = eager.abs().max().item()
    assert (out - eager).abs().max().item() < 0.03 * scale


def test_generator_runs_the_engine(built) -> None:
    config, result = built
    eager = WanGenerator(config).generate(_clip()).ego_rgb.astype(np.int16)
    generator = WanGenerator(dataclasses.replace(config, runtime="tensorrt"))
    assert type(generator.pipe.transformer).__name__ == "EngineTransformer"
    assert generator.loaded["runtime"]["engines"] == [result.shape.tag]
    video = generator.generate(_clip()).ego_rgb.astype(np.int16)
    assert video.shape == eager.shape and video.std() > 0
    assert np.abs(video - eager).mean() < 4.0          # bf16 engine vs bf16 eager, 3 steps
    with pytest.raises(ModelLoadError, match="egox export-trt"):
        generator.generate(tiny_clip(frames=5, exo_hw=EXO_HW, ego_hw=EGO_HW))
