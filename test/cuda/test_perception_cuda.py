"""CUDA-only checks of the perception models (skipped without a GPU): bf16 batched on the
GPU equals float32 on the CPU for the tiny saved models, and `egox bench perception` times
the published sizes (random weights) in bf16."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egox_model.geometry.camera import Intrinsics
from egox_model.perception.depth import load_depth_estimator
from egox_model.perception.tiny import save_depth_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", ["tiny-depth-pro", "tiny-da-metric", "tiny-da-relative"])
def test_bf16_gpu_equals_fp32_cpu(tmp_path, name):
    path = save_depth_model(tmp_path / name, name)
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 112, 3), dtype=np.uint8)
    K = Intrinsics(60.0, 60.0, 55.5, 31.5, 112, 64)
    cpu = load_depth_estimator(path, "x", device="cpu").estimate(frames, K).values
    gpu_est = load_depth_estimator(path, "x", device="cuda", batch_size=4)
    assert gpu_est.dtype == torch.bfloat16
    gpu = gpu_est.estimate(frames, K).values
    valid = cpu > 0
    rel = np.abs(gpu[valid] - cpu[valid]) / cpu[valid]
    assert np.median(rel) < 0.02 and gpu.dtype == np.float32


def test_bench_real_sizes_on_gpu():
    from egox_model.bench.perception import (PerceptionBenchConfig, format_perception_bench,
                                             run_perception_bench)

    result = run_perception_bench(PerceptionBenchConfig(frames=3, size="real"))
    print(format_perception_bench(result))
    rows = {row["stage"]: row for row in result["rows"]}
    assert rows["depth: depth-pro"]["dtype"] == "bfloat16"
    assert rows["depth: da-v2-small"]["params_m"] == pytest.approx(24.8, abs=0.2)
