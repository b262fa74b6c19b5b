"""`GGAAttnProcessor`: GGA as a diffusers attention processor for Wan's self-attention."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.generator.gga.bias import GGATables, gga_exo_bias, gga_tables
from egox_model.generator.gga.config import GGAConfig
from egox_model.generator.gga.kernels import gga_attention

if TYPE_CHECKING:
    from egox_model.geometry.tokens import TokenGeometry

__all__ = ["GGAAttnProcessor", "wan_attention_output", "wan_qkv"]


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor,
                      freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding on (B, S, H, D), as diffusers' WanAttnProcessor."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def wan_qkv(attn: Any, hidden_states: torch.Tensor,
            rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
            rotate=_apply_rotary_emb) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query, key, value (B, H, N, D) of Wan's self-attention, as WanAttnProcessor makes them:
    projections, QK RMS norm, heads, rotary embedding (`rotate`, Wan's interleaved form)."""
    if getattr(attn, "fused_projections", False):
        query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query, key, value = (attn.to_q(hidden_states), attn.to_k(hidden_states),
                             attn.to_v(hidden_states))
    query, key = attn.norm_q(query), attn.norm_k(key)
    query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
    if rotary_emb is not None:
        query, key = rotate(query, *rotary_emb), rotate(key, *rotary_emb)
    return tuple(x.transpose(1, 2) for x in (query, key, value))


def wan_attention_output(attn: Any, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Attention output (B, H, N, D) -> (B, N, C) through Wan's output projection, in the
    dtype of `like`."""
    out = out.transpose(1, 2).flatten(2, 3).type_as(like)
    return attn.to_out[1](attn.to_out[0](out))


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
        self._exo_bias_key: tuple[GGAConfig, torch.dtype] | None = None

    def set_geometry(self, geometry: TokenGeometry | None) -> None:
        """Token geometry of the clip being generated; None => stock attention."""
        self._geometry, self._tables, self._exo_bias = geometry, None, None

    def _tables_on(self, device: torch.device) -> GGATables:
        """Tables on `device`, built once per geometry."""
        if self._tables is None or self._tables.k_valid.device != device:
            self._tables, self._exo_bias = gga_tables(self._geometry, device), None
        return self._tables

    def _exo_bias_for(self, tables: GGATables, dtype: torch.dtype) -> torch.Tensor | None:
        """The "split" kernel's bias table, built once per geometry, device, config and dtype."""
        if self.config.kernel != "split":
            return None
        if self._exo_bias is None or self._exo_bias_key != (self.config, dtype):
            self._exo_bias = gga_exo_bias(tables, self.config, dtype)
            self._exo_bias_key = (self.config, dtype)
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

        query, key, value = wan_qkv(attn, hidden_states, rotary_emb)
        if use_gga:
            tables = self._tables_on(query.device)
            out = gga_attention(query, key, value, tables, self.config,
                                exo_bias=self._exo_bias_for(tables, query.dtype))
        else:
            if attention_mask is not None and attention_mask.ndim == 2:
                attention_mask = attention_mask[:, None, None]  # (B, N_k) as diffusers does
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        return wan_attention_output(attn, out, query)
