"""`egox bench perception`: ms per frame of every perception stage at the default exo size,
beside the prior stage (fusion + lift + render) of the same clip, in one run.

Depth models: the configured directories (`perception.depth_model`, `video_depth_model`)
when given, else random-weight models built in memory: tiny ones (`size` 'tiny', the CPU
default) or the published architectures' sizes (`size` 'real', the GPU default: Depth
Anything V2 Small and Large, Depth Pro). Every model runs once on one frame to warm up, then
on the whole clip in batches (`perception.batch_size`). Also timed: D_v's frame-to-frame
alignment, motion masks for a static and (compensated) for a moving exo camera, and the
mask model (the configured one, else a random-weight SAM 3: tiny, or its default config at
`size` 'real').
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from egox_model.geometry.depth_fusion import FusionConfig
from egox_model.geometry.dynamic import motion_masks
from egox_model.perception.config import PerceptionConfig
from egox_model.perception.model_dir import licence_of, resolve_device, resolve_dtype
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.scene import SceneConfig, render_scene, synthetic_depth_estimates

__all__ = ["PerceptionBenchConfig", "format_perception_bench", "run_perception_bench"]

#: Random-weight models timed per `size` when no directory is configured.
MODELS = {"tiny": ("tiny-depth-pro", "tiny-da-metric", "tiny-da-relative"),
          "real": ("depth-pro", "da-v2-small", "da-v2-large")}


@dataclass(frozen=True)
class PerceptionBenchConfig:
    """What `run_perception_bench` measures."""

    frames: int = 9
    exo_size: tuple[int, int] = (448, 784)
    size: str = "tiny"
    repeats: int = 1
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)


def _median_ms(fn: Callable[[], object], repeats: int, frames: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3 / frames)
    return statistics.median(times)


def _estimators(config: PerceptionBenchConfig) -> list[tuple[str, object]]:
    from egox_model.perception.depth import TransformersDepthEstimator, load_depth_estimator
    from egox_model.perception.tiny import build_depth_model

    p = config.perception
    common = dict(device=p.device, dtype=p.dtype, batch_size=p.batch_size)
    found = [(f"depth_model {p.depth_model}",
              load_depth_estimator(p.depth_model, "perception.depth_model", **common))
             ] if p.depth_model else []
    if p.video_depth_model:
        found.append((f"video_depth_model {p.video_depth_model}",
                      load_depth_estimator(p.video_depth_model, "perception.video_depth_model",
                                           **common)))
    if found:
        return found
    device = resolve_device(p.device)
    dtype = resolve_dtype(p.dtype, device)
    for name in MODELS[config.size]:
        model, processor = build_depth_model(name)
        info = {"licence": f"random weights ({licence_of('', model.config.to_dict())})"}
        found.append((name, TransformersDepthEstimator(model, processor, device=device,
                                                       dtype=dtype, batch_size=p.batch_size,
                                                       info=info)))
    return found


def run_perception_bench(config: PerceptionBenchConfig = PerceptionBenchConfig()) -> dict:
    """Time every stage (module docstring); returns a JSON-ready dict."""
    scene = render_scene(SceneConfig(num_frames=config.frames, exo_size=config.exo_size,
                                     ego_size=(448, 448)))
    frames, K, num = scene.exo_rgb, scene.exo_K, config.frames
    rows: list[dict] = []
    for name, estimator in _estimators(config):
        estimator.estimate(frames[:1], K)                                     # warm-up
        ms = _median_ms(lambda e=estimator: e.estimate(frames, K), config.repeats, num)
        params = sum(p.numel() for p in estimator.model.parameters())
        h, w = estimator.input_size(*config.exo_size)
        rows.append({"stage": f"depth: {name}", "ms_per_frame": round(ms, 3),
                     "params_m": round(params / 1e6, 3), "input": f"{h}x{w}",
                     "kind": estimator.kind, "device": estimator.info["device"],
                     "dtype": estimator.info["dtype"], "licence": estimator.info["licence"]})

    from egox_model.perception.temporal import video_depth

    rng = np.random.default_rng(0)
    with np.errstate(divide="ignore"):
        inv = np.where(scene.exo_depth_m > 0, 1 / scene.exo_depth_m, 0)
    flicker = (inv * rng.uniform(0.5, 2, (num, 1, 1)) + rng.uniform(0, 0.3, (num, 1, 1)))
    flicker = np.where(inv > 0, flicker, 0).astype(np.float32)
    rows.append({"stage": "video depth: frame-to-frame alignment (D_v)", "ms_per_frame": round(
        _median_ms(lambda: video_depth(flicker, None, FusionConfig()), config.repeats, num), 3)})
    mconfig = config.prior.motion
    rows.append({"stage": "masks: motion, static camera", "ms_per_frame": round(_median_ms(
        lambda: motion_masks(frames, mconfig), config.repeats, num), 3)})
    moving = scene.exo_c2w.copy()
    moving[:, :3, 3] += np.linspace(0, 0.05, num)[:, None]
    rows.append({"stage": f"masks: motion, moving camera (compensated, window "
                          f"{mconfig.window})", "ms_per_frame": round(_median_ms(
                              lambda: motion_masks(frames, mconfig, depth_m=scene.exo_depth_m,
                                                   K=K, c2w=moving), config.repeats, num), 3)})
    from egox_model.perception.masks import TextMaskEstimator
    from egox_model.perception.sam3 import Sam3VideoSegmenter, load_sam3_segmenter

    p = config.perception
    if p.mask_model:
        segmenter, name = load_sam3_segmenter(p.mask_model, device=p.device,
                                              dtype=p.dtype), p.mask_model
    else:                              # random weights: tiny, or SAM 3's own default config
        from egox_model.perception.tiny import build_sam3_tokenizer, build_sam3_video_model

        device = resolve_device(p.device)
        if config.size == "tiny":
            model, side, name = build_sam3_video_model(), 56, "tiny-sam3-video"
        else:
            from transformers import Sam3VideoConfig, Sam3VideoModel

            model, side, name = Sam3VideoModel(Sam3VideoConfig()).eval(), 1008, "sam3-video"
        segmenter = Sam3VideoSegmenter(
            model, build_sam3_tokenizer(), {"size": {"height": side, "width": side}},
            device=device, dtype=resolve_dtype(p.dtype, device),
            info={"licence": "random weights (SAM licence for the released ones)"})
    masks = TextMaskEstimator(segmenter, p.mask_dilate_px)
    phrases = list(p.mask_phrases)
    masks.estimate(frames[:1], phrases)                                       # warm-up
    ms = _median_ms(lambda: masks.estimate(frames, phrases), config.repeats, num)
    rows.append({"stage": f"masks: {name} ({len(phrases)} phrases)", "ms_per_frame": round(ms, 3),
                 "params_m": round(sum(q.numel() for q in segmenter.model.parameters()) / 1e6,
                                   3), "input": f"{segmenter.input_size[0]}x"
                 f"{segmenter.input_size[1]}", "device": segmenter.info["device"],
                 "dtype": segmenter.info["dtype"], "licence": segmenter.info.get("licence")})

    estimates = synthetic_depth_estimates(scene.exo_depth_m)
    clip = scene.to_clip(exo_depth_mono_m=estimates.depth_mono_m,
                         exo_depth_video=estimates.depth_video)
    render_ego_prior(clip, config.prior)                                      # warm-up
    stages = [render_ego_prior(clip, config.prior).ms_per_frame
              for _ in range(config.repeats)]
    prior = {k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]}
    return {"frames": num, "exo_size": list(config.exo_size), "size": config.size,
            "torch_threads": torch.get_num_threads(), "rows": rows,
            "prior_ms_per_frame": round(sum(prior.values()), 3),
            "prior_stages_ms_per_frame": prior, "prior_device": config.prior.device}


def format_perception_bench(result: dict) -> str:
    """The result as a table, the prior stage last."""
    lines = [f"perception at exo {result['exo_size'][0]}x{result['exo_size'][1]}, "
             f"{result['frames']} frames ({result['size']} models where none is configured; "
             f"{result['torch_threads']} CPU threads)",
             f"{'stage':<60} {'ms/frame':>10}  notes"]
    for row in result["rows"]:
        keys = ("params_m", "input", "kind", "device", "dtype", "licence")
        notes = ", ".join(f"{k} {row[k]}" for k in keys if k in row)
        lines.append(f"{row['stage'][:60]:<60} {row['ms_per_frame']:>10.2f}  {notes}")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result["prior_stages_ms_per_frame"].items())
    lines.append(f"{'prior (fusion + lift + render), ' + result['prior_device']:<60} "
                 f"{result['prior_ms_per_frame']:>10.2f}  {stages}")
    return "\n".join(lines)
