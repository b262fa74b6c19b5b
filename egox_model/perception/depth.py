"""Per-frame depth models on transformers' classes: Depth Anything (V2) and Depth Pro.

- `DepthAnythingForDepthEstimation`: relative inverse depth (the V2 checkpoints), or metric
  depth in metres when its config says `depth_estimation_type: "metric"` (the V2 Metric
  checkpoints). Input: resized as its image processor does (keep the aspect ratio, sides a
  multiple of 14, the short side at the processor's size), ImageNet-normalised.
- `DepthProForDepthEstimation`: metric. The model predicts a canonical inverse depth c at a
  fixed square size (patch_size / smallest scaled_images_ratio); metric depth is
  f_x / (W c) with the exo camera's known focal length f_x and width W (the model's own
  field-of-view head is only the fallback of upstream's post-processing when f is unknown).

Frames are preprocessed on the model's device in batches (`batch_size`), in bfloat16 on GPU
by default; outputs are resized back to the frames' size and returned as float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.errors import ModelLoadError
from egox_model.geometry.camera import Intrinsics
from egox_model.perception.base import DepthEstimator, DepthPrediction, check_frames
from egox_model.perception.model_dir import (check_model_dir, licence_of, load_pretrained,
                                             read_json, resolve_device, resolve_dtype)

__all__ = ["DEPTH_MODEL_TYPES", "TransformersDepthEstimator", "load_depth_estimator"]

#: config.json model_type -> what it is.
DEPTH_MODEL_TYPES = {"depth_anything": "DepthAnythingForDepthEstimation (Depth Anything V2)",
                     "depth_pro": "DepthProForDepthEstimation (Depth Pro)"}
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _multiple(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


class TransformersDepthEstimator(DepthEstimator):
    """A loaded Depth Anything or Depth Pro model (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, processor: dict, *, device: torch.device,
                 dtype: torch.dtype, batch_size: int = 8, info: dict | None = None) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        config = model.config
        self.model_type = config.model_type
        if self.model_type == "depth_pro":
            self.kind = "metric"
            side = int(round(config.patch_size / min(config.scaled_images_ratios)))
            self.fixed_size: tuple[int, int] | None = (side, side)
        else:
            self.kind = ("metric" if getattr(config, "depth_estimation_type", "relative")
                         == "metric" else "inverse_relative")
            self.fixed_size = None
        size = processor.get("size") or {}
        self.target = (int(size.get("height", size.get("shortest_edge", 518))),
                       int(size.get("width", size.get("shortest_edge", 518))))
        self.keep_aspect = bool(processor.get("keep_aspect_ratio", True))
        self.multiple = int(processor.get("ensure_multiple_of", 14))
        mean = processor.get("image_mean", _IMAGENET[0])
        std = processor.get("image_std", _IMAGENET[1])
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.info = {"model_type": self.model_type, "kind": self.kind, "device": str(device),
                     "dtype": str(dtype).replace("torch.", ""), **(info or {})}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the model runs at for frames of height x width."""
        if self.fixed_size is not None:
            return self.fixed_size
        th, tw = self.target
        if not self.keep_aspect:
            return _multiple(th, self.multiple), _multiple(tw, self.multiple)
        # As Depth Anything's processor: the scale closer to 1 of the two, both sides
        # multiples of `multiple`.
        sh, sw = th / height, tw / width
        scale = sw if abs(1 - sw) < abs(1 - sh) else sh
        return _multiple(height * scale, self.multiple), _multiple(width * scale, self.multiple)

    @torch.inference_mode()
    def estimate(self, frames: np.ndarray, K: Intrinsics) -> DepthPrediction:
        """Depth (metric m or relative inverse, see `kind`) of frames (F, H, W, 3) uint8."""
        frames = check_frames(frames)
        num, height, width = frames.shape[:3]
        size = self.input_size(height, width)
        out = np.empty((num, height, width), np.float32)
        for start in range(0, num, self.batch_size):
            batch = torch.from_numpy(frames[start:start + self.batch_size]).to(self.device)
            x = batch.permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=True)
            x = ((x - self.mean) / self.std).to(self.dtype)
            pred = self.model(pixel_values=x).predicted_depth.float()
            pred = F.interpolate(pred[:, None], size=(height, width), mode="bilinear",
                                 align_corners=False)[:, 0]
            if self.model_type == "depth_pro":
                # canonical inverse depth c -> metric depth f_x / (W c)
                pred = K.fx / (width * pred.clamp(min=1e-4, max=1e4))
            pred = torch.nan_to_num(pred, nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0.0)
            out[start:start + len(batch)] = pred.cpu().numpy()
        return DepthPrediction(out, self.kind)


def load_depth_estimator(model_dir: str | Path, setting: str, *, device: str = "auto",
                         dtype: str = "auto", batch_size: int = 8,
                         require_metric: bool = False) -> TransformersDepthEstimator:
    """Load a Depth Anything / Depth Pro directory (the value of `setting`) for inference.

    `require_metric`: refuse models that predict relative depth (the D_m slot)."""
    from transformers import DepthAnythingForDepthEstimation, DepthProForDepthEstimation

    config = check_model_dir(model_dir, setting, DEPTH_MODEL_TYPES)
    kind = ("metric" if config["model_type"] == "depth_pro"
            or config.get("depth_estimation_type") == "metric" else "inverse_relative")
    if require_metric and kind != "metric":
        raise ModelLoadError(f"{setting}={str(model_dir)!r} is a relative-depth model "
                             "(config.json depth_estimation_type is not 'metric'); D_m needs "
                             "metric depth: use Depth Pro or a Depth Anything V2 Metric "
                             "checkpoint, and give this one as perception.video_depth_model")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    cls = (DepthProForDepthEstimation if config["model_type"] == "depth_pro"
           else DepthAnythingForDepthEstimation)
    model = load_pretrained(cls, model_dir, setting, dtype=torch_dtype)
    processor = read_json(Path(model_dir) / "preprocessor_config.json")
    info = {"model_dir": str(model_dir), "licence": licence_of(model_dir, config)}
    return TransformersDepthEstimator(model, processor, device=torch_device, dtype=torch_dtype,
                                      batch_size=batch_size, info=info)
