"""A procedural room: textured walls and floor, a table with objects, one moving ball.

A static exo camera watches the table; an ego camera follows a head-like trajectory looking
at it. Everything is ray cast against the analytic triangle meshes with open3d's
RaycastingScene, independently of egox's point renderer, so it can check that renderer.
World frame: REP 103 (x forward, y left, z up), metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
import torch

from egox_model.clip import Clip
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import look_at
from egox_model.geometry.projection import backproject, project, transform_points

__all__ = ["SceneClip", "SceneConfig", "render_scene"]

_LIGHT = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


@dataclass(frozen=True)
class SceneConfig:
    """Sizes are (height, width) in pixels; fov is horizontal, degrees."""

    seed: int = 0
    num_frames: int = 49
    fps: float = 30.0
    exo_size: tuple[int, int] = (448, 784)
    ego_size: tuple[int, int] = (448, 448)
    exo_hfov_deg: float = 80.0
    ego_hfov_deg: float = 85.0
    exo_motion_m: float = 0.0       # amplitude of a moving exo camera's sway (0 = static)

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise InputError(f"num_frames must be >= 1, got {self.num_frames}")
        if min(self.exo_size + self.ego_size) < 8:
            raise InputError(f"image sizes must be >= 8 pixels, got {self.exo_size}, "
                             f"{self.ego_size}")


@dataclass
class SceneClip:
    """Rendered ground truth: exo/ego RGB (F, H, W, 3) uint8, z-depth (F, H, W) float32 m,
    dynamic_mask (F, H, W) bool (exo pixels of the moving ball), cameras, stamps.

    ego_covisible (F, h, w) bool marks the ego pixels whose surface point the exo camera sees
    too (static, unoccluded), leaving out pixels next to a depth edge (which surface those
    show depends on sub-pixel position): where a perfect prior equals the ego ground truth.
    """

    exo_rgb: np.ndarray
    exo_depth_m: np.ndarray
    dynamic_mask: np.ndarray
    ego_rgb: np.ndarray
    ego_depth_m: np.ndarray
    ego_dynamic_mask: np.ndarray
    ego_covisible: np.ndarray
    exo_K: Intrinsics
    exo_c2w: np.ndarray
    ego_K: Intrinsics
    ego_c2w: np.ndarray
    stamps_ns: np.ndarray
    fps: float
    meta: dict = field(default_factory=dict)

    def to_clip(self, **depth) -> Clip:
        """A `Clip` of this scene; pass depth fields (default: the ground-truth depth)."""
        depth = depth or {"exo_depth_m": self.exo_depth_m}
        return Clip(exo_rgb=self.exo_rgb, exo_K=self.exo_K, exo_c2w=self.exo_c2w,
                    ego_K=self.ego_K, ego_c2w=self.ego_c2w, stamps_ns=self.stamps_ns,
                    dynamic_mask=self.dynamic_mask, fps=self.fps, **depth)


def _intrinsics(size: tuple[int, int], hfov_deg: float) -> Intrinsics:
    height, width = size
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height)


def _box(center, size) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(*size)
    return mesh.translate(np.asarray(center) - np.asarray(size) / 2)


def _static_objects(rng: np.random.Generator) -> list[tuple[o3d.geometry.TriangleMesh, tuple]]:
    """(mesh, (base colour RGB in [0, 1], texture wavelength m)) of the static scene."""
    hue = rng.uniform(0.0, 1.0, size=(8, 3)) * 0.5 + 0.3
    objects = [
        (_box((0.0, 0.0, 1.3), (7.0, 6.0, 2.6)), (np.array([0.75, 0.72, 0.65]), 0.9)),  # room
        (_box((0.0, 0.0, 0.725), (1.2, 0.8, 0.05)), (np.array([0.55, 0.38, 0.22]), 0.35)),
    ]
    for sx in (-0.55, 0.55):                                                           # legs
        for sy in (-0.35, 0.35):
            objects.append((_box((sx, sy, 0.35), (0.05, 0.05, 0.7)),
                            (np.array([0.3, 0.22, 0.15]), 0.5)))
    x0, y0 = rng.uniform(-0.35, -0.15), rng.uniform(-0.25, 0.25)
    objects.append((_box((x0, y0, 0.83), (0.16, 0.16, 0.16)), (hue[0], 0.25)))
    cyl = o3d.geometry.TriangleMesh.create_cylinder(0.06, 0.22, resolution=48)
    objects.append((cyl.translate((rng.uniform(0.15, 0.4), rng.uniform(-0.25, 0.25), 0.86)),
                    (hue[1], 0.2)))
    objects.append((_box((rng.uniform(1.5, 2.5), 2.5, 0.6), (1.0, 0.6, 1.2)), (hue[2], 0.6)))
    objects.append((_box((-3.0, rng.uniform(-1.0, 1.0), 1.2), (0.4, 1.8, 1.6)), (hue[3], 0.6)))
    return objects


def _shade(points: torch.Tensor, normals: torch.Tensor, colors: torch.Tensor,
           wavelengths: torch.Tensor) -> np.ndarray:
    """View-independent colour of surface points: smooth procedural texture x Lambert."""
    pattern = torch.sin(points * (2 * np.pi / wavelengths[..., None])).mean(-1)
    light = 0.6 + 0.4 * (normals @ torch.from_numpy(_LIGHT).float()).abs()
    rgb = colors * ((0.8 + 0.2 * pattern) * light * 255.0)[..., None]
    return (rgb + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def _cast(scene: o3d.t.geometry.RaycastingScene, K: Intrinsics, c2w: np.ndarray,
          materials: torch.Tensor, shade=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB, z-depth and geometry ids of one view (rays through the pixel centres).

    shade(points, normals, material rows) -> uint8 RGB colours the hits (default: this room's
    smooth texture from rows (r, g, b, wavelength)); a miss gets the last material."""
    K_t = torch.from_numpy(K.K).float()
    dirs_cam = backproject(torch.ones(K.height, K.width), K_t)
    dirs = dirs_cam @ torch.from_numpy(c2w[:3, :3].T).float()      # z_cam = 1: t_hit = z
    origins = torch.from_numpy(c2w[:3, 3]).float().expand_as(dirs)
    hit = scene.cast_rays(o3d.core.Tensor(torch.cat((origins, dirs), -1).numpy()))
    depth = torch.from_numpy(hit["t_hit"].numpy())
    finite = torch.isfinite(depth)
    ids = torch.from_numpy(hit["geometry_ids"].numpy().astype(np.int64))
    ids = torch.where(finite, ids, len(materials) - 1)
    depth = torch.where(finite, depth, 0.0)
    points = origins + dirs * depth[..., None]
    normals = torch.from_numpy(hit["primitive_normals"].numpy())
    if shade is None:
        rgb = _shade(points, normals, materials[ids, :3], materials[ids, 3])
    else:
        rgb = shade(points, normals, materials[ids])
    return rgb, depth.numpy(), ids.numpy()


def _covisible(ego_depth: np.ndarray, ego_K: Intrinsics, ego_c2w: np.ndarray,
               exo_depth: np.ndarray, exo_static: np.ndarray, exo_K: Intrinsics,
               exo_c2w: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
    """Ego pixels whose ground-truth point projects onto an exo pixel seeing that point."""
    cam = backproject(torch.from_numpy(ego_depth).double(), torch.from_numpy(ego_K.K))
    world = transform_points(torch.from_numpy(ego_c2w), cam.reshape(-1, 3))
    exo_cam = transform_points(torch.from_numpy(np.linalg.inv(exo_c2w)), world)
    uv, z = project(exo_cam, torch.from_numpy(exo_K.K))
    u, v = torch.round(uv).long().unbind(-1)
    inside = (z > 0) & (u >= 0) & (u < exo_K.width) & (v >= 0) & (v < exo_K.height)
    seen = torch.zeros_like(inside)
    zi, ui, vi = z[inside], u[inside], v[inside]
    exo_z = torch.from_numpy(exo_depth)[vi, ui].double()
    seen[inside] = ((zi - exo_z).abs() <= tolerance * exo_z) & torch.from_numpy(exo_static)[vi, ui]
    depth = torch.from_numpy(ego_depth)[None, None]
    near = -torch.nn.functional.max_pool2d(-depth, 3, stride=1, padding=1)
    far = torch.nn.functional.max_pool2d(depth, 3, stride=1, padding=1)
    smooth = (far - near <= 0.05 * near)[0, 0]
    return (seen.view(ego_depth.shape) & smooth & (depth[0, 0] > 0)).numpy()


def render_scene(config: SceneConfig = SceneConfig()) -> SceneClip:
    """Render the clip of `config` (deterministic from config.seed)."""
    rng = np.random.default_rng(config.seed)
    objects = _static_objects(rng)
    ball_color = np.array([0.85, 0.2, 0.15])
    materials = torch.tensor(np.array([np.r_[c, w] for _, (c, w) in objects]
                                      + [np.r_[ball_color, 0.1], np.r_[0.0, 0.0, 0.0, 1.0]]),
                             dtype=torch.float32)
    ball_id = len(objects)
    ball = o3d.geometry.TriangleMesh.create_sphere(0.07, resolution=24)
    ball.compute_triangle_normals()

    exo_K = _intrinsics(config.exo_size, config.exo_hfov_deg)
    ego_K = _intrinsics(config.ego_size, config.ego_hfov_deg)
    table = np.array([0.0, 0.0, 0.75])
    exo_eye = np.array([1.7, -1.4, 1.6]) + rng.uniform(-0.1, 0.1, 3)
    t = np.arange(config.num_frames) / config.fps
    sway = config.exo_motion_m * np.stack((np.sin(1.1 * t), np.sin(1.7 * t + 0.5),
                                           0.5 * np.sin(0.9 * t)), -1)   # handheld / on a robot
    exo_c2w = np.stack([look_at(exo_eye + d, table + [0.0, 0.0, 0.1]) for d in sway])
    phase = rng.uniform(0, 2 * np.pi)
    ego_c2w = np.empty((config.num_frames, 4, 4))
    ball_path = np.empty((config.num_frames, 3))
    for f, tf in enumerate(t):                            # a head swaying while looking down
        eye = np.array([-0.95 + 0.05 * np.sin(1.3 * tf + phase),
                        0.15 * np.sin(0.9 * tf + phase), 1.62 + 0.02 * np.sin(2.1 * tf)])
        gaze = table + [0.05 * np.sin(0.7 * tf), 0.1 * np.sin(0.8 * tf + phase), 0.05]
        ego_c2w[f] = look_at(eye, gaze)
        ball_path[f] = [0.05 + 0.25 * np.sin(2.0 * tf + phase), 0.2 * np.cos(1.5 * tf),
                        0.75 + 0.025 + 0.07]

    exo_rgb = np.empty((config.num_frames, *config.exo_size, 3), np.uint8)
    ego_rgb = np.empty((config.num_frames, *config.ego_size, 3), np.uint8)
    exo_depth = np.empty((config.num_frames, *config.exo_size), np.float32)
    ego_depth = np.empty((config.num_frames, *config.ego_size), np.float32)
    exo_dyn = np.empty((config.num_frames, *config.exo_size), bool)
    ego_dyn = np.empty((config.num_frames, *config.ego_size), bool)
    covisible = np.empty((config.num_frames, *config.ego_size), bool)
    for f in range(config.num_frames):
        scene = o3d.t.geometry.RaycastingScene()
        for mesh, _ in objects:
            mesh.compute_triangle_normals()
            scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
        moved = o3d.geometry.TriangleMesh(ball).translate(ball_path[f])
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(moved))
        exo_rgb[f], exo_depth[f], ids = _cast(scene, exo_K, exo_c2w[f], materials)
        exo_dyn[f] = ids == ball_id
        ego_rgb[f], ego_depth[f], ids = _cast(scene, ego_K, ego_c2w[f], materials)
        ego_dyn[f] = ids == ball_id
        covisible[f] = _covisible(ego_depth[f], ego_K, ego_c2w[f], exo_depth[f], ~exo_dyn[f],
                                  exo_K, exo_c2w[f]) & ~ego_dyn[f]
    stamps = 1_700_000_000 * 10**9 + np.round(t * 1e9).astype(np.int64)
    return SceneClip(exo_rgb, exo_depth, exo_dyn, ego_rgb, ego_depth, ego_dyn, covisible, exo_K,
                     exo_c2w, ego_K, ego_c2w, stamps, config.fps,
                     meta={"seed": config.seed, "ball_path_m": ball_path.tolist()})
