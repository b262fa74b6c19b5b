"""A family of ray-cast scenes to score the ego prior on geometry it was not tuned on.

Each scene is a textured table top (1.4 m square, nothing beyond) with a box, a cylinder
and a thin plate, watched by a static exo camera and an ego camera that sways slightly.
What varies: the ego/exo magnification of the target (0.5x-3x: the ego camera moves closer
or farther, same focal length), the angle between the two cameras' viewing directions
(30-150 degrees), how obliquely the exo camera sees the box and plate sides (their normals
turned away from it by up to 80 degrees, seen almost edge-on), and the texture (checkers or
stripes with a period of a few centimetres, edges softened over 6 mm, about 1.5 exo pixels,
as a lens would: detail the exo camera cannot resolve is no prior's to recover). Like the
room, every image is ray cast by open3d, independently of egox's renderer.

Covisible ego pixels are found by ray casting both ways (`covisible_mask`, docs/prior.md).
World frame: REP 103 (x forward, y left, z up), metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import look_at
from egox_model.geometry.projection import backproject, project, transform_points
from egox_model.scene.room import SceneClip, _cast, _intrinsics

__all__ = ["EVAL_SCENES", "TABLE_TOP_Z_M", "EvalScene", "covisible_mask", "render_eval_scene"]

#: World height of the table top (metres): the plane `prior.plane` can be given.
TABLE_TOP_Z_M = 0.0

_LIGHT = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
_EXO_DISTANCE_M = 1.6
_HFOV_DEG = 60.0
_TARGET = np.array([0.0, 0.0, 0.12])
_TEXTURES = ("checker", "stripes")
_EDGE_M = 0.006         # texture edges soften over ~6 mm: ~1.5 exo pixels at the exo distance


@dataclass(frozen=True)
class EvalScene:
    """One scene of the family: what it varies, and its seed (placement, colours, sway)."""

    name: str
    magnification: float        # ego / exo image scale of the target (same focal length)
    angle_deg: float            # between the cameras' viewing directions, about the target
    obliqueness_deg: float      # box / plate side normals turned away from the exo camera
    texture: str                # 'checker' or 'stripes'
    period_m: float             # texture period
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.25 <= self.magnification <= 4.0:
            raise InputError(f"magnification must be in [0.25, 4], got {self.magnification}")
        if not 0.0 < self.angle_deg < 180.0:
            raise InputError(f"angle_deg must be in (0, 180), got {self.angle_deg}")
        if not 0.0 <= self.obliqueness_deg < 90.0:
            raise InputError(f"obliqueness_deg must be in [0, 90), got {self.obliqueness_deg}")
        if self.texture not in _TEXTURES:
            raise InputError(f"texture must be one of {_TEXTURES}, got {self.texture!r}")
        if not self.period_m > 0:
            raise InputError(f"period_m must be > 0, got {self.period_m}")


#: The evaluation set: every parameter varies across scenes, each at two seeds.
EVAL_SCENES = tuple(
    EvalScene(name, m, angle, oblique, texture, period, seed)
    for name, m, angle, oblique, texture, period in (
        ("front-1x", 1.0, 30.0, 20.0, "checker", 0.04),
        ("closer-2x", 2.0, 60.0, 45.0, "stripes", 0.03),
        ("closer-3x", 3.0, 45.0, 60.0, "checker", 0.03),
        ("farther-0.5x", 0.5, 90.0, 30.0, "stripes", 0.02),
        ("grazing-1.5x", 1.5, 90.0, 80.0, "checker", 0.05),
        ("opposite-150", 1.2, 150.0, 50.0, "stripes", 0.04),
        ("side-2x-fine", 2.0, 120.0, 70.0, "checker", 0.02),
    )
    for seed in (0, 1))


def _shade(points: torch.Tensor, normals: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
    """Colour of surface points from material rows (r, g, b, period m, 0 checker/1 stripes):
    soft-edged solid texture x Lambert, view-independent."""
    color, period, stripes = rows[..., :3], rows[..., 3:4], rows[..., 4:5] > 0.5
    axes = torch.tensor([[0.8, 0.45, 0.4], [-0.45, 0.85, 0.3]], dtype=torch.float32).T
    phase = (points @ axes) * (2 * np.pi / period)
    edge = torch.tanh(period / (np.pi * _EDGE_M) * torch.sin(phase))  # soft square waves
    pattern = torch.where(stripes, edge[..., :1], edge[..., :1] * edge[..., 1:])[..., 0]
    light = 0.6 + 0.4 * (normals @ torch.from_numpy(_LIGHT).float()).abs()
    rgb = color * ((0.8 + 0.2 * pattern) * light * 255.0)[..., None]
    return (rgb + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def _rotated_box(center, size, yaw: float) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(*size)
    mesh.translate(-np.asarray(size) / 2)
    mesh.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0.0, 0.0, yaw)), center=(0, 0, 0))
    return mesh.translate(center)


def _objects(spec: EvalScene, exo_azimuth: float, rng: np.random.Generator) -> list:
    """(mesh, material row) of the static scene; box and plate faces turned `obliqueness`
    away from the exo camera's horizontal direction."""
    kind = float(spec.texture == "stripes")
    hue = rng.uniform(0.35, 0.95, size=(4, 3))
    facing = exo_azimuth + np.radians(spec.obliqueness_deg)         # box side normal azimuth
    jitter = rng.uniform(-0.03, 0.03, size=(3, 2))
    slab = o3d.geometry.TriangleMesh.create_box(1.4, 1.4, 0.05).translate(
        (-0.7, -0.7, TABLE_TOP_Z_M - 0.05))
    box_at = np.r_[_TARGET[:2] + jitter[0] + [-0.06, -0.1], 0.1]
    cyl = o3d.geometry.TriangleMesh.create_cylinder(0.06, 0.24, resolution=64)
    plate_yaw = exo_azimuth - np.radians(spec.obliqueness_deg) + np.pi / 2
    return [
        (slab, (hue[0] * 0.9, spec.period_m * 1.5, kind)),
        (_rotated_box(box_at, (0.2, 0.2, 0.2), facing), (hue[1], spec.period_m, kind)),
        (cyl.translate(np.r_[_TARGET[:2] + jitter[1] + [0.12, 0.12], 0.12]),
         (hue[2], spec.period_m, 1.0 - kind)),
        (_rotated_box(np.r_[_TARGET[:2] + jitter[2] + [0.1, -0.16], 0.1], (0.01, 0.24, 0.2),
                      plate_yaw), (hue[3], spec.period_m, kind)),
    ]


def _camera(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    direction = np.array([np.cos(elevation) * np.cos(azimuth),
                          np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return _TARGET + distance * direction


def covisible_mask(scene: o3d.t.geometry.RaycastingScene, ego_depth: np.ndarray,
                   ego_ids: np.ndarray, ego_K: Intrinsics, ego_c2w: np.ndarray,
                   exo_ids: np.ndarray, exo_K: Intrinsics, exo_c2w: np.ndarray,
                   rel_tol: float = 5e-4) -> np.ndarray:
    """(h, w) bool: ego pixels whose ray-cast surface point X the exo camera sees.

    The exo camera's own ray towards X must hit X first (no occluder, ray cast), X must
    project at least one pixel inside the exo image, the four exo pixels around that
    projection must see X's object (X is not within a pixel of an exo silhouette), and the
    ego pixel's 3x3 neighbourhood must see one object (not on an ego silhouette, where which
    surface a pixel shows depends on sub-pixel position)."""
    height, width = ego_depth.shape
    cam = backproject(torch.from_numpy(ego_depth).double(), torch.from_numpy(ego_K.K))
    world = transform_points(torch.from_numpy(ego_c2w), cam.reshape(-1, 3))   # (N, 3)
    origin = torch.from_numpy(exo_c2w[:3, 3])
    offset = world - origin
    distance = torch.linalg.vector_norm(offset, dim=-1)
    rays = torch.cat((origin.expand_as(world), offset / distance[:, None]), -1).float()
    t_hit = torch.from_numpy(scene.cast_rays(o3d.core.Tensor(rays.numpy()))["t_hit"].numpy())
    unoccluded = t_hit.double() >= distance * (1.0 - rel_tol)
    exo_cam = transform_points(torch.from_numpy(np.linalg.inv(exo_c2w)), world)
    uv, z = project(exo_cam, torch.from_numpy(exo_K.K))
    u, v = uv.unbind(-1)
    inside = ((z > 0) & (u >= 1) & (u <= exo_K.width - 2) & (v >= 1)
              & (v <= exo_K.height - 2))
    ids = torch.from_numpy(ego_ids).view(-1)
    exo = torch.from_numpy(exo_ids)
    same = inside.clone()
    for col in (u.floor(), u.ceil()):
        for row in (v.floor(), v.ceil()):
            c = col.long().clamp(0, exo_K.width - 1)
            r = row.long().clamp(0, exo_K.height - 1)
            same &= exo[r, c] == ids
    grid = torch.from_numpy(ego_ids)[None, None].double()
    one_object = (torch.nn.functional.max_pool2d(grid, 3, 1, 1)
                  == -torch.nn.functional.max_pool2d(-grid, 3, 1, 1))[0, 0]
    seen = (unoccluded & same).view(height, width) & one_object
    return (seen & torch.from_numpy(ego_depth > 0)).numpy()


def render_eval_scene(spec: EvalScene, num_frames: int = 3,
                      exo_size: tuple[int, int] = (240, 320),
                      ego_size: tuple[int, int] = (240, 240)) -> SceneClip:
    """Ray cast `spec` (static exo camera, swaying ego camera; no moving objects)."""
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng(spec.seed)
    exo_azimuth = np.radians(rng.uniform(-20.0, 20.0))
    ego_azimuth = exo_azimuth + np.radians(spec.angle_deg) * rng.choice((-1.0, 1.0))
    objects = _objects(spec, exo_azimuth, rng)
    materials = torch.tensor(np.array([np.r_[c, p, k] for _, (c, p, k) in objects]
                                      + [np.zeros(5)]), dtype=torch.float32)
    scene = o3d.t.geometry.RaycastingScene()
    for mesh, _ in objects:
        mesh.compute_triangle_normals()
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))

    exo_K, ego_K = _intrinsics(exo_size, _HFOV_DEG), _intrinsics(ego_size, _HFOV_DEG)
    exo_eye = _camera(exo_azimuth, np.radians(rng.uniform(30.0, 40.0)), _EXO_DISTANCE_M)
    exo_c2w = np.repeat(look_at(exo_eye, _TARGET)[None], num_frames, 0)
    # Same focal length in pixels per unit image width: the ego distance sets the scale.
    ego_distance = _EXO_DISTANCE_M * (ego_K.fx / exo_K.fx) / spec.magnification
    ego_elevation = np.radians(rng.uniform(40.0, 55.0))
    t = np.arange(num_frames) / 30.0
    ego_c2w = np.stack([look_at(_camera(ego_azimuth + 0.02 * np.sin(3.0 * tf),
                                        ego_elevation + 0.01 * np.cos(2.0 * tf),
                                        ego_distance), _TARGET + [0.0, 0.0, 0.01 * tf])
                        for tf in t])

    exo_rgb, exo_depth, exo_ids = _cast(scene, exo_K, exo_c2w[0], materials, _shade)
    ego = [_cast(scene, ego_K, pose, materials, _shade) for pose in ego_c2w]
    covisible = np.stack([covisible_mask(scene, depth, ids, ego_K, pose, exo_ids, exo_K,
                                         exo_c2w[0]) for (_, depth, ids), pose in
                          zip(ego, ego_c2w)])
    exo_static = np.zeros((num_frames, *exo_size), bool)
    ego_static = np.zeros((num_frames, *ego_size), bool)
    stamps = 1_700_000_000 * 10**9 + np.round(t * 1e9).astype(np.int64)
    return SceneClip(np.repeat(exo_rgb[None], num_frames, 0),
                     np.repeat(exo_depth[None], num_frames, 0), exo_static,
                     np.stack([rgb for rgb, _, _ in ego]),
                     np.stack([depth for _, depth, _ in ego]), ego_static, covisible,
                     exo_K, exo_c2w, ego_K, ego_c2w, stamps, 30.0,
                     meta=_meta(spec, ego_distance))


def _meta(spec: EvalScene, ego_distance: float) -> dict:
    return {"name": spec.name, "seed": spec.seed, "magnification": spec.magnification,
            "angle_deg": spec.angle_deg, "obliqueness_deg": spec.obliqueness_deg,
            "texture": spec.texture, "period_m": spec.period_m,
            "ego_distance_m": round(ego_distance, 4)}
