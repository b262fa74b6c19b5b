"""Geometry-Guided Attention: bias math, kernels, and the processor inside a tiny Wan model."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from egox_model.bench import random_token_geometry
from egox_model.errors import InputError
from egox_model.generator.gga import (GGAAttnProcessor, GGAConfig, gga_attention, gga_bias,
                                      gga_dense_bias, gga_exo_bias, gga_tables)
from egox_model.geometry.tokens import TokenGeometry

T, H, W_X, W_E = 2, 3, 4, 2  # latent frames, token rows, exo cols, ego cols
N = T * H * (W_X + W_E)


def _geometry(seed: int = 0) -> TokenGeometry:
    g = torch.Generator().manual_seed(seed)
    dirs = 0.97 * F.normalize(torch.randn(T, H, W_E, 3, generator=g), dim=-1)
    points = 2.0 * torch.randn(T, H, W_X, 3, generator=g)
    points[0, 1, 2] = torch.nan
    return TokenGeometry(ego_dirs=dirs, ego_centers=torch.randn(T, 3, generator=g),
                         exo_points=points)


def _qkv(seed: int = 1, heads: int = 2, dim: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, heads, N, dim, generator=g) for _ in range(3))


def _token(s: int) -> tuple[int, int, int]:
    """Sequence index -> (frame, row, col) in the [exo | ego] layout."""
    return s // (H * (W_X + W_E)), s // (W_X + W_E) % H, s % (W_X + W_E)


def _naive_bias(geo: TokenGeometry, strength: float, form: str) -> torch.Tensor:
    """Pair-by-pair (N, N) bias straight from the definition, float64."""
    bias = torch.zeros(N, N, dtype=torch.float64)
    for m in range(N):
        i, r, c = _token(m)
        if c < W_X:
            continue
        q_hat = geo.ego_dirs[i, r, c - W_X].double()
        for n in range(N):
            j, rr, cc = _token(n)
            if cc >= W_X or not torch.isfinite(geo.exo_points[j, rr, cc]).all():
                continue
            k = geo.exo_points[j, rr, cc].double() - geo.ego_centers[i].double()
            cos = max(-1.0, min(1.0, float(q_hat @ (k / k.norm()))))
            if form == "power":
                bias[m, n] = strength * math.log(cos + 1 + 1e-6)
            else:
                scaled = strength * cos if (strength <= 1 or cos > 0) else cos
                bias[m, n] = math.log(scaled + 1 + 1e-6)
    return bias


def test_bias_forms_on_values() -> None:
    cos = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    eps = 1e-6
    official3 = torch.log(torch.tensor([-1.0, -0.5, 0.0, 1.5, 3.0]) + 1 + eps)
    official_half = torch.log(0.5 * cos + 1 + eps)
    torch.testing.assert_close(gga_bias(cos, 3.0, "official"), official3)
    torch.testing.assert_close(gga_bias(cos, 0.5, "official"), official_half)
    torch.testing.assert_close(gga_bias(cos, 1.0, "official"), torch.log(cos + 1 + eps))
    torch.testing.assert_close(gga_bias(cos, 3.0, "power"), 3 * torch.log(cos + 1 + eps))


@pytest.mark.parametrize(("strength", "form"), [(3.0, "official"), (0.5, "official"),
                                                (2.0, "power")])
def test_dense_bias_matches_definition(strength: float, form: str) -> None:
    geo = _geometry()
    bias = gga_dense_bias(gga_tables(geo), GGAConfig(strength=strength, form=form))
    torch.testing.assert_close(bias.double(), _naive_bias(geo, strength, form),
                               atol=1e-5, rtol=1e-5)


def test_no_bias_for_exo_queries_ego_keys_or_invalid_points() -> None:
    geo = _geometry()
    bias = gga_dense_bias(gga_tables(geo), GGAConfig())
    cols = torch.arange(N) % (W_X + W_E)
    ego = cols >= W_X
    assert bias[~ego].abs().max() == 0
    assert bias[:, ego].abs().max() == 0
    invalid = 1 * (W_X + W_E) + 2  # frame 0, row 1, col 2 is NaN
    assert bias[:, invalid].abs().max() == 0
    assert bias[ego][:, ~ego].abs().max() > 0.1


@pytest.mark.parametrize("form", ["official", "power"])
def test_chunked_equals_dense(form: str) -> None:
    tables, (q, k, v) = gga_tables(_geometry()), _qkv()
    dense = gga_attention(q, k, v, tables, GGAConfig(form=form, kernel="dense"))
    for chunk_elements in (1, 10 ** 9):  # one frame per chunk / everything in one chunk
        chunked = gga_attention(q, k, v, tables, GGAConfig(form=form, kernel="chunked"),
                                chunk_elements=chunk_elements)
        torch.testing.assert_close(chunked, dense, atol=1e-4, rtol=0)


@pytest.mark.parametrize("form", ["official", "power"])
def test_split_equals_dense(form: str) -> None:
    tables, (q, k, v) = gga_tables(_geometry()), _qkv()
    dense = gga_attention(q, k, v, tables, GGAConfig(form=form, kernel="dense"))
    split = gga_attention(q, k, v, tables, GGAConfig(form=form, kernel="split"))
    torch.testing.assert_close(split, dense, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rows_per_group", [300, 784, 5000])
def test_split_row_groups_equal_dense(rows_per_group: int) -> None:
    """Ego queries cut into batch groups, the last padded (784 = 3 x 262 - 2), Wan's layout."""
    g = torch.Generator().manual_seed(3)
    tables = gga_tables(random_token_geometry(1, g))
    n = tables.num_tokens
    q, k, v = (torch.randn(1, n, 2, 16, generator=g).transpose(1, 2) for _ in range(3))
    config = GGAConfig()
    exo_bias = gga_exo_bias(tables, config, torch.float32, rows_per_group=rows_per_group)
    groups = {300: 3, 784: 1, 5000: 1}[rows_per_group]
    assert exo_bias.shape == (groups, -(-784 // groups), n - 784)
    assert exo_bias.flatten(0, 1)[784:].abs().sum() == 0  # padding rows
    split = gga_attention(q, k, v, tables, config, exo_bias=exo_bias)
    dense = gga_attention(q, k, v, tables, GGAConfig(kernel="dense"))
    torch.testing.assert_close(split, dense, atol=1e-4, rtol=0)


def test_flex_equals_dense() -> None:
    tables, (q, k, v) = gga_tables(_geometry()), _qkv()
    for config in (GGAConfig(strength=3.0), GGAConfig(strength=0.7)):  # one compile
        dense = gga_attention(q, k, v, tables, GGAConfig(config.strength, kernel="dense"))
        flex = gga_attention(q, k, v, tables, GGAConfig(config.strength, kernel="flex"))
        torch.testing.assert_close(flex, dense, atol=1e-4, rtol=0)


def test_dense_equals_explicit_softmax() -> None:
    geo, (q, k, v) = _geometry(), _qkv()
    logits = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    expected = torch.softmax(logits + _naive_bias(geo, 3.0, "official"), -1) @ v.double()
    out = gga_attention(q, k, v, gga_tables(geo), GGAConfig(kernel="dense"))
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", ["dense", "chunked", "split"])
def test_strength_zero_and_exo_queries_are_stock(kernel: str) -> None:
    tables, (q, k, v) = gga_tables(_geometry()), _qkv()
    stock = F.scaled_dot_product_attention(q, k, v)
    zero = gga_attention(q, k, v, tables, GGAConfig(strength=0.0, kernel=kernel))
    torch.testing.assert_close(zero, stock, atol=0, rtol=0)
    out = gga_attention(q, k, v, tables, GGAConfig(kernel=kernel))
    exo = tables.exo_idx
    torch.testing.assert_close(out[:, :, exo], stock[:, :, exo], atol=1e-5, rtol=0)
    assert (out[:, :, tables.ego_idx] - stock[:, :, tables.ego_idx]).abs().max() > 1e-3


def test_attention_weights_reweight_only_exo_keys_of_ego_queries() -> None:
    """One-hot values make the efficient kernel return its attention weights P (N x N)."""
    geo, (q, k, _) = _geometry(), _qkv()
    tables = gga_tables(geo)
    eye = torch.eye(N).expand(2, 2, N, N)
    weights = gga_attention(q, k, eye, tables, GGAConfig(kernel="chunked"))
    stock = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    ratio = weights / stock
    ego, exo = tables.ego_idx, tables.exo_idx
    torch.testing.assert_close(ratio[:, :, exo], torch.ones_like(ratio[:, :, exo]))
    # Ego queries: ego keys keep their stock ratios (one per-row normaliser) ...
    ego_rows = ratio[:, :, ego]
    norm = ego_rows[..., ego[:1]]
    torch.testing.assert_close(ego_rows[..., ego], norm.expand(-1, -1, -1, len(ego)))
    # ... and exo keys are scaled by exp(bias) relative to them.
    expected = torch.exp(_naive_bias(geo, 3.0, "official")[ego][:, exo]).float()
    torch.testing.assert_close(ego_rows[..., exo] / norm, expected.expand(2, 2, -1, -1),
                               rtol=1e-4, atol=1e-5)


def test_errors_name_the_field() -> None:
    with pytest.raises(InputError, match="strength"):
        GGAConfig(strength=-1.0)
    with pytest.raises(InputError, match="kernel"):
        GGAConfig(kernel="magic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="form"):
        GGAConfig(form="eq4")  # type: ignore[arg-type]
    geo = _geometry()
    bad = TokenGeometry(geo.ego_dirs, geo.ego_centers, geo.exo_points[:1])
    with pytest.raises(InputError, match="exo_points"):
        gga_tables(bad)
    q, k, v = (x[:, :, :-1] for x in _qkv())
    with pytest.raises(InputError, match="sequence length"):
        gga_attention(q, k, v, gga_tables(geo), GGAConfig())


# --- inside a tiny diffusers Wan transformer -------------------------------------------------

diffusers = pytest.importorskip("diffusers")


def _tiny_wan() -> torch.nn.Module:
    from diffusers import WanTransformer3DModel
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                                 in_channels=4, out_channels=4, text_dim=24, freq_dim=32,
                                 ffn_dim=64, num_layers=2, rope_max_seq_len=64).eval()


def _wan_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"hidden_states": torch.randn(1, 4, T, 2 * H, 2 * (W_X + W_E), generator=g),
            "timestep": torch.tensor([500]),
            "encoder_hidden_states": torch.randn(1, 7, 24, generator=g),
            "return_dict": False}


def _install(model: torch.nn.Module, proc: GGAAttnProcessor) -> None:
    procs = model.attn_processors
    model.set_attn_processor({name: proc if ".attn1." in name else p
                              for name, p in procs.items()})


def test_processor_matches_wan_attn_processor_without_geometry() -> None:
    model, inputs = _tiny_wan(), _wan_inputs()
    with torch.no_grad():
        stock = model(**inputs)[0]
        proc = GGAAttnProcessor()
        _install(model, proc)
        none = model(**inputs)[0]
        proc.set_geometry(_geometry())
        proc.config = GGAConfig(strength=0.0)
        zero = model(**inputs)[0]
    torch.testing.assert_close(none, stock, atol=0, rtol=0)
    torch.testing.assert_close(zero, stock, atol=0, rtol=0)


def test_processor_gga_kernels_agree_in_model() -> None:
    model, inputs = _tiny_wan(), _wan_inputs()
    outs = []
    with torch.no_grad():
        stock = model(**inputs)[0]
        for kernel in ("dense", "chunked", "split"):
            proc = GGAAttnProcessor(GGAConfig(kernel=kernel))
            proc.set_geometry(_geometry())
            _install(model, proc)
            outs.append(model(**inputs)[0])
            outs.append(model(**inputs)[0])   # "split" reuses its cached bias
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-4, rtol=0)
    assert (outs[0] - stock).abs().max() > 1e-4
    attn2 = [type(p).__name__ for n, p in model.attn_processors.items() if ".attn2." in n]
    assert attn2 == ["WanAttnProcessor"] * 2
