"""GGA with its bias as an input: the exportable form of Geometry-Guided Attention.

The eager kernels (egox_model.generator.gga) gather tokens by index lists, merge partial
softmaxes and build the bias inside the processor; none of that belongs in a static graph.
Here the same attention is written with fixed shapes only:

- the tokens of a clip lie in rows of w_x exo then w_e ego columns (Wan's width-concatenated
  latent), so exo and ego queries are two slices of a (B, H, T*h, w_x + w_e, D) view;
- exo query rows: plain attention over all N keys;
- ego query rows: attention over all N keys plus `bias` (N_e, N), the GGA logit bias of every
  ego query against every key, zero on ego keys (and invalid exo points). The bias depends on
  the clip's cameras only, so it is computed once per clip (`gga_bias_input`, from the same
  `ego_bias_rows` as the eager kernels) and fed to the exported graph as an input.

No data-dependent shape, no boolean gather, no scatter: every slice and reshape is fixed by
the clip shape. Equal to `GGAAttnProcessor` within float rounding (test_trt_export.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.generator.gga import GGAConfig, gga_tables
from egox_model.generator.gga.bias import ego_bias_rows
from egox_model.generator.gga.processor import wan_attention_output, wan_qkv

if TYPE_CHECKING:
    from egox_model.geometry.tokens import TokenGeometry

__all__ = ["GGABiasInputProcessor", "TokenGrid", "bias_input_attention", "gga_bias_input",
           "rotary"]


@dataclass(frozen=True)
class TokenGrid:
    """Token grid of one clip: T latent frames x h token rows x (w_x exo | w_e ego) columns."""

    frames: int
    rows: int
    exo_cols: int
    ego_cols: int

    def __post_init__(self) -> None:
        if min(self.frames, self.rows, self.exo_cols, self.ego_cols) < 1:
            raise InputError(f"token grid must have T, h, w_x, w_e >= 1, got {self.frames}, "
                             f"{self.rows}, {self.exo_cols}, {self.ego_cols}")

    @property
    def num_tokens(self) -> int:
        """Sequence length N = T * h * (w_x + w_e)."""
        return self.frames * self.rows * (self.exo_cols + self.ego_cols)

    @property
    def num_ego(self) -> int:
        """Ego tokens N_e = T * h * w_e (the rows of the bias)."""
        return self.frames * self.rows * self.ego_cols

    @classmethod
    def of_geometry(cls, geometry: TokenGeometry) -> TokenGrid:
        """The grid of a clip's TokenGeometry."""
        (rows, ego_cols), exo_cols = geometry.ego_hw, geometry.exo_hw[1]
        return cls(geometry.num_frames, rows, exo_cols, ego_cols)


def gga_bias_input(geometry: TokenGeometry, config: GGAConfig, dtype: torch.dtype,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The (N_e, N) bias input of one clip: ego queries (frame-major) x all keys (sequence
    order), computed once per clip by the eager GGA code; zeros when `config.strength` is 0."""
    grid = TokenGrid.of_geometry(geometry)
    if config.strength == 0:
        return torch.zeros(grid.num_ego, grid.num_tokens, dtype=dtype, device=device)
    tables = gga_tables(geometry, device)
    return ego_bias_rows(tables, 0, grid.num_ego, config, dtype)


def rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding on (B, N, H, D), computed in float32, without the
    strided in-place writes of diffusers' version (those export as scatters)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2].float(), freqs_sin[..., 1::2].float()
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


def bias_input_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         grid: TokenGrid, bias: torch.Tensor) -> torch.Tensor:
    """GGA attention with a given bias; query/key/value (B, H, N, D), bias (N_e, N).

    Exo rows: softmax(q k^T / sqrt(D)) v; ego rows: softmax(q k^T / sqrt(D) + bias) v.
    """
    batch, heads, n, dim = query.shape
    if n != grid.num_tokens or key.shape[2] != n:
        raise InputError(f"attention sequence length {n} does not match the token grid "
                         f"{grid} ({grid.num_tokens} tokens)")
    if tuple(bias.shape) != (grid.num_ego, n):
        raise InputError(f"GGA bias must be (N_e, N) = ({grid.num_ego}, {n}), got "
                         f"{tuple(bias.shape)}")
    lines, exo = grid.frames * grid.rows, grid.exo_cols
    q = query.reshape(batch, heads, lines, exo + grid.ego_cols, dim)
    q_exo = q[:, :, :, :exo].reshape(batch, heads, lines * exo, dim)
    q_ego = q[:, :, :, exo:].reshape(batch, heads, lines * grid.ego_cols, dim)
    out_exo = F.scaled_dot_product_attention(q_exo, key, value)
    out_ego = F.scaled_dot_product_attention(q_ego, key, value, attn_mask=bias.to(query.dtype))
    out = torch.cat((out_exo.reshape(batch, heads, lines, exo, -1),
                     out_ego.reshape(batch, heads, lines, grid.ego_cols, -1)), dim=3)
    return out.reshape(batch, heads, n, -1)


class GGABiasInputProcessor:
    """Wan self-attention (attn1) processor computing GGA from a precomputed bias input.

    Two ways to give it the bias: `set_geometry(geometry)` (the pipeline's hook; the bias is
    built on the first call, on the call's device and dtype, and reused by every block and
    step), or `set_bias(grid, bias)` (export: `bias` is a graph input). Without either it is
    plain attention, as WanAttnProcessor.
    """

    def __init__(self, config: GGAConfig = GGAConfig()) -> None:
        self.config = config
        self.grid: TokenGrid | None = None
        self.bias: torch.Tensor | None = None
        self._geometry: TokenGeometry | None = None

    def set_geometry(self, geometry: TokenGeometry | None) -> None:
        """Token geometry of the clip being generated; None => plain attention."""
        self._geometry, self.bias = geometry, None
        self.grid = None if geometry is None else TokenGrid.of_geometry(geometry)

    def set_bias(self, grid: TokenGrid | None, bias: torch.Tensor | None) -> None:
        """Use `bias` (N_e, N) for a clip of token grid `grid`; (None, None) => plain."""
        self._geometry, self.grid, self.bias = None, grid, bias

    @property
    def has_geometry(self) -> bool:
        """Whether a clip's geometry is set (the bias then comes from `bias_on`)."""
        return self._geometry is not None

    def bias_on(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The geometry's (N_e, N) bias in `dtype` on `device`, built once per geometry."""
        if self.bias is None or self.bias.device != device or self.bias.dtype != dtype:
            self.bias = gga_bias_input(self._geometry, self.config, dtype, device)
        return self.bias

    def __call__(self, attn: Any, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """hidden_states (B, N, C) -> (B, N, C); `attn` is a diffusers WanAttention."""
        if encoder_hidden_states is not None:
            raise InputError("GGABiasInputProcessor is for self-attention (attn1) only; keep "
                             "WanAttnProcessor on attn2")
        if attention_mask is not None:
            raise InputError("GGABiasInputProcessor takes no attention_mask")

        query, key, value = wan_qkv(attn, hidden_states, rotary_emb, rotate=rotary)
        # GGA when a bias or geometry is set
        if self.grid is None or (self.bias is None and self.config.strength == 0):
            out = F.scaled_dot_product_attention(query, key, value)
        else:
            bias = self.bias if self._geometry is None else self.bias_on(query.dtype, query.device)
            out = bias_input_attention(query, key, value, self.grid, bias)
        return wan_attention_output(attn, out, query)
