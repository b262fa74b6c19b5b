"""FVD: the Frechet distance between I3D features of generated and real video windows.

The feature extractor is the standard one of FVD implementations in PyTorch (StyleGAN-V,
content-debiased FVD, most video-generation papers): the Kinetics-400 I3D exported as a
TorchScript file `i3d_torchscript.pt`, called as `detector(x, rescale=False, resize=False,
return_features=True)` on x (N, 3, T, 224, 224) float in [-1, 1] and returning (N, 400)
logits before the softmax. Frames are resized (shorter side 224, bilinear) and centre
cropped here. Each clip gives its non-overlapping windows of `window` frames (16 by
default); FVD compares the two sets of windows of a split.

Only the real I3D file gives numbers comparable with published FVDs (and then only for the
same window length, resolution and clip count: with fewer windows than the 400 feature
dimensions the estimate is biased upwards). A different TorchScript file with the same call
signature runs too (the tests use a tiny random one).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.errors import InputError, ModelLoadError
from egox_model.eval.frechet import feature_stats, frechet_distance

__all__ = ["I3D_FILE", "VideoFeatures", "fvd", "load_video_features"]

I3D_FILE = "i3d_torchscript.pt"


class VideoFeatures:
    """A TorchScript video feature extractor with FVD's input convention."""

    def __init__(self, detector: torch.jit.ScriptModule, window: int = 16, size: int = 224,
                 batch: int = 4) -> None:
        if window < 1:
            raise InputError(f"FVD window must be >= 1 frame, got {window}")
        self.detector, self.window, self.size, self.batch = detector, window, size, batch

    def _windows(self, frames: np.ndarray) -> torch.Tensor:
        """(W, 3, window, size, size) in [-1, 1]: the clip's whole windows, resized."""
        count = len(frames) // self.window
        if count == 0:
            raise InputError(f"a clip of {len(frames)} frames is shorter than the FVD window "
                             f"of {self.window}; lower --fvd-window")
        video = torch.from_numpy(np.ascontiguousarray(frames[:count * self.window]))
        video = video.permute(0, 3, 1, 2).float() / 255.0          # (T, 3, H, W)
        h, w = video.shape[-2:]
        scale = self.size / min(h, w)
        resized = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        video = F.interpolate(video, size=resized, mode="bilinear", align_corners=False)
        top, left = (resized[0] - self.size) // 2, (resized[1] - self.size) // 2
        video = video[..., top:top + self.size, left:left + self.size] * 2.0 - 1.0
        return video.reshape(count, self.window, 3, self.size, self.size).transpose(1, 2)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Features (W, D) float64 of the windows of one clip (F, H, W, 3) uint8."""
        windows = self._windows(frames)
        device = next(iter(self.detector.parameters()), torch.empty(0)).device
        feats = [self.detector(windows[i:i + self.batch].to(device), rescale=False,
                               resize=False, return_features=True)
                 for i in range(0, len(windows), self.batch)]
        return torch.cat(feats).double().cpu().numpy().reshape(len(windows), -1)


def fvd(predicted_features: np.ndarray, target_features: np.ndarray) -> float:
    """FVD of two feature sets (N, D), each N >= 2 windows."""
    return frechet_distance(feature_stats(predicted_features), feature_stats(target_features))


def load_video_features(path: str | Path, device: str = "cpu", window: int = 16,
                        setting: str = "--i3d") -> VideoFeatures:
    """The extractor of a local TorchScript file (a directory holding `i3d_torchscript.pt`
    also works); ModelLoadError names what is missing."""
    path = Path(path)
    if path.is_dir():
        path = path / I3D_FILE
    if not path.is_file():
        raise ModelLoadError(f"{setting}={str(path)!r} does not exist; FVD needs the "
                             f"TorchScript I3D ({I3D_FILE}, as used by StyleGAN-V's FVD) on "
                             "local disk (nothing is downloaded)")
    try:
        detector = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise ModelLoadError(f"{setting}={str(path)!r} is not a TorchScript module: "
                             f"{err}") from err
    return VideoFeatures(detector, window=window)
