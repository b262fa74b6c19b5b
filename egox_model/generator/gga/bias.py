"""The GGA logit bias: per-token tables of a clip and the bias rows built from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from egox_model.errors import InputError
from egox_model.generator.gga.config import GGAConfig, GGAForm

if TYPE_CHECKING:
    from egox_model.geometry.tokens import TokenGeometry

__all__ = ["EGO_ROWS_PER_GROUP", "EPS", "GGATables", "ego_bias_rows", "gga_bias",
           "gga_dense_bias", "gga_exo_bias", "gga_tables"]

EPS = 1e-6                 # inside the log, as in the official release
EGO_ROWS_PER_GROUP = 1280  # ego queries per batch entry of the "split" kernel's biased call


def gga_bias(cos: torch.Tensor, strength: float | torch.Tensor, form: GGAForm) -> torch.Tensor:
    """Logit bias from the clamped cosine `cos` in [-1, 1] (any shape, same shape out).

    The official rule "c' = lambda * c, only where c > 0 when lambda > 1" is written as
    c' = c * (lambda if c > 0 else min(lambda, 1)), so a tensor lambda needs no branch.
    """
    if form == "power":
        return strength * torch.log(cos + 1.0 + EPS)
    scale = torch.where(cos > 0, strength, torch.clamp(torch.as_tensor(strength), max=1.0))
    return torch.log(cos * scale + 1.0 + EPS)  # (c' + 1) + eps, as the release


@dataclass(frozen=True)
class GGATables:
    """Per-token lookup tables of one clip on one device (float32 unless stated).

    ego_idx (N_e,) int64: sequence index of each ego token, frame-major.
    exo_idx (N - N_e,) int64: sequence index of each exo token.
    q_dirs (N_e, 3): ego viewing ray of each ego query; q_centers (N_e, 3): its frame's centre.
    k_points (N, 3): world point of each key, 0 for ego keys and invalid exo points.
    k_valid (N,) bool: exo key with a finite point (the only keys that get a bias).
    ego_per_frame: ego tokens per latent frame (h * w_e).
    """

    ego_idx: torch.Tensor
    exo_idx: torch.Tensor
    q_dirs: torch.Tensor
    q_centers: torch.Tensor
    k_points: torch.Tensor
    k_valid: torch.Tensor
    ego_per_frame: int

    @property
    def num_tokens(self) -> int:
        """Sequence length N."""
        return self.k_valid.shape[0]


def gga_tables(geometry: TokenGeometry, device: torch.device | str | None = None) -> GGATables:
    """Lay the token geometry out in Wan's [exo | ego] sequence order on `device`."""
    dirs, centers, points = (x.to(device=device, dtype=torch.float32) for x in
                             (geometry.ego_dirs, geometry.ego_centers, geometry.exo_points))
    if dirs.ndim != 4 or dirs.shape[-1] != 3:
        raise InputError(f"geometry.ego_dirs must be (T, h, w_e, 3), got {tuple(dirs.shape)}")
    num_frames, rows, w_e = dirs.shape[:3]
    if points.ndim != 4 or points.shape[-1] != 3 or points.shape[:2] != (num_frames, rows):
        raise InputError(f"geometry.exo_points must be (T, h, w_x, 3) with T, h = "
                         f"{num_frames}, {rows} as in ego_dirs, got {tuple(points.shape)}")
    if centers.shape != (num_frames, 3):
        raise InputError(f"geometry.ego_centers must be ({num_frames}, 3), "
                         f"got {tuple(centers.shape)}")
    w_x = points.shape[2]
    if 0 in (num_frames, rows, w_e, w_x):
        raise InputError(f"GGA token geometry must have T, h, w_e, w_x >= 1, got "
                         f"{num_frames}, {rows}, {w_e}, {w_x}")
    width = w_x + w_e
    col = torch.arange(width, device=device).expand(num_frames, rows, width)
    is_ego = (col >= w_x).reshape(-1)
    valid = torch.isfinite(points).all(-1)
    k_points = torch.cat([torch.where(valid[..., None], points, 0.0),
                          torch.zeros_like(dirs)], dim=2).reshape(-1, 3)
    k_valid = torch.cat([valid, valid.new_zeros(num_frames, rows, w_e)], dim=2).reshape(-1)
    return GGATables(
        ego_idx=torch.nonzero(is_ego).squeeze(1), exo_idx=torch.nonzero(~is_ego).squeeze(1),
        q_dirs=dirs.reshape(-1, 3),
        q_centers=centers[:, None].expand(num_frames, rows * w_e, 3).reshape(-1, 3),
        k_points=k_points, k_valid=k_valid, ego_per_frame=rows * w_e)


def _frame_bias(q_dirs: torch.Tensor, center: torch.Tensor, k_points: torch.Tensor,
                k_valid: torch.Tensor, strength: torch.Tensor, form: GGAForm,
                dtype: torch.dtype) -> torch.Tensor:
    """(R, K) bias of R ego queries (rays (R, 3)) of the frame with ego centre (3,) against
    K keys (points (K, 3), validity (K,))."""
    offsets = k_points - center
    k_hat = offsets * torch.rsqrt(offsets.square().sum(-1, keepdim=True).clamp_min(1e-24))
    cos = (q_dirs @ k_hat.T).clamp(-1.0, 1.0)
    return torch.where(k_valid, gga_bias(cos, strength, form), 0.0).to(dtype)


_compiled_frame_bias: Callable[..., torch.Tensor] | None = None


def ego_bias_rows(tables: GGATables, start: int, stop: int, config: GGAConfig,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(stop - start, N) bias of ego queries start:stop (whole frames) against all keys.

    Computed in fp32 and cast to `dtype`; on CUDA one fused torch.compile'd kernel per frame.
    """
    global _compiled_frame_bias
    device = tables.k_valid.device
    bias_fn = _frame_bias
    if device.type == "cuda":
        if _compiled_frame_bias is None:
            _compiled_frame_bias = torch.compile(_frame_bias, dynamic=False)
        bias_fn = _compiled_frame_bias
    strength = torch.tensor(config.strength, device=device)
    per = tables.ego_per_frame
    out = torch.empty(stop - start, tables.num_tokens, device=device, dtype=dtype)
    for first in range(start, stop, per):
        out[first - start:first - start + per] = bias_fn(
            tables.q_dirs[first:first + per], tables.q_centers[first], tables.k_points,
            tables.k_valid, strength, config.form, dtype)
    return out


def gga_dense_bias(tables: GGATables, config: GGAConfig) -> torch.Tensor:
    """The full (N, N) fp32 additive bias (rows = queries), as the official release builds it."""
    n = tables.num_tokens
    bias = torch.zeros(n, n, device=tables.k_valid.device)
    bias[tables.ego_idx] = ego_bias_rows(tables, 0, tables.ego_idx.shape[0], config)
    return bias


def gga_exo_bias(tables: GGATables, config: GGAConfig, dtype: torch.dtype,
                 rows_per_group: int = EGO_ROWS_PER_GROUP) -> torch.Tensor:
    """(G, R, N_x) bias of the ego queries against the exo keys (the "split" kernel's table).

    The N_e ego queries, frame-major, are cut into G = round(N_e / rows_per_group) groups of
    R = ceil(N_e / G) rows; rows past N_e are zero padding. Rows are padded in memory to a
    multiple of 8 entries, as CUDA's memory-efficient attention requires of a bias.
    """
    if rows_per_group < 1:
        raise InputError(f"rows_per_group must be >= 1, got {rows_per_group}")
    exo = tables.exo_idx
    per, num_ego, num_exo = tables.ego_per_frame, tables.ego_idx.shape[0], exo.shape[0]
    groups = max(1, round(num_ego / rows_per_group))
    rows = -(-num_ego // groups)
    strength = torch.tensor(config.strength, device=exo.device)
    bias = torch.zeros(groups * rows, -(-num_exo // 8) * 8, device=exo.device, dtype=dtype)
    for first in range(0, num_ego, per):
        bias[first:first + per, :num_exo] = _frame_bias(
            tables.q_dirs[first:first + per], tables.q_centers[first], tables.k_points[exo],
            tables.k_valid[exo], strength, config.form, dtype)
    return bias.view(groups, rows, -1)[..., :num_exo]
