"""Geometry-Guided Attention (GGA) as a diffusers attention processor for Wan's self-attention.

For an ego query m of latent frame i and an exo key n (any latent frame, 3D point P_n, world
frame, metres) the logit (after the 1/sqrt(d) scaling) gets an additive bias

    c = clamp(q_hat_m . normalize(P_n - c_i), -1, 1)
    official (default, the EgoX release): c' = lambda * c, except that when lambda > 1 only
        positive cosines are scaled (c' = c where c <= 0); bias = log(c' + 1 + 1e-6)
    power (paper Eq. 7):                  bias = lambda * log(c + 1 + 1e-6)

with q_hat_m the (pooled, not renormalised) ego viewing ray and c_i the ego camera centre of
the query's latent frame. Exo queries, ego keys and invalid exo keys (NaN point) get no bias
(exactly 0). lambda = 0 runs stock attention in both forms: the official form's bias would be
the constant log(1 + 1e-6) on exo keys, within 1e-6 of stock.

Token layout (Wan, patch 1x2x2, latent width-concat [exo | ego]): sequence index
s = t * h * (w_x + w_e) + r * (w_x + w_e) + col; columns col < w_x are exo tokens.

Kernels (`GGAConfig.kernel`), all exact:
- "dense": the official approach, one (N, N) fp32 bias for all queries; small N only.
- "chunked": exo queries by plain SDPA; ego queries in whole-frame chunks by SDPA with a
  (chunk, N) bias built from per-frame key directions; memory O(chunk * N), no N x N.
- "flex": exo queries by plain SDPA; ego queries by FlexAttention whose score_mod computes
  the bias from per-token tables (ego ray, frame centre, key point), memory O(N).
- "split" (default): tokens gathered once into [exo | ego] order; exo queries by plain SDPA;
  ego queries attend to ego keys by plain SDPA and to exo keys by SDPA with the (ego x exo)
  bias, the two partial softmaxes merged exactly by their log-sum-exp (cuDNN returns it, with
  a bias, on Hopper). Only ego x exo pairs (a quarter of the default clip's) take the slower
  biased kernel, and the processor builds that bias once per clip and reuses it in every
  block and step: N_ego x N_exo entries, 347 MiB in bf16 for the default clip (N x N would
  be 1.5 GiB).
On an H200 at 28,028 tokens, 40 x 128 heads, bf16 (`egox bench gga`): "split" 1.20x plain
SDPA (cuDNN), "chunked" 1.48x, "dense" 2.2x, "flex" 2.75x; a whole 40-block CFG step of the
14B model (`egox bench step`): 1.09x with "split". On the CPU "split" also leads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, get_args

import torch
import torch.nn.functional as F

from egox_model.errors import InputError

if TYPE_CHECKING:
    from egox_model.geometry.tokens import TokenGeometry

__all__ = ["GGAConfig", "GGAAttnProcessor", "GGATables", "gga_attention", "gga_bias",
           "gga_dense_bias", "gga_exo_bias", "gga_tables"]

GGAForm = Literal["official", "power"]
GGAKernel = Literal["dense", "chunked", "flex", "split"]

EPS = 1e-6                 # inside the log, as in the official release
_CHUNK_ELEMENTS = 2 ** 26  # bias entries per "chunked" SDPA call (128 MiB in bf16)
_EGO_ROWS_PER_GROUP = 1280  # ego queries per batch entry of the "split" kernel's biased call


@dataclass(frozen=True)
class GGAConfig:
    """GGA settings.

    strength: lambda (>= 0); 3 at inference, 1 in training (official release).
    form: "official" (release code) or "power" (paper Eq. 7).
    kernel: "dense" (N x N bias, reference), "split", "chunked" or "flex" (no N x N tensor).
    """

    strength: float = 3.0
    form: GGAForm = "official"
    kernel: GGAKernel = "split"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise InputError(f"GGAConfig.strength must be a finite number >= 0, "
                             f"got {self.strength!r}")
        if self.form not in get_args(GGAForm):
            raise InputError(f"GGAConfig.form must be one of {get_args(GGAForm)}, "
                             f"got {self.form!r}")
        if self.kernel not in get_args(GGAKernel):
            raise InputError(f"GGAConfig.kernel must be one of {get_args(GGAKernel)}, "
                             f"got {self.kernel!r}")


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
    width = w_x + w_e
    col = torch.arange(width, device=device).expand(num_frames, rows, width)
    is_ego = (col >= w_x).reshape(-1)
    valid = torch.isfinite(points).all(-1)
    k_points = torch.cat([torch.where(valid[..., None], points, 0.0),
                          torch.zeros_like(dirs)], dim=2).reshape(-1, 3)
    k_valid = torch.cat([valid, torch.zeros_like(valid[..., :w_e])], dim=2).reshape(-1)
    return GGATables(
        ego_idx=torch.nonzero(is_ego).squeeze(1), exo_idx=torch.nonzero(~is_ego).squeeze(1),
        q_dirs=dirs.reshape(-1, 3),
        q_centers=centers[:, None].expand(num_frames, rows * w_e, 3).reshape(-1, 3),
        k_points=k_points, k_valid=k_valid, ego_per_frame=rows * w_e)


def _frame_bias(q_dirs: torch.Tensor, center: torch.Tensor, k_points: torch.Tensor,
                k_valid: torch.Tensor, strength: torch.Tensor, form: GGAForm,
                dtype: torch.dtype) -> torch.Tensor:
    """(R, N) bias of R ego queries (rays (R, 3)) of the frame with ego centre (3,)."""
    offsets = k_points - center
    k_hat = offsets * torch.rsqrt(offsets.square().sum(-1, keepdim=True).clamp_min(1e-24))
    cos = (q_dirs @ k_hat.T).clamp(-1.0, 1.0)
    return torch.where(k_valid, gga_bias(cos, strength, form), 0.0).to(dtype)


_compiled_frame_bias: Callable[..., torch.Tensor] | None = None


def _ego_bias_rows(tables: GGATables, start: int, stop: int, config: GGAConfig,
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
    bias[tables.ego_idx] = _ego_bias_rows(tables, 0, tables.ego_idx.shape[0], config)
    return bias


_compiled_flex: Callable[..., torch.Tensor] | None = None


def _flex(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          score_mod: Callable[..., torch.Tensor]) -> torch.Tensor:
    """torch.compile'd FlexAttention (eager flex materialises scores), compiled once."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(query, key, value, score_mod=score_mod)


def _flex_ego(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, tables: GGATables,
              config: GGAConfig) -> torch.Tensor:
    """Ego queries (B, H, N_e, D) against all keys with the bias computed in the score_mod."""
    qx, qy, qz = tables.q_dirs.T.contiguous()
    cx, cy, cz = tables.q_centers.T.contiguous()
    px, py, pz = tables.k_points.T.contiguous()
    valid, form = tables.k_valid, config.form
    strength = torch.tensor(config.strength, device=valid.device)  # a tensor: no recompiles

    def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
        dx, dy, dz = px[kv_idx] - cx[q_idx], py[kv_idx] - cy[q_idx], pz[kv_idx] - cz[q_idx]
        inv = torch.rsqrt(torch.clamp(dx * dx + dy * dy + dz * dz, min=1e-24))
        cos = torch.clamp((qx[q_idx] * dx + qy[q_idx] * dy + qz[q_idx] * dz) * inv, -1.0, 1.0)
        return score + torch.where(valid[kv_idx], gga_bias(cos, strength, form), 0.0)

    return _flex(query, key, value, score_mod)


def gga_exo_bias(tables: GGATables, config: GGAConfig, dtype: torch.dtype,
                 rows_per_group: int = _EGO_ROWS_PER_GROUP) -> torch.Tensor:
    """(G, R, N_x) bias of the ego queries against the exo keys (the "split" kernel's table).

    The N_e ego queries, frame-major, are cut into G = round(N_e / rows_per_group) groups of
    R = ceil(N_e / G) rows; rows past N_e are zero padding. Rows are padded in memory to a
    multiple of 8 entries, as CUDA's memory-efficient attention requires of a bias.
    """
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


def _sdpa_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA that also returns the log-sum-exp (B, H, L) fp32 of each query's logits."""
    if query.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=bias)
    if bias is not None:
        bias = bias.expand(query.shape[0], query.shape[1], -1, -1)
    half = query.dtype in (torch.float16, torch.bfloat16)
    out = None
    if half:
        # cuDNN is the fastest kernel with a bias on Hopper (H200, all ego rows of the default
        # clip against all keys: 19.5 ms against 45.9 ms for the memory-efficient kernel).
        try:
            out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(
                query, key, value, bias, True, 0.0, False, False)[:2]
        except RuntimeError:  # no cuDNN attention on this GPU
            pass
    if out is None and half and bias is None:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value)[:2]
    elif out is None:  # float32, or a bias without cuDNN
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, bias, True)[:2]
    return out, lse.reshape(*query.shape[:2], -1)[..., :query.shape[2]]


def _split_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     tables: GGATables, exo_bias: torch.Tensor) -> torch.Tensor:
    """The "split" kernel for one batch entry; query/key/value (1, H, N, D).

    Tokens are gathered once into [exo | ego] order, in (1, N, H, D) memory (the layout
    Wan's projections produce, so each token is one contiguous row). Softmax over keys
    ignores their order, so exo queries take plain SDPA over all keys; ego queries take ego
    keys (no bias) and exo keys (bias) separately, merged exactly:
    out = lerp(out_ego, out_exo, sigmoid(lse_exo - lse_ego)).
    The biased call runs the ego queries as G batch entries of R rows against the same exo
    keys (broadcast, not copied): the heads of one group then run side by side and share
    its bias rows in L2 (H200: 10.5 ms against 11.6 ms as one batch entry).
    """
    num_exo, num_ego = tables.exo_idx.shape[0], tables.ego_idx.shape[0]
    groups, rows = exo_bias.shape[:2]
    order = torch.cat((tables.exo_idx, tables.ego_idx))
    q, k, v = (x.transpose(1, 2).index_select(1, order) for x in (query, key, value))
    ego_q = q[:, num_exo:]
    if groups * rows > num_ego:
        ego_q = torch.cat((ego_q, ego_q.new_zeros(1, groups * rows - num_ego, *q.shape[2:])), 1)
    heads = q.shape[2]

    def grouped(x: torch.Tensor, count: int) -> torch.Tensor:
        """(1, L, H, D) -> (count, H, L // count, D) view (count = 1: plain transpose)."""
        return x.view(count, -1, *x.shape[2:]).transpose(1, 2)

    out_e, lse_e = _sdpa_lse(grouped(ego_q[:, :num_ego], 1), grouped(k[:, num_exo:], 1),
                             grouped(v[:, num_exo:], 1))
    out_x, lse_x = _sdpa_lse(grouped(ego_q, groups),
                             grouped(k[:, :num_exo], 1).expand(groups, -1, -1, -1),
                             grouped(v[:, :num_exo], 1).expand(groups, -1, -1, -1),
                             exo_bias[:, None])
    # Back to (1, N_e, H, ...) token rows.
    out_x = out_x.transpose(1, 2).reshape(1, groups * rows, heads, -1)[:, :num_ego]
    lse_x = lse_x.transpose(1, 2).reshape(1, groups * rows, heads)[:, :num_ego]
    weight = torch.sigmoid(lse_x - lse_e.transpose(1, 2))[..., None].to(out_e.dtype)
    out = q.new_empty(q.shape[0], q.shape[1], heads, value.shape[-1])
    out.index_copy_(1, tables.exo_idx, F.scaled_dot_product_attention(
        grouped(q[:, :num_exo], 1), grouped(k, 1), grouped(v, 1)).transpose(1, 2))
    out.index_copy_(1, tables.ego_idx, torch.lerp(out_e.transpose(1, 2),
                                                  out_x.to(out_e.dtype), weight))
    return out.transpose(1, 2)


def gga_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  tables: GGATables, config: GGAConfig,
                  chunk_elements: int = _CHUNK_ELEMENTS,
                  exo_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention with the GGA bias; query/key/value (B, H, N, D) -> (B, H, N, D).

    `chunk_elements` bounds the bias entries per SDPA call of the "chunked" kernel;
    `exo_bias` is the "split" kernel's `gga_exo_bias` table (built here when not given).
    """
    n = tables.num_tokens
    if query.shape[2] != n or key.shape[2] != n:
        raise InputError(f"attention sequence length {query.shape[2]} does not match the "
                         f"GGA token geometry ({n} tokens = T * h * (w_x + w_e)); call "
                         f"set_geometry with the clip's TokenGeometry")
    if config.strength == 0:
        return F.scaled_dot_product_attention(query, key, value)
    if config.kernel == "dense":
        mask = gga_dense_bias(tables, config).to(query.dtype)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    if config.kernel == "split":
        if exo_bias is None:
            exo_bias = gga_exo_bias(tables, config, query.dtype)
        outs = [_split_attention(query[b:b + 1], key[b:b + 1], value[b:b + 1], tables,
                                 exo_bias) for b in range(query.shape[0])]
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    out = query.new_empty(*query.shape[:-1], value.shape[-1])
    out[:, :, tables.exo_idx] = F.scaled_dot_product_attention(
        query[:, :, tables.exo_idx], key, value)
    ego_q = query[:, :, tables.ego_idx]
    if config.kernel == "flex":
        out[:, :, tables.ego_idx] = _flex_ego(ego_q, key, value, tables, config).to(out.dtype)
        return out

    per, num_ego = tables.ego_per_frame, tables.ego_idx.shape[0]
    step = per * max(1, chunk_elements // (per * n))
    for start in range(0, num_ego, step):
        stop = min(start + step, num_ego)
        mask = _ego_bias_rows(tables, start, stop, config, query.dtype)
        out[:, :, tables.ego_idx[start:stop]] = F.scaled_dot_product_attention(
            ego_q[:, :, start:stop], key, value, attn_mask=mask)
    return out


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor,
                      freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding on (B, S, H, D), as diffusers' WanAttnProcessor."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class GGAAttnProcessor:
    """Wan self-attention (attn1) processor adding the GGA bias for ego queries x exo keys.

    Install one instance on every block's attn1; keep diffusers' WanAttnProcessor on attn2.
    With no geometry set (or strength 0) it computes exactly what WanAttnProcessor does.
    """

    def __init__(self, config: GGAConfig = GGAConfig()) -> None:
        self.config = config
        self._geometry: TokenGeometry | None = None
        self._tables: GGATables | None = None
        self._exo_bias: torch.Tensor | None = None

    def set_geometry(self, geometry: TokenGeometry | None) -> None:
        """Token geometry of the clip being generated; None => stock attention."""
        self._geometry, self._tables, self._exo_bias = geometry, None, None

    def _tables_on(self, device: torch.device) -> GGATables:
        """Tables on `device`, built once per geometry."""
        if self._tables is None or self._tables.k_valid.device != device:
            self._tables, self._exo_bias = gga_tables(self._geometry, device), None
        return self._tables

    def _exo_bias_for(self, tables: GGATables, dtype: torch.dtype) -> torch.Tensor | None:
        """The "split" kernel's bias table, built once per geometry, device and dtype."""
        if self.config.kernel != "split":
            return None
        if self._exo_bias is None or self._exo_bias.dtype != dtype:
            self._exo_bias = gga_exo_bias(tables, self.config, dtype)
        return self._exo_bias

    def __call__(self, attn: Any, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """hidden_states (B, N, C) -> (B, N, C); `attn` is a diffusers WanAttention."""
        if encoder_hidden_states is not None:
            raise InputError("GGAAttnProcessor got encoder_hidden_states: it is for "
                             "self-attention (attn1) only; keep WanAttnProcessor on attn2")
        use_gga = self._geometry is not None and self.config.strength > 0
        if use_gga and attention_mask is not None:
            raise InputError("GGAAttnProcessor cannot combine attention_mask with GGA; "
                             "pass attention_mask=None or set_geometry(None)")

        # 1. Projections, QK RMS norm, heads, rotary embedding (as WanAttnProcessor)
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = (attn.to_q(hidden_states), attn.to_k(hidden_states),
                                 attn.to_v(hidden_states))
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = _apply_rotary_emb(query, *rotary_emb), _apply_rotary_emb(key, *rotary_emb)

        # 2. Attention in (B, H, N, D)
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))
        if use_gga:
            tables = self._tables_on(query.device)
            out = gga_attention(query, key, value, tables, self.config,
                                exo_bias=self._exo_bias_for(tables, query.dtype))
        else:
            if attention_mask is not None and attention_mask.ndim == 2:
                attention_mask = attention_mask[:, None, None]  # (B, N_k) as diffusers does
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)

        # 3. Output projection
        return attn.to_out[1](attn.to_out[0](out))
