"""Per-clip quality scores a data curator can filter on, computed without ground truth.

From one `GeneratorOutput` (ego frames O, the ego prior P with its coverage mask M):

- `prior_psnr_db`: PSNR in dB of O against P over every covered pixel of every frame (how
  closely the generated video keeps to the geometry it was conditioned on; inf when equal,
  nan when nothing is covered).
- `prior_coverage`: fraction of ego pixels the prior covers, over the clip (0..1).
- `flicker`: temporal change of the output not explained by the prior, in 8-bit levels:
  mean over t and colour channels of |(O[t+1] - O[t]) - (P[t+1] - P[t])| on the pixels
  covered in both frames t and t+1. Covered pixels show static world points only (dynamic
  exo pixels are never lifted), and P moves with the ego camera, so this is flicker on
  static covered regions: 0 when O equals P, 0 for a constant offset, large when the model
  changes a static surface from frame to frame. A dynamic object that occludes covered
  pixels in the ego view counts as change too (no ground truth tells it apart). nan for a
  single frame or no pixel covered twice.
- `fusion_residual_rms_mean`, `fusion_residual_rms_max`: the depth fusion's per-frame RMS
  relative inverse-depth residual (`egox_model.geometry.depth_fusion`), mean and worst
  frame, and `fusion_failed_frames`: frames whose own fit failed. nan / 0 when the clip
  had metric depth (no fusion ran).
- `fusion_plane_scale`: the median scale correction taken from the known plane
  (`prior.plane`, `egox_model.geometry.plane_scale`); nan when that is off, or when no
  frame's plane qualified (the clip kept D_m's scale: worth filtering on).
- `backend`, `frames`, `first_stamp_ns`, `last_stamp_ns` and `settings`: the backend's
  scalar diagnostics (e.g. steps, seed, guidance_scale, gga.strength), dotted keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from egox_model.errors import InputError
from egox_model.eval.metrics import psnr
from egox_model.output import GeneratorOutput

__all__ = ["ClipQuality", "NUMERIC_KEYS", "QUALITY_KEYS", "clip_quality",
           "temporal_flicker"]

#: The numeric scores, in the order they are published.
NUMERIC_KEYS = ("prior_psnr_db", "prior_coverage", "flicker", "fusion_residual_rms_mean",
                "fusion_residual_rms_max", "fusion_failed_frames", "fusion_plane_scale",
                "frames", "first_stamp_ns", "last_stamp_ns")
#: The keys a quality filter expression may use (`egox_model.quality_filter`).
QUALITY_KEYS = frozenset({*NUMERIC_KEYS, "backend"})


@dataclass(frozen=True)
class ClipQuality:
    """The scores of one clip (see the module docstring for each)."""

    backend: str
    frames: int
    first_stamp_ns: int
    last_stamp_ns: int
    prior_psnr_db: float
    prior_coverage: float
    flicker: float
    fusion_residual_rms_mean: float
    fusion_residual_rms_max: float
    fusion_failed_frames: int
    fusion_plane_scale: float = math.nan
    settings: dict[str, str | int | float | bool] = field(default_factory=dict)

    def values(self) -> dict[str, float | int | str]:
        """Every score under its key, `backend`, and the settings as `setting.<key>`."""
        out: dict[str, float | int | str] = {"backend": self.backend}
        out.update({key: getattr(self, key) for key in NUMERIC_KEYS})
        out.update({f"setting.{k}": v for k, v in self.settings.items()})
        return out

    @classmethod
    def from_values(cls, values: dict[str, str]) -> ClipQuality:
        """Parse the string key/values of a published clip_quality status back."""
        integers = ("frames", "fusion_failed_frames", "first_stamp_ns", "last_stamp_ns")
        try:
            nums = {k: int(values[k]) if k in integers else float(values[k])
                    for k in NUMERIC_KEYS}
        except (KeyError, ValueError) as err:
            raise InputError(f"clip quality values lack or mangle {err}: {values}") from err
        settings = {k[len("setting."):]: v for k, v in values.items()
                    if k.startswith("setting.")}
        return cls(backend=values.get("backend", ""), settings=settings, **nums)


def temporal_flicker(output_rgb: np.ndarray, prior_rgb: np.ndarray, mask: np.ndarray) -> float:
    """Mean |dO - dP| (8-bit levels) between consecutive frames over pixels covered in both;
    output_rgb, prior_rgb (F, h, w, 3) uint8, mask (F, h, w) bool."""
    if output_rgb.shape != prior_rgb.shape or mask.shape != output_rgb.shape[:-1]:
        raise InputError(f"output {output_rgb.shape}, prior {prior_rgb.shape} and mask "
                         f"{mask.shape} do not match")
    total, count = 0, 0
    for t in range(len(output_rgb) - 1):
        both = mask[t] & mask[t + 1]
        change = ((output_rgb[t + 1].astype(np.int16) - output_rgb[t])
                  - (prior_rgb[t + 1].astype(np.int16) - prior_rgb[t]))
        per_pixel = np.abs(change).sum(-1, dtype=np.int32)
        total += int(np.where(both, per_pixel, 0).sum(dtype=np.int64))
        count += 3 * int(both.sum())
    return total / count if count else float("nan")


def _scalar_settings(diagnostics: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """The scalar entries of a (nested) diagnostics dict, nested keys joined with '.'."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in diagnostics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_scalar_settings(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)) and key != "note":
            out[name] = value
    return out


def clip_quality(output: GeneratorOutput, stamps_ns: np.ndarray | None = None) -> ClipQuality:
    """Score one generated clip; `stamps_ns` (F,) defaults to `output.stamps_ns`. An output
    without the prior's frames (backend remote with return_prior false: shape (F, 0, 0, 3))
    gets nan for the scores that compare with it."""
    prior = output.prior
    stamps = output.stamps_ns if stamps_ns is None else stamps_ns
    if stamps is None or len(stamps) != len(output.ego_rgb):
        raise InputError(f"need one stamp per frame: {0 if stamps is None else len(stamps)} "
                         f"stamps for {len(output.ego_rgb)} frames")
    ego = np.asarray(output.ego_rgb)
    has_prior = prior.rgb.size > 0
    if has_prior and ego.shape != prior.rgb.shape:
        raise InputError(f"output frames {ego.shape} and prior {prior.rgb.shape} differ in "
                         "shape: the scores compare them pixel by pixel")
    residual = np.asarray(prior.fusion.get("residual_rms", []), dtype=np.float64)
    finite = residual[np.isfinite(residual)]
    alpha_fit = np.asarray(prior.fusion.get("alpha_fit", []), dtype=np.float64)
    plane = prior.fusion.get("plane", {})
    return ClipQuality(
        backend=output.backend, frames=len(ego), first_stamp_ns=int(stamps[0]),
        last_stamp_ns=int(stamps[-1]),
        prior_psnr_db=psnr(ego, prior.rgb, prior.mask) if has_prior else math.nan,
        prior_coverage=float(prior.mask.mean()) if has_prior else math.nan,
        flicker=temporal_flicker(ego, prior.rgb, prior.mask) if has_prior else math.nan,
        fusion_residual_rms_mean=float(finite.mean()) if finite.size else math.nan,
        fusion_residual_rms_max=float(finite.max()) if finite.size else math.nan,
        fusion_failed_frames=int((~np.isfinite(alpha_fit)).sum()),
        fusion_plane_scale=float(plane["scale"]) if plane.get("found_frames") else math.nan,
        settings=_scalar_settings(output.diagnostics))
