"""`egox eval seams`: is a long episode made of overlapping clips continuous at the seams?

The synthetic scene (egox_model.scene) is cut into clips of `length` frames every `stride`
frames and generated through `ClipStream` as the node does (each frame output once, later
clips continuing from the earlier clip's output of the shared frames). Figure: the mean
absolute frame-to-frame change (uint8 levels) of the stitched stream across clip boundaries
(last frame of a clip -> first new frame of the next) over the same within clips; a ratio
near 1 means no visible seam. Backends: `prior`, and the tiny random-weight `wan` model (built
in a temporary directory and loaded through the user's path, CPU) with continuation on and
off (`wan.conditioning.previous_output`) in the same run.

For `wan` also the continuation check itself: how far each clip's output of the shared frames
is from the VAE round trip of the earlier clip's output (0 when the latents are held fixed),
beside the round trip's own error. Random weights give noise-like video whose VAE is no
autoencoder: the ratio there measures the mechanism, not the quality of a trained model.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egox_model.clip import Clip
from egox_model.clip_stream import generate_clips, stitch_outputs
from egox_model.generator.base import Generator

__all__ = ["SeamsConfig", "format_seams", "frame_changes", "run_seams", "seam_ratio"]


@dataclass(frozen=True)
class SeamsConfig:
    """Clips of `length` frames every `stride` (overlap 4m+1 for wan) over `frames` frames of
    the synthetic scene at (H, W) sizes; `steps` denoising steps of the tiny wan model."""

    frames: int = 25
    length: int = 9
    stride: int = 4
    exo_size: tuple[int, int] = (32, 64)
    ego_size: tuple[int, int] = (32, 32)
    steps: int = 4
    seed: int = 0


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change (uint8 levels) from each frame to the next: (N - 1,)."""
    video = np.asarray(frames, dtype=np.float32)
    return np.abs(np.diff(video, axis=0)).reshape(len(video) - 1, -1).mean(axis=1)


def seam_ratio(frames: np.ndarray, clip_starts: list[int]) -> dict[str, float]:
    """Mean change across the boundaries (into each clip start but the first) and within
    clips, and their ratio."""
    changes = frame_changes(frames)
    at_seam = np.zeros(len(changes), bool)
    at_seam[[start - 1 for start in clip_starts[1:]]] = True
    boundary, within = float(changes[at_seam].mean()), float(changes[~at_seam].mean())
    return {"boundary": boundary, "within": within, "ratio": boundary / within}


def _stream_figures(generator: Generator, clip: Clip, config: SeamsConfig) -> dict:
    done = generate_clips(generator, clip, config.length, config.stride)
    stitched = stitch_outputs([(start, output) for _, start, output in done])
    figures = seam_ratio(stitched.ego_rgb, stitched.diagnostics["clip_starts"])
    figures["clips"] = len(done)
    figures["context_frames"] = stitched.diagnostics.get("context_frames", 0)
    figures["done"] = done
    return figures


def _round_trip(pipe, frames: np.ndarray) -> np.ndarray:
    from egox_model.generator.wan.conditioning import (decode_latents, encode_video,
                                                       frames_to_video_tensor,
                                                       video_tensor_to_frames)
    device = pipe._execution_device
    latents = encode_video(pipe.vae, frames_to_video_tensor(frames), device)
    return video_tensor_to_frames(decode_latents(pipe.vae, latents, device))


def _continuation_check(pipe, done: list) -> dict[str, float]:
    """Mean |shared frames of clip k - VAE round trip of clip k-1's output of them| and the
    round trip's own error |round trip - clip k-1's output|, over the clips."""
    to_round_trip, round_trip_error = [], []
    for (_, _, before), (window, _, after) in zip(done, done[1:]):
        k = len(before.ego_rgb) - int(np.flatnonzero(before.stamps_ns == window.stamps_ns[0])[0])
        shared_before = before.ego_rgb[-k:]
        expected = _round_trip(pipe, shared_before).astype(np.float32)
        to_round_trip.append(np.abs(after.ego_rgb[:k] - expected).mean())
        round_trip_error.append(np.abs(expected - shared_before).mean())
    return {"overlap_vs_round_trip": float(np.mean(to_round_trip)),
            "round_trip_error": float(np.mean(round_trip_error))}


def run_seams(config: SeamsConfig = SeamsConfig()) -> dict:
    """The figures of every backend and setting, as a JSON-ready dict."""
    from egox_model.generator.prior_backend import PriorGenerator
    from egox_model.generator.wan import ConditioningOptions, WanConfig, WanGenerator
    from egox_model.generator.wan.tiny import save_tiny_model_dir
    from egox_model.scene import SceneConfig, render_scene

    scene = render_scene(SceneConfig(seed=config.seed, num_frames=config.frames,
                                     exo_size=config.exo_size, ego_size=config.ego_size))
    clip = scene.to_clip()
    rows = []
    prior = _stream_figures(PriorGenerator(), clip, config)
    rows.append({"backend": "prior", "continuation": "n/a (ignores context)",
                 **{k: v for k, v in prior.items() if k != "done"}})
    torch.manual_seed(config.seed)
    with tempfile.TemporaryDirectory(prefix="egox-seams-") as tmp:
        model_dir = save_tiny_model_dir(Path(tmp) / "wan", seed=config.seed)
        wan_config = WanConfig(model_dir=str(model_dir), device="cpu", dtype="float32",
                               num_inference_steps=config.steps, progress=False,
                               seed=config.seed)
        on = WanGenerator(wan_config)
        off = WanGenerator(dataclasses.replace(wan_config, conditioning=ConditioningOptions(
            previous_output=False)), pipe=on.pipe)
        for name, generator in (("on", on), ("off", off)):
            figures = _stream_figures(generator, clip, config)
            check = _continuation_check(on.pipe, figures.pop("done"))
            rows.append({"backend": "wan (tiny, random weights)", "continuation": name,
                         **figures, **check})
    return {"frames": config.frames, "clip_length": config.length,
            "clip_stride": config.stride, "overlap": config.length - config.stride,
            "exo_size": list(config.exo_size), "ego_size": list(config.ego_size),
            "wan_steps": config.steps, "target_ratio": 1.2, "rows": rows}


def format_seams(result: dict) -> str:
    """A table of `run_seams`' result."""
    lines = [f"seams: synthetic scene, {result['frames']} frames, clips of "
             f"{result['clip_length']} every {result['clip_stride']} (overlap "
             f"{result['overlap']}), ego {result['ego_size'][0]}x{result['ego_size'][1]}; "
             "mean |frame t+1 - frame t| in uint8 levels",
             f"{'backend':28s} {'continuation':22s} {'boundary':>9s} {'within':>8s} "
             f"{'ratio':>6s} {'overlap-vs-RT':>14s} {'RT error':>9s}"]
    for row in result["rows"]:
        extra = (f"{row['overlap_vs_round_trip']:14.2f} {row['round_trip_error']:9.2f}"
                 if "round_trip_error" in row else f"{'-':>14s} {'-':>9s}")
        lines.append(f"{row['backend']:28s} {row['continuation']:22s} {row['boundary']:9.2f} "
                     f"{row['within']:8.2f} {row['ratio']:6.2f} {extra}")
    lines.append(f"target: ratio <= {result['target_ratio']} with continuation. "
                 "overlap-vs-RT: a clip's output of the shared frames vs the VAE round trip "
                 "(RT) of the earlier clip's (0 = held fixed); RT error: the round trip's own "
                 "error (a random-weight VAE is no autoencoder, so wan's ratio here checks the "
                 "mechanism, not a trained model's seams)")
    return "\n".join(lines)
