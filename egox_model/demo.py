"""The demo: synthetic scene -> depth fusion -> lift -> render -> generator, with a report.

Depth fusion is really exercised: D_m and D_v are synthetic estimates of the ground truth
with known fusion parameters (`egox_model.scene.depth_estimates`), so the report can state
how far the fit is from the truth, and the outputs are compared with the ego ground truth.
With depth="estimate" the clip is a plain RGB camera's (no depth, no masks): the generator's
perception models (`perception.*`, local directories) estimate D_m and D_v, and the report
states the fused depth's error against the scene's truth (random-weight or mismatched models
give large errors: that is the figure to read).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from egox_model.clip import Clip
from egox_model.errors import ConfigError
from egox_model.eval.metrics import psnr, ssim
from egox_model.eval.prior import reference_prior
from egox_model.generator import Generator, GeneratorConfig, GeneratorOutput, make_generator
from egox_model.geometry.dynamic import motion_masks
from egox_model.scene import SceneClip, SceneConfig, render_scene, synthetic_depth_estimates
from egox_model.video import write_video

__all__ = ["DemoResult", "run_demo", "write_preview", "write_report"]

PREVIEW_FRAMES = 4
PREVIEW_HEIGHT = 224


@dataclass
class DemoResult:
    """Everything the demo produced; `report` is what report.json holds."""

    scene: SceneClip
    clip: Clip
    output: GeneratorOutput
    report: dict


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def write_preview(path: Path, scene: SceneClip, output: GeneratorOutput) -> None:
    """PNG with rows exo | prior | generated | ground truth for a few frames."""
    frames = np.linspace(0, scene.exo_rgb.shape[0] - 1, PREVIEW_FRAMES).round().astype(int)

    def fit(img: np.ndarray) -> np.ndarray:
        width = round(img.shape[1] * PREVIEW_HEIGHT / img.shape[0])
        return cv2.resize(img, (width, PREVIEW_HEIGHT), interpolation=cv2.INTER_AREA)

    rows = [np.concatenate([fit(scene.exo_rgb[f]), fit(output.prior.rgb[f]),
                            fit(output.ego_rgb[f]), fit(scene.ego_rgb[f])], axis=1)
            for f in frames]
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    x = 0
    labels = ("exo (input)", "ego prior (rendered)", f"generated [{output.backend}]",
              "ego ground truth")
    for label, img in zip(labels, (scene.exo_rgb[0], output.prior.rgb[0], output.ego_rgb[0],
                                   scene.ego_rgb[0])):
        cv2.putText(header, label, (x + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
        x += fit(img).shape[1]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([header, *rows]), cv2.COLOR_RGB2BGR))


def write_report(path: Path, report: dict) -> None:
    """Write report.json (sorted keys, indented)."""
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def run_demo(out_dir: str | Path, *, seed: int = 0,
             generator: Generator | GeneratorConfig = GeneratorConfig(),
             scene_config: SceneConfig | None = None, depth: str = "synthetic") -> DemoResult:
    """Run the demo and write exo.mp4, prior.mp4, ego.mp4, preview.png, report.json;
    `generator` is a built backend or the config to build one from (with its perception
    models). depth: 'synthetic' (estimates with known fusion parameters) or 'estimate'
    (the perception models estimate depth; a built generator must carry them)."""
    from egox_model.perception.perceive import with_perception

    if depth not in ("synthetic", "estimate"):
        raise ConfigError("must be 'synthetic' or 'estimate'", key="depth", value=depth)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(generator, GeneratorConfig):
        if depth == "estimate" and not generator.perception.depth_model:
            raise ConfigError("--depth estimate needs a local metric depth model directory",
                              key="perception.depth_model", value="")
        generator = with_perception(make_generator(generator), generator)
    if depth == "estimate" and getattr(generator, "perception", None) is None:
        raise ConfigError("--depth estimate needs a generator with perception models (set "
                          "perception.depth_model)", key="perception.depth_model", value="")
    scene_config = scene_config or SceneConfig(seed=seed)

    start = time.perf_counter()
    scene = render_scene(scene_config)
    scene_s = time.perf_counter() - start
    if depth == "estimate":
        estimates = None
        clip = dataclasses.replace(scene.to_clip(), exo_depth_m=None, dynamic_mask=None)
    else:
        estimates = synthetic_depth_estimates(scene.exo_depth_m, seed=scene_config.seed)
        clip = scene.to_clip(exo_depth_mono_m=estimates.depth_mono_m,
                             exo_depth_video=estimates.depth_video)
    output = generator.generate(clip)
    prior = output.prior

    static = prior.mask & ~scene.ego_dynamic_mask
    fused_valid = (prior.exo_depth_m > 0) & (scene.exo_depth_m > 0) & prior.exo_static
    fused_rel = np.abs(prior.exo_depth_m - scene.exo_depth_m)[fused_valid] \
        / scene.exo_depth_m[fused_valid]
    alpha, beta = np.asarray(prior.fusion["alpha"]), np.asarray(prior.fusion["beta"])
    report = {
        "backend": output.backend,
        "frames": clip.num_frames,
        "seed": scene_config.seed,
        "exo_size": list(scene_config.exo_size),
        "ego_size": list(scene_config.ego_size),
        "prior_psnr_covered_db": psnr(prior.rgb, scene.ego_rgb, static),
        "prior_psnr_covisible_db": psnr(prior.rgb, scene.ego_rgb, static & scene.ego_covisible),
        # The 5 px square splat reference (egox eval prior) on the same depth and pixels
        # (it lifts one static exo view).
        "reference_psnr_covisible_db": None if scene_config.exo_motion_m else psnr(
            reference_prior(clip, prior), scene.ego_rgb, static & scene.ego_covisible),
        "prior_coverage": float(prior.mask.mean()),
        "output_psnr_db": psnr(output.ego_rgb, scene.ego_rgb),
        "output_ssim": ssim(output.ego_rgb, scene.ego_rgb),
        "depth": depth,
        "fused_depth_abs_rel_median": float(np.median(fused_rel)) if fused_rel.size else None,
        "motion_mask_iou": _mask_iou(motion_masks(clip.exo_rgb), scene.dynamic_mask),
        "dynamic_mask_iou": _mask_iou(~prior.exo_static, scene.dynamic_mask),
        "ms_per_frame": {k: round(v, 3) for k, v in output.ms_per_frame.items()},
        "scene_render_s": round(scene_s, 3),
        "points": prior.fusion.get("points"),
        "diagnostics": output.diagnostics,
    }
    if estimates is not None:
        report["fusion_alpha_rel_err"] = float(np.mean(np.abs(alpha - estimates.alpha)
                                                       / estimates.alpha))
        report["fusion_beta_rel_err"] = float(np.mean(np.abs(beta - estimates.beta)
                                                      / np.abs(estimates.beta)))
    write_video(out_dir / "exo.mp4", scene.exo_rgb, scene.fps)
    write_video(out_dir / "prior.mp4", prior.rgb, scene.fps)
    write_video(out_dir / "ego.mp4", output.ego_rgb, scene.fps)
    write_preview(out_dir / "preview.png", scene, output)
    write_report(out_dir / "report.json", report)
    return DemoResult(scene, clip, output, report)
