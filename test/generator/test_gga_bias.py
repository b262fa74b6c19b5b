"""GGA bias: the per-token tables and every bias builder against the float64 definition."""
from __future__ import annotations

import pytest
import torch
from test_gga_reference import CASES, FORMS, STRENGTHS, Case, bias_mask, geometry, naive_bias

from egox_model.errors import InputError
from egox_model.generator.gga import GGAConfig, gga_bias, gga_dense_bias, gga_exo_bias, gga_tables
from egox_model.geometry.tokens import TokenGeometry


def test_bias_forms_on_values() -> None:
    cos = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    eps = 1e-6
    official3 = torch.log(torch.tensor([-1.0, -0.5, 0.0, 1.5, 3.0]) + 1 + eps)
    official_half = torch.log(0.5 * cos + 1 + eps)
    torch.testing.assert_close(gga_bias(cos, 3.0, "official"), official3)
    torch.testing.assert_close(gga_bias(cos, 0.5, "official"), official_half)
    torch.testing.assert_close(gga_bias(cos, 1.0, "official"), torch.log(cos + 1 + eps))
    torch.testing.assert_close(gga_bias(cos, 3.0, "power"), 3 * torch.log(cos + 1 + eps))
    for strength in STRENGTHS:      # a tensor lambda (as the kernels pass it) gives the same
        for form in FORMS:
            torch.testing.assert_close(gga_bias(cos, torch.tensor(strength), form),
                                       gga_bias(cos, strength, form), atol=0, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tables_lay_out_wan_tokens(case: Case) -> None:
    tables = gga_tables(geometry(case))
    tokens = [case.token(s) for s in range(case.num_tokens)]
    ego = [s for s, (_, _, c) in enumerate(tokens) if c >= case.w_x]
    assert tables.num_tokens == case.num_tokens
    assert tables.ego_idx.tolist() == ego
    assert tables.exo_idx.tolist() == [s for s in range(case.num_tokens) if s not in ego]
    assert tables.ego_per_frame == case.rows * case.w_e
    valid = torch.isfinite(geometry(case).exo_points).all(-1)
    assert tables.k_valid.tolist() == [c < case.w_x and bool(valid[t, r, c])
                                       for t, r, c in tokens]
    centers = geometry(case).ego_centers
    torch.testing.assert_close(tables.q_centers, centers[[tokens[s][0] for s in ego]])
    assert torch.isfinite(tables.k_points).all()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_dense_bias_matches_definition(case: Case) -> None:
    """exp(bias) is the factor on each softmax weight: compared with the definition's to
    1e-5 (the log itself amplifies the fp32 rounding of a cosine near -1); pairs that get no
    bias must be exactly 0."""
    tables, mask = gga_tables(geometry(case)), bias_mask(case)
    for strength in STRENGTHS:
        for form in FORMS:
            bias = gga_dense_bias(tables, GGAConfig(strength=strength, form=form)).double()
            expected = naive_bias(case, strength, form)
            torch.testing.assert_close(bias.exp(), expected.exp(), atol=1e-6, rtol=1e-5,
                                       msg=lambda m: f"{form} {strength}: {m}")
            assert bias[~mask].abs().max() == 0


@pytest.mark.parametrize("case", CASES, ids=str)
def test_exo_bias_is_the_ego_x_exo_block_in_padded_groups(case: Case) -> None:
    tables = gga_tables(geometry(case))
    ego, exo = tables.ego_idx, tables.exo_idx
    expected = naive_bias(case, 3.0, "power")[ego][:, exo].exp()
    num_ego, num_exo = expected.shape
    for rows_per_group in (1, 3, 5, 7, 1280):
        bias = gga_exo_bias(tables, GGAConfig(strength=3.0, form="power"), torch.float32,
                            rows_per_group=rows_per_group)
        groups = max(1, round(num_ego / rows_per_group))
        assert bias.shape == (groups, -(-num_ego // groups), num_exo)
        assert bias.stride(1) % 8 == 0                # rows padded in memory to 8 entries
        flat = bias.flatten(0, 1)
        torch.testing.assert_close(flat[:num_ego].double().exp(), expected, atol=1e-6,
                                   rtol=1e-5)
        assert flat[num_ego:].abs().sum() == 0       # padding rows


def test_exo_bias_groups_pad_in_the_sweep() -> None:
    """rows_per_group 3, 5, 7 (the kernels' sweep) give groups with padding rows."""
    padded = set()
    for case in CASES:
        tables = gga_tables(geometry(case))
        for rows_per_group in (3, 5, 7):
            bias = gga_exo_bias(tables, GGAConfig(), torch.float32, rows_per_group)
            if bias.shape[0] * bias.shape[1] > tables.ego_idx.shape[0]:
                padded.add((case.frames, case.rows, case.w_e, rows_per_group))
    assert len(padded) >= 3, padded


def test_table_errors_name_the_field() -> None:
    geo = geometry(Case(2, 3, 4, 2))
    with pytest.raises(InputError, match="exo_points"):
        gga_tables(TokenGeometry(geo.ego_dirs, geo.ego_centers, geo.exo_points[:1]))
    with pytest.raises(InputError, match="ego_dirs"):
        gga_tables(TokenGeometry(geo.ego_dirs[0], geo.ego_centers, geo.exo_points))
    with pytest.raises(InputError, match="ego_centers"):
        gga_tables(TokenGeometry(geo.ego_dirs, geo.ego_centers[:1], geo.exo_points))
    with pytest.raises(InputError, match="w_e, w_x >= 1"):
        gga_tables(TokenGeometry(geo.ego_dirs, geo.ego_centers, geo.exo_points[:, :, :0]))
    with pytest.raises(InputError, match="rows_per_group"):
        gga_exo_bias(gga_tables(geo), GGAConfig(), torch.float32, rows_per_group=0)
