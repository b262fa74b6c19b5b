"""Float64 ground truth for the GGA tests, straight from the definition, pair by pair.

Imported by the other test_gga_*.py files; its own tests check it on hand-worked values.
Cases sweep token grids (odd, tiny, w_e > w_x, a single exo column) and invalid exo points
(none, some, a whole latent frame, all), and every geometry holds one ego ray with exo points
exactly along it and exactly against it, so the clamps at cosine +-1 are exercised.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from egox_model.geometry.tokens import TokenGeometry

#: (T, h, w_x, w_e): latent frames, token rows, exo columns, ego columns.
GRIDS = [(1, 1, 1, 1), (2, 3, 4, 2), (3, 4, 6, 4), (1, 2, 5, 3), (4, 1, 3, 7), (2, 5, 1, 1)]
INVALID = ["none", "some", "frame", "all"]
STRENGTHS = [0.0, 0.5, 1.0, 3.0]
FORMS = ["official", "power"]


@dataclass(frozen=True)
class Case:
    """One token geometry: grid, which exo points are invalid (NaN), seed."""

    frames: int
    rows: int
    w_x: int
    w_e: int
    invalid: str = "some"
    seed: int = 0

    @property
    def width(self) -> int:
        return self.w_x + self.w_e

    @property
    def num_tokens(self) -> int:
        return self.frames * self.rows * self.width

    def token(self, s: int) -> tuple[int, int, int]:
        """Sequence index -> (frame, row, col) in the [exo | ego] layout."""
        return s // (self.rows * self.width), s // self.width % self.rows, s % self.width

    def __str__(self) -> str:
        return f"T{self.frames}h{self.rows}x{self.w_x}e{self.w_e}-{self.invalid}"


CASES = [Case(*grid, invalid=invalid, seed=i) for i, (grid, invalid) in
         enumerate((g, v) for g in GRIDS for v in INVALID)]


@functools.lru_cache(maxsize=None)
def geometry(case: Case) -> TokenGeometry:
    """Random geometry of `case` (cached: do not modify it).

    Ego rays have norms in [0.9, 1] (pooled rays are not renormalised), except ray (0, 0, 0),
    which is a unit vector with exo point (0, 0, 0) at c_0 + 2 ray (cosine +1 for the queries
    of frame 0 along it) and the last exo point at c_0 - 3 ray (cosine -1).
    """
    t, h, w_x, w_e = case.frames, case.rows, case.w_x, case.w_e
    g = torch.Generator().manual_seed(1000 + case.seed)
    dirs = F.normalize(torch.randn(t, h, w_e, 3, generator=g), dim=-1)
    dirs = dirs * (0.9 + 0.1 * torch.rand(t, h, w_e, 1, generator=g))
    dirs[0, 0, 0] = torch.tensor([0.6, 0.0, 0.8])
    centers = torch.randn(t, 3, generator=g)
    points = 2.0 * torch.randn(t, h, w_x, 3, generator=g)
    points[0, 0, 0] = centers[0] + 2.0 * dirs[0, 0, 0]
    points[-1, -1, -1] = centers[0] - 3.0 * dirs[0, 0, 0]
    if case.invalid == "some":
        points[torch.rand(t, h, w_x, generator=g) < 0.3] = torch.nan
        points[-1, 0, w_x // 2, 1] = torch.nan    # one NaN coordinate is enough
    elif case.invalid == "frame":
        points[t // 2] = torch.nan                # a whole latent frame
    elif case.invalid == "all":
        points[:] = torch.nan
    return TokenGeometry(ego_dirs=dirs, ego_centers=centers, exo_points=points)


@functools.lru_cache(maxsize=None)
def _cosines(case: Case) -> tuple[tuple[float | None, ...], ...]:
    """Clamped cosine of every (query, key) pair that gets a bias, None for the others."""
    geo = geometry(case)
    dirs, centers = geo.ego_dirs.double().tolist(), geo.ego_centers.double().tolist()
    points = geo.exo_points.double().tolist()
    rows = []
    for m in range(case.num_tokens):
        i, r, c = case.token(m)
        row: list[float | None] = [None] * case.num_tokens
        if c >= case.w_x:                             # exo queries get no bias
            q_hat = dirs[i][r][c - case.w_x]
            for n in range(case.num_tokens):
                j, rr, cc = case.token(n)
                point = points[j][rr][cc] if cc < case.w_x else None
                if point is None or any(math.isnan(x) for x in point):
                    continue                          # ego key or invalid exo point
                k = [point[a] - centers[i][a] for a in range(3)]
                norm = math.sqrt(sum(x * x for x in k))
                row[n] = max(-1.0, min(1.0, sum(q_hat[a] * k[a] for a in range(3)) / norm))
        rows.append(tuple(row))
    return tuple(rows)


def bias_mask(case: Case) -> torch.Tensor:
    """(N, N) bool: the (query, key) pairs that get a bias (ego query, valid exo key)."""
    return torch.tensor([[cos is not None for cos in row] for row in _cosines(case)])


def naive_bias(case: Case, strength: float, form: str) -> torch.Tensor:
    """(N, N) float64 bias (rows = queries), pair by pair from the definition."""
    n = case.num_tokens
    bias = torch.zeros(n, n, dtype=torch.float64)
    for m, row in enumerate(_cosines(case)):
        for k, cos in enumerate(row):
            if cos is None:
                continue
            if form == "power":
                bias[m, k] = strength * math.log(cos + 1 + 1e-6)
            else:
                scaled = strength * cos if (strength <= 1 or cos > 0) else cos
                bias[m, k] = math.log(scaled + 1 + 1e-6)
    return bias


def reference_attention(case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        strength: float, form: str) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v in float64; q/k/v (B, H, N, D)."""
    logits = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(logits + naive_bias(case, strength, form), -1) @ v.double()


def test_cases_cover_the_sweep() -> None:
    assert len(CASES) == len(GRIDS) * len(INVALID)
    assert any(c.w_e > c.w_x for c in CASES) and any(c.w_x == 1 for c in CASES)
    for case in CASES:
        valid = torch.isfinite(geometry(case).exo_points).all(-1)
        expected = {"none": valid.all(), "all": ~valid.any(),
                    "frame": ~valid[case.frames // 2].any(),
                    "some": ~valid.all()}[case.invalid]
        assert expected, case


def test_reference_on_hand_worked_values() -> None:
    """Frame 0's first ego query has cosine +1 with exo key 0 and -1 with the last exo key."""
    case = Case(2, 1, 2, 1, invalid="none")
    ego0 = case.w_x                                  # sequence index of ego token (0, 0, 0)
    last_exo = case.num_tokens - case.width + case.w_x - 1
    official3, power3 = naive_bias(case, 3.0, "official"), naive_bias(case, 3.0, "power")
    assert official3[ego0, 0] == pytest.approx(math.log(3.0 + 1 + 1e-6))
    assert official3[ego0, last_exo] == pytest.approx(math.log(1e-6))   # c' = c when c <= 0
    assert power3[ego0, 0] == pytest.approx(3 * math.log(2 + 1e-6))
    half = naive_bias(case, 0.5, "official")
    assert half[ego0, last_exo] == pytest.approx(math.log(0.5 + 1e-6))  # c' = lambda c
    assert official3[:case.w_x].abs().max() == 0                         # exo queries
    assert official3[:, ego0].abs().max() == 0                           # ego keys


def test_reference_attention_is_stock_without_bias() -> None:
    case = Case(1, 2, 2, 2, invalid="all")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, case.num_tokens, 3, generator=g) for _ in range(3))
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    torch.testing.assert_close(reference_attention(case, q, k, v, 3.0, "power"), expected)
