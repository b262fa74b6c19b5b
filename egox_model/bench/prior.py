"""`egox bench prior`: fusion + lift + render of one default clip, beside open3d.

The baseline is open3d's own z-buffered projection (`PointCloud.project_to_rgbd_image`)
of the very same points at the same ego poses, timed in the same run, beside egox's own
z-buffer of those points (no triangles): the render stage draws the lifted surface.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud, lift_points
from egox_model.geometry.render import RenderConfig, render_points
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.scene import SceneConfig, render_scene, synthetic_depth_estimates

__all__ = ["PriorBenchResult", "format_prior_bench", "open3d_render_ms", "run_prior_bench"]

TARGET_MS_PER_FRAME = 30.0


@dataclass
class PriorBenchResult:
    """Milliseconds per frame: our stages, their total, open3d's projection.

    zbuffer_ms is our render of the same points without triangles or splats: the same work
    open3d's projection does.
    """

    stages_ms: dict[str, float]
    zbuffer_ms: float
    open3d_ms: float
    frames: int
    points: int
    device: str

    @property
    def total_ms(self) -> float:
        return sum(self.stages_ms.values())

    def as_dict(self) -> dict:
        return {"ms_per_frame": round(self.total_ms, 3),
                "open3d_ms_per_frame": round(self.open3d_ms, 3),
                "stages_ms_per_frame": {k: round(v, 3) for k, v in self.stages_ms.items()},
                "zbuffer_ms_per_frame": round(self.zbuffer_ms, 3),
                "zbuffer_vs_open3d": round(self.zbuffer_ms / self.open3d_ms, 3),
                "render_vs_open3d": round(self.stages_ms["render"] / self.open3d_ms, 3),
                "target_ms_per_frame": TARGET_MS_PER_FRAME, "frames": self.frames,
                "points": self.points, "device": self.device,
                "torch_threads": torch.get_num_threads()}


def open3d_render_ms(cloud: PointCloud, K: Intrinsics, c2w: np.ndarray) -> float:
    """Wall ms per view of open3d's tensor-API projection of `cloud` at every pose."""
    import open3d as o3d

    pcd = o3d.t.geometry.PointCloud(o3d.core.Tensor(cloud.xyz.cpu().numpy()))
    pcd.point.colors = o3d.core.Tensor(cloud.rgb.cpu().numpy().astype(np.float32) / 255.0)
    intrinsics = o3d.core.Tensor(K.K)
    extrinsics = [o3d.core.Tensor(np.linalg.inv(pose)) for pose in c2w]
    start = time.perf_counter()
    for w2c in extrinsics:
        pcd.project_to_rgbd_image(K.width, K.height, intrinsics, w2c, depth_scale=1.0,
                                  depth_max=1000.0)
    return (time.perf_counter() - start) * 1e3 / len(extrinsics)


def run_prior_bench(repeats: int = 3, seed: int = 0, device: str = "cpu",
                    frames: int = 49) -> PriorBenchResult:
    """Median over `repeats` runs of each stage, and of the open3d baseline, interleaved.

    The clip has the default sizes (exo 448x784, ego 448x448) and `frames` frames.
    """
    scene = render_scene(SceneConfig(seed=seed, num_frames=frames))
    estimates = synthetic_depth_estimates(scene.exo_depth_m, seed=seed)
    clip = scene.to_clip(exo_depth_mono_m=estimates.depth_mono_m,
                         exo_depth_video=estimates.depth_video)
    config = PriorConfig(device=device)
    render_ego_prior(clip, config)                                   # warm-up
    runs: list[dict[str, float]] = []
    zbuffer: list[float] = []
    baseline: list[float] = []
    raw = RenderConfig(max_splat_level=0)
    for _ in range(repeats):
        prior = render_ego_prior(clip, config)
        runs.append(prior.ms_per_frame)
        cloud = lift_points(clip.exo_rgb, prior.exo_depth_m, clip.exo_K, clip.exo_c2w,
                            prior.exo_static, config.lift).to(device)
        points = PointCloud(cloud.xyz, cloud.rgb)
        start = time.perf_counter()
        render_points(points, clip.ego_K, clip.ego_c2w, raw, device=device).rgb.cpu()
        zbuffer.append((time.perf_counter() - start) * 1e3 / clip.num_frames)
        baseline.append(open3d_render_ms(cloud, clip.ego_K, clip.ego_c2w))
    stages = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    return PriorBenchResult(stages, statistics.median(zbuffer), statistics.median(baseline),
                            clip.num_frames, len(cloud), device)


def format_prior_bench(result: PriorBenchResult) -> str:
    """Human-readable table of a `PriorBenchResult`."""
    lines = [f"egox bench prior: {result.frames} frames, {result.points} points, "
             f"device {result.device}, {torch.get_num_threads()} torch threads",
             f"{'stage':<28}{'ms/frame':>10}"]
    lines += [f"  {name:<26}{ms:>10.2f}" for name, ms in result.stages_ms.items()]
    lines += [f"  {'total (fusion+lift+render)':<26}{result.total_ms:>10.2f}"
              f"   target <= {TARGET_MS_PER_FRAME:.0f}",
              f"{'z-buffer only (egox)':<28}{result.zbuffer_ms:>10.2f}",
              f"{'open3d project_to_rgbd_image':<28}{result.open3d_ms:>10.2f}",
              f"ratio egox z-buffer / open3d: {result.zbuffer_ms / result.open3d_ms:.2f}x   "
              f"egox render (triangles) / open3d: "
              f"{result.stages_ms['render'] / result.open3d_ms:.2f}x (lower is faster)"]
    return "\n".join(lines)
