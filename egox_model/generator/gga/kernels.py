"""The GGA attention kernels ("dense", "chunked", "split") behind `gga_attention`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.generator.gga.bias import GGATables, ego_bias_rows, gga_dense_bias, gga_exo_bias
from egox_model.generator.gga.config import GGAConfig
from egox_model.generator.gga.sdpa import sdpa_lse

__all__ = ["CHUNK_ELEMENTS", "gga_attention"]

CHUNK_ELEMENTS = 2 ** 26  # bias entries per "chunked" SDPA call (128 MiB in bf16)


def _chunked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       tables: GGATables, config: GGAConfig,
                       chunk_elements: int) -> torch.Tensor:
    """The "chunked" kernel; query/key/value (B, H, N, D).

    Exo queries take plain SDPA; ego queries go in chunks of whole frames, each by SDPA with
    its (chunk, N) bias rows, at most `chunk_elements` entries (at least one frame).
    """
    n = tables.num_tokens
    out = query.new_empty(*query.shape[:-1], value.shape[-1])
    out[:, :, tables.exo_idx] = F.scaled_dot_product_attention(
        query[:, :, tables.exo_idx], key, value)
    ego_q = query[:, :, tables.ego_idx]
    per, num_ego = tables.ego_per_frame, tables.ego_idx.shape[0]
    step = per * max(1, chunk_elements // (per * n))
    for start in range(0, num_ego, step):
        stop = min(start + step, num_ego)
        mask = ego_bias_rows(tables, start, stop, config, query.dtype)
        out[:, :, tables.ego_idx[start:stop]] = F.scaled_dot_product_attention(
            ego_q[:, :, start:stop], key, value, attn_mask=mask)
    return out


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

    out_e, lse_e = sdpa_lse(grouped(ego_q[:, :num_ego], 1), grouped(k[:, num_exo:], 1),
                            grouped(v[:, num_exo:], 1))
    out_x, lse_x = sdpa_lse(grouped(ego_q, groups),
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
                  chunk_elements: int = CHUNK_ELEMENTS,
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
    if config.kernel == "chunked":
        return _chunked_attention(query, key, value, tables, config, chunk_elements)
    if exo_bias is None:
        exo_bias = gga_exo_bias(tables, config, query.dtype)
    outs = [_split_attention(query[b:b + 1], key[b:b + 1], value[b:b + 1], tables, exo_bias)
            for b in range(query.shape[0])]
    return outs[0] if len(outs) == 1 else torch.cat(outs)
