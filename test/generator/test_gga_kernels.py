"""GGA kernels: each kernel against the float64 definition over the sweep of test_gga_reference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_gga_reference import (CASES, FORMS, STRENGTHS, Case, geometry, naive_bias,
                                reference_attention)

from egox_model.bench import random_token_geometry
from egox_model.errors import InputError
from egox_model.generator.gga import GGAConfig, gga_attention, gga_exo_bias, gga_tables

KERNELS = ["dense", "chunked", "split"]
#: (batch, heads, head_dim, Wan's layout): Wan's projections give (B, H, N, D) views of
#: (B, N, H, D) memory; the others are contiguous.
QKV_SHAPES = [(1, 1, 1, False), (2, 3, 5, True), (2, 2, 16, False)]


def _qkv(case: Case, batch: int, heads: int, dim: int, wan_layout: bool,
         seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = case.num_tokens
    if wan_layout:
        return [torch.randn(batch, n, heads, dim, generator=g).transpose(1, 2) for _ in range(3)]
    return [torch.randn(batch, heads, n, dim, generator=g) for _ in range(3)]


def _variants(kernel: str, case: Case, tables, config: GGAConfig) -> dict[str, dict]:
    """Keyword variants of `gga_attention` per kernel: chunk sizes, split row groups."""
    if kernel == "chunked":
        two_frames = 2 * tables.ego_per_frame * case.num_tokens
        return {"one frame per chunk": {"chunk_elements": 1},
                "two frames per chunk": {"chunk_elements": two_frames},
                "one chunk": {}}
    if kernel == "split":
        return {"default groups": {}, **{
            f"{rows} rows per group": {"exo_bias": gga_exo_bias(tables, config, torch.float32,
                                                                rows_per_group=rows)}
            for rows in (1, 3, 5, 7)}}
    return {"": {}}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_kernel_equals_float64_definition(case: Case, kernel: str) -> None:
    """softmax(q k^T / sqrt(d) + bias) v, bias pair by pair in float64: every form, strength,
    batch / head / head-dim shape and kernel option, to 1e-5 in fp32."""
    tables = gga_tables(geometry(case))
    for qkv_shape in QKV_SHAPES:
        q, k, v = _qkv(case, *qkv_shape)
        for form in FORMS:
            for strength in STRENGTHS:
                config = GGAConfig(strength=strength, form=form, kernel=kernel)
                expected = reference_attention(case, q, k, v, strength, form)
                for name, options in _variants(kernel, case, tables, config).items():
                    out = gga_attention(q, k, v, tables, config, **options)
                    assert out.shape == q.shape and out.dtype == torch.float32
                    torch.testing.assert_close(
                        out.double(), expected, atol=1e-5, rtol=0,
                        msg=lambda m: f"{qkv_shape} {form} {strength} {name}: {m}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_in_bfloat16_is_close_to_the_definition(kernel: str) -> None:
    """bf16 on the CPU (as `egox bench step` runs): within bf16 rounding of the definition."""
    case = Case(3, 4, 6, 4)
    q, k, v = _qkv(case, 2, 3, 16, True, seed=1)
    expected = reference_attention(case, q, k, v, 3.0, "official")
    out = gga_attention(*(x.bfloat16() for x in (q, k, v)), gga_tables(geometry(case)),
                        GGAConfig(kernel=kernel))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), expected, atol=1.5e-2, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_strength_zero_is_stock_and_exo_queries_are_unbiased(kernel: str) -> None:
    case = Case(2, 3, 4, 2)
    tables, (q, k, v) = gga_tables(geometry(case)), _qkv(case, 2, 2, 8, False)
    stock = F.scaled_dot_product_attention(q, k, v)
    zero = gga_attention(q, k, v, tables, GGAConfig(strength=0.0, kernel=kernel))
    torch.testing.assert_close(zero, stock, atol=0, rtol=0)
    out = gga_attention(q, k, v, tables, GGAConfig(kernel=kernel))
    exo = tables.exo_idx
    torch.testing.assert_close(out[:, :, exo], stock[:, :, exo], atol=1e-5, rtol=0)
    assert (out[:, :, tables.ego_idx] - stock[:, :, tables.ego_idx]).abs().max() > 1e-3


@pytest.mark.parametrize("kernel", KERNELS)
def test_attention_weights_reweight_only_exo_keys_of_ego_queries(kernel: str) -> None:
    """One-hot values make each kernel return its attention weights P (N x N); head dim N,
    as the CPU flash kernel of "split" needs one head dim for q, k and v."""
    case = Case(2, 3, 4, 2)
    n = case.num_tokens
    tables, (q, k, _) = gga_tables(geometry(case)), _qkv(case, 2, 2, n, False)
    eye = torch.eye(n).expand(2, 2, n, n)
    weights = gga_attention(q, k, eye, tables, GGAConfig(kernel=kernel))
    stock = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    ratio = weights / stock
    ego, exo = tables.ego_idx, tables.exo_idx
    torch.testing.assert_close(ratio[:, :, exo], torch.ones_like(ratio[:, :, exo]))
    # Ego queries: ego keys keep their stock ratios (one per-row normaliser) ...
    ego_rows = ratio[:, :, ego]
    norm = ego_rows[..., ego[:1]]
    torch.testing.assert_close(ego_rows[..., ego], norm.expand(-1, -1, -1, len(ego)))
    # ... and exo keys are scaled by exp(bias) relative to them.
    expected = torch.exp(naive_bias(case, 3.0, "official")[ego][:, exo]).float()
    torch.testing.assert_close(ego_rows[..., exo] / norm, expected.expand(2, 2, -1, -1),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows_per_group", [300, 784, 5000])
def test_split_row_groups_equal_dense_on_wan_grid(rows_per_group: int) -> None:
    """The default clip's grid (1 latent frame, 784 ego tokens): groups of 262 rows, the last
    padded (784 = 3 x 262 - 2), one group, and fewer ego rows than rows_per_group."""
    g = torch.Generator().manual_seed(3)
    tables = gga_tables(random_token_geometry(1, g))
    n = tables.num_tokens
    q, k, v = (torch.randn(1, n, 2, 16, generator=g).transpose(1, 2) for _ in range(3))
    config = GGAConfig()
    exo_bias = gga_exo_bias(tables, config, torch.float32, rows_per_group=rows_per_group)
    groups = {300: 3, 784: 1, 5000: 1}[rows_per_group]
    assert exo_bias.shape == (groups, -(-784 // groups), n - 784)
    split = gga_attention(q, k, v, tables, config, exo_bias=exo_bias)
    dense = gga_attention(q, k, v, tables, GGAConfig(kernel="dense"))
    torch.testing.assert_close(split, dense, atol=1e-5, rtol=0)


def test_sequence_length_must_match_the_geometry() -> None:
    case = Case(2, 3, 4, 2)
    q, k, v = (x[:, :, :-1] for x in _qkv(case, 1, 2, 8, False))
    with pytest.raises(InputError, match="sequence length"):
        gga_attention(q, k, v, gga_tables(geometry(case)), GGAConfig())
