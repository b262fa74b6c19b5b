#!/usr/bin/env bash
# GPU checks on a lent machine whose image has torch + CUDA, transformers, peft, OpenCV and
# pytest but not diffusers or transforms3d: installs those two from the wheels carried in
# wheels/ (no network there; `pip download --no-deps diffusers==0.42.1 transforms3d==0.4.2
# -d wheels`), then runs a CPU/CUDA renderer equality check, the GPU benchmarks and the
# CUDA-only tests (test/cuda). Results go to $OUT (or out/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}; mkdir -p "$OUT"
SITE=$(mktemp -d)
pip install -q --no-deps --target "$SITE" wheels/*.whl
export PYTHONPATH="$PWD:$SITE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python - <<'PY' 2>&1 | tee "$OUT/render_cuda.txt"
import numpy as np, torch
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud
from egox_model.geometry.pose import look_at
from egox_model.geometry.render import render_points
g = torch.Generator().manual_seed(0)
xyz = torch.rand(300_000, 3, generator=g) * torch.tensor([4.0, 4.0, 3.0]) - torch.tensor([2.0, 2.0, -1.0])
cloud = PointCloud(xyz, torch.randint(0, 256, (300_000, 3), generator=g, dtype=torch.uint8),
                   torch.full((300_000,), 0.01))
K = Intrinsics(300.0, 300.0, 223.5, 223.5, 448, 448)
c2w = np.stack([look_at([0.1 * i, 0.0, -0.5], [0.0, 0.0, 2.5], up=[0, -1, 0]) for i in range(49)])
cpu = render_points(cloud, K, c2w)
gpu = render_points(cloud, K, c2w, device="cuda")
import time
for _ in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    render_points(cloud, K, c2w, device="cuda"); torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1e3 / 49
# Float rounding (FMA order) may move a point across a pixel edge: compare, don't demand bits.
same_mask = (cpu.mask == gpu.mask.cpu()).float().mean().item()
both = cpu.mask & gpu.mask.cpu()
depth_rel = ((cpu.depth_m - gpu.depth_m.cpu()).abs() / cpu.depth_m.clamp_min(1e-6))[both]
print({"mask_agreement": same_mask, "rgb_agreement": (cpu.rgb == gpu.rgb.cpu()).all(-1).float().mean().item(),
       "depth_rel_p999": torch.quantile(depth_rel[::97].float(), 0.999).item(),
       "render_ms_per_frame_cuda": round(ms, 3), "points": 300_000})
PY
for kernel in split chunked; do
  timeout 150 python -c "
import json
from egox_model.bench.gga import GGABenchConfig, format_gga_bench, run_gga_bench
r = run_gga_bench(GGABenchConfig(device='cuda', kernel='$kernel', repeats=5))
print(format_gga_bench(r)); print(json.dumps(r))" 2>&1 | tee "$OUT/gga_$kernel.txt"
done
timeout 240 python -c "
import json
from egox_model.bench.step import StepBenchConfig, format_step_bench, run_step_bench
r = run_step_bench(StepBenchConfig(device='cuda', kernel='split', repeats=2))
print(format_step_bench(r)); print(json.dumps(r))" 2>&1 | tail -30 | tee "$OUT/step_split.txt"
python3 -m pytest --noconftest -q -p no:cacheprovider test/cuda 2>&1 | tail -15 | tee "$OUT/test_cuda.txt"
