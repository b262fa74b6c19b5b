"""`Clip`: one synchronized stretch of exo frames and ego poses, the unit every backend eats.

All poses are camera-to-world 4x4 float64 in one world frame, optical camera axes (REP 103).
Images are HxWx3 uint8 RGB; depth is float32 metres (0 or NaN = invalid).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import check_c2w
from egox_model.validation import require_shape

__all__ = ["Clip", "ClipContext"]


@dataclass
class ClipContext:
    """What the clip before this one made of their shared frames (overlapping clips): its
    output ego frames (k, h, w, 3) uint8 at ego_K's size, for this clip's first k frames,
    with their source exo stamps (k,) int64. Diffusion backends continue from them
    (docs/wan.md, "Long episodes"); the prior backend does not need them."""

    ego_rgb: np.ndarray
    stamps_ns: np.ndarray

    def __post_init__(self) -> None:
        self.ego_rgb = np.asarray(self.ego_rgb)
        self.stamps_ns = np.asarray(self.stamps_ns, dtype=np.int64)
        if self.ego_rgb.ndim != 4 or self.ego_rgb.shape[-1] != 3 or self.ego_rgb.dtype != np.uint8:
            raise InputError(f"context ego_rgb must be (k, h, w, 3) uint8 RGB, got shape "
                             f"{self.ego_rgb.shape} dtype {self.ego_rgb.dtype}")
        require_shape("context stamps_ns", self.stamps_ns, (len(self.ego_rgb),))

    @property
    def num_frames(self) -> int:
        """Number of context frames k."""
        return len(self.ego_rgb)


@dataclass
class Clip:
    """F frames of exo video plus the ego camera trajectory to synthesize.

    Depth comes either as `exo_depth_m` (an RGB-D camera, or already fused) or as the two
    estimates EgoX fuses: `exo_depth_mono_m` (metric, per-frame, D_m) and `exo_depth_video`
    (temporally smooth, affine-ambiguous in inverse depth, D_v). A clip of a plain RGB camera
    has neither until `egox_model.perception` estimates them.
    """

    exo_rgb: np.ndarray                      # (F, H, W, 3) uint8
    exo_K: Intrinsics                        # pinhole intrinsics of exo_rgb (undistorted)
    exo_c2w: np.ndarray                      # (F, 4, 4) float64
    ego_K: Intrinsics                        # output ego camera
    ego_c2w: np.ndarray                      # (F, 4, 4) float64
    stamps_ns: np.ndarray | None = None      # (F,) int64 source exo stamps
    exo_depth_m: np.ndarray | None = None    # (F, H, W) float32 metric depth
    exo_depth_mono_m: np.ndarray | None = None
    exo_depth_video: np.ndarray | None = None
    dynamic_mask: np.ndarray | None = None   # (F, H, W) bool, True = moving object
    prompt: str = ""
    fps: float = 30.0
    context: ClipContext | None = None       # the previous clip's output of frames [:k]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.exo_rgb = np.asarray(self.exo_rgb)
        if self.exo_rgb.ndim != 4 or self.exo_rgb.shape[0] == 0:
            raise InputError(f"exo_rgb must be a non-empty (F, H, W, 3) array, "
                             f"got shape {self.exo_rgb.shape}")
        F, H, W = self.exo_rgb.shape[:3]
        require_shape("exo_rgb", self.exo_rgb, (F, H, W, 3))
        if self.exo_rgb.dtype != np.uint8:
            raise InputError(f"exo_rgb must be uint8 RGB, got dtype {self.exo_rgb.dtype}")
        if (self.exo_K.width, self.exo_K.height) != (W, H):
            raise InputError(f"exo_K is for {self.exo_K.width}x{self.exo_K.height} images but "
                             f"exo_rgb frames are {W}x{H}")
        self.exo_c2w = check_c2w("exo_c2w", self.exo_c2w)
        self.ego_c2w = check_c2w("ego_c2w", self.ego_c2w)
        require_shape("exo_c2w", self.exo_c2w, (F, 4, 4))
        require_shape("ego_c2w", self.ego_c2w, (F, 4, 4))
        for name in ("exo_depth_m", "exo_depth_mono_m", "exo_depth_video"):
            depth = getattr(self, name)
            if depth is not None:
                depth = np.asarray(depth, dtype=np.float32)
                require_shape(name, depth, (F, H, W))
                setattr(self, name, depth)
        if self.exo_depth_m is None and ((self.exo_depth_mono_m is None)
                                         != (self.exo_depth_video is None)):
            raise InputError("a clip needs exo_depth_m, or both exo_depth_mono_m and "
                             "exo_depth_video for depth fusion (or no depth at all, to be "
                             "estimated by perception.* models)")
        if self.dynamic_mask is not None:
            self.dynamic_mask = np.asarray(self.dynamic_mask, dtype=bool)
            require_shape("dynamic_mask", self.dynamic_mask, (F, H, W))
        if self.stamps_ns is not None:
            self.stamps_ns = np.asarray(self.stamps_ns, dtype=np.int64)
            require_shape("stamps_ns", self.stamps_ns, (F,))
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"fps must be positive, got {self.fps}")
        if self.context is not None:
            self._check_context(self.context)

    def _check_context(self, context: ClipContext) -> None:
        k, K = context.num_frames, self.ego_K
        if not 1 <= k < self.num_frames:
            raise InputError(f"context has {k} frames but must cover 1 to {self.num_frames - 1}"
                             f" of the clip's {self.num_frames} (the overlap with the clip "
                             "before)")
        if context.ego_rgb.shape[1:3] != (K.height, K.width):
            raise InputError(f"context frames are {context.ego_rgb.shape[2]}x"
                             f"{context.ego_rgb.shape[1]} but ego_K is {K.width}x{K.height}")
        if self.stamps_ns is not None and not np.array_equal(context.stamps_ns,
                                                             self.stamps_ns[:k]):
            raise InputError("context stamps are not the clip's first stamps: it must be the "
                             "output of the frames this clip shares with the one before")

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return self.exo_rgb.shape[0]

    def window(self, start: int, stop: int) -> Clip:
        """Frames [start, stop) as a new clip (views of this clip's arrays, no context)."""
        if not 0 <= start < stop <= self.num_frames:
            raise InputError(f"frames [{start}, {stop}) are not inside the clip's "
                             f"{self.num_frames}")
        per_frame = ("exo_rgb", "exo_c2w", "ego_c2w", "stamps_ns", "exo_depth_m",
                     "exo_depth_mono_m", "exo_depth_video", "dynamic_mask")
        sliced = {name: getattr(self, name) for name in per_frame}
        sliced = {name: None if v is None else v[start:stop] for name, v in sliced.items()}
        return dataclasses.replace(self, **sliced, context=None, meta=dict(self.meta))
