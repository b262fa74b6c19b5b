"""Batched projection / back-projection round trips."""
import numpy as np
import torch

from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject, pixel_rays, project, transform_points
from egox_model.geometry.pose import look_at


def test_backproject_then_project_returns_the_pixels():
    K = torch.from_numpy(Intrinsics(300.0, 310.0, 31.5, 23.5, 64, 48).K).float()
    depth = torch.rand(2, 48, 64) * 5 + 0.5
    points = backproject(depth, K.expand(2, 3, 3))
    uv, z = project(points.flatten(1, 2), K.expand(2, 3, 3))
    v, u = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    torch.testing.assert_close(uv.view(2, 48, 64, 2), torch.stack((u, v), -1).expand(2, -1, -1, -1),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(z.view(2, 48, 64), depth)


def test_world_round_trip_and_rays():
    c2w = torch.from_numpy(look_at([1.0, -2.0, 1.5], [0.0, 0.0, 0.7]))
    K = torch.from_numpy(Intrinsics(200.0, 200.0, 15.5, 11.5, 32, 24).K)
    depth = torch.full((24, 32), 3.0, dtype=torch.float64)
    world = transform_points(c2w, backproject(depth, K).view(-1, 3))
    back = transform_points(torch.linalg.inv(c2w), world)
    uv, z = project(back, K)
    assert torch.allclose(z, depth.view(-1))
    rays = pixel_rays(K, c2w, 24, 32)
    np.testing.assert_allclose(rays.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    along = (world - c2w[:3, 3]) / (world - c2w[:3, 3]).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(rays.view(-1, 3), along)
