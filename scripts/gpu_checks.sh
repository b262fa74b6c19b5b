#!/usr/bin/env bash
# GPU checks on a lent machine whose image has torch + CUDA, transformers, peft, OpenCV and
# pytest but not diffusers, transforms3d or torchao: installs those from the wheels carried in
# wheels/ (no network there; `pip download --no-deps diffusers==0.42.1 transforms3d==0.4.2
# torchao==0.18.0 -d wheels`), then runs the sections named in $SECTIONS (default: all) in
# order, each bounded by its own timeout and by $BUDGET_S seconds for the whole script:
#   render  CPU/CUDA renderer equality and ms/frame
#   gga     GGA kernels vs the dense reference (egox bench gga)
#   step    a CFG step per runtime x precision, GGA off/on, vs the floor (egox bench step)
#   clip    whole clips stage by stage: eager 50x2 / 4x1, then compile + fp8 4x1
#   tests   the CUDA-only tests (test/cuda)
# Results go to $OUT (or out/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}; mkdir -p "$OUT"
SECTIONS=${SECTIONS:-render gga step clip tests}
BUDGET_S=${BUDGET_S:-900}
STEP_LAYERS=${STEP_LAYERS:-4}
SITE=$(mktemp -d)
python3 -m pip install -q --no-deps --no-index --target "$SITE" wheels/*.whl
export PYTHONPATH="$PWD:$SITE" PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR="$SITE/inductor"
EGOX=(python3 -m egox_model.cli)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers',
diffusers.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"

# section NAME LIMIT_S CMD...: run CMD with min(LIMIT_S, budget left) seconds, log to $OUT.
section() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET_S - SECONDS ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then echo "[$name] skipped: budget spent" | tee "$OUT/$name.txt"; return; fi
  echo "[$name] up to ${limit}s: $*"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E "Warning|warn\(|_pytree|register_constant" \
    | tee "$OUT/$name.txt"
  echo "[$name] rc=${PIPESTATUS[0]} in $(( SECONDS - start ))s" | tee -a "$OUT/$name.txt"
}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

if want render; then
  section render 120 python3 - <<'PY'
import time
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
for _ in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    render_points(cloud, K, c2w, device="cuda"); torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1e3 / 49
# Float rounding (FMA order) may move a point across a pixel edge: compare, don't demand bits.
both = cpu.mask & gpu.mask.cpu()
depth_rel = ((cpu.depth_m - gpu.depth_m.cpu()).abs() / cpu.depth_m.clamp_min(1e-6))[both]
print({"mask_agreement": (cpu.mask == gpu.mask.cpu()).float().mean().item(),
       "rgb_agreement": (cpu.rgb == gpu.rgb.cpu()).all(-1).float().mean().item(),
       "depth_rel_p999": torch.quantile(depth_rel[::97].float(), 0.999).item(),
       "render_ms_per_frame_cuda": round(ms, 3), "points": 300_000})
PY
fi
if want gga; then
  for kernel in split chunked; do
    section "gga_$kernel" 150 "${EGOX[@]}" bench gga --device cuda --kernel "$kernel" \
      --repeats 5 --json
  done
fi
if want step; then
  section step 330 "${EGOX[@]}" bench step --device cuda --layers "$STEP_LAYERS" \
    --runtime eager,compile,tensorrt --precision bf16,fp8 --repeats 3 --json
fi
if want clip; then
  section clip_eager 180 "${EGOX[@]}" bench clip --device cuda --schedule 50x2,4x1 \
    --measured-steps 2 --json
fi
if want tests; then
  section tests 150 python3 -m pytest --noconftest -q -p no:cacheprovider test/cuda
fi
if want clip; then
  section clip_fast 200 "${EGOX[@]}" bench clip --device cuda --runtime compile \
    --precision fp8 --schedule 4x1 --json
fi
