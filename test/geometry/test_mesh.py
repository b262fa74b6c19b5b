"""The lifted surface mesh against ray-cast truth: a sparse near surface hides what is behind
it, a magnified surface has no holes, flying pixels at a depth step are not lifted."""
import numpy as np
import open3d as o3d
import torch

from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import LiftConfig, flying_pixels, lift_points
from egox_model.geometry.pose import look_at
from egox_model.geometry.render import render_points
from egox_model.scene.eval_scenes import _shade, covisible_mask
from egox_model.scene.room import _cast

EXO_K = Intrinsics(110.0, 110.0, 63.5, 47.5, 128, 96)
EGO_K = Intrinsics(90.0, 90.0, 47.5, 47.5, 96, 96)


def _raycast(meshes, rows):
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        mesh.compute_triangle_normals()
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    materials = torch.tensor(rows + [[0.0] * 5], dtype=torch.float32)
    return scene, materials


def _box(center, size, yaw=0.0):
    mesh = o3d.geometry.TriangleMesh.create_box(*size).translate(-np.asarray(size) / 2)
    mesh.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0.0, 0.0, yaw)), center=(0, 0, 0))
    return mesh.translate(center)


def _render_both(meshes, rows, exo_c2w, ego_c2w, config=LiftConfig()):
    """Ray-cast exo and ego views, the ego render of the lifted exo view, and the covisible
    ego pixels."""
    scene, materials = _raycast(meshes, rows)
    exo_rgb, exo_depth, exo_ids = _cast(scene, EXO_K, exo_c2w, materials, _shade)
    ego_rgb, ego_depth, ego_ids = _cast(scene, EGO_K, ego_c2w, materials, _shade)
    cloud = lift_points(exo_rgb[None], exo_depth[None], EXO_K, exo_c2w[None], config=config)
    out = render_points(cloud, EGO_K, ego_c2w[None])
    covisible = covisible_mask(scene, ego_depth, ego_ids, EGO_K, ego_c2w, exo_ids, EXO_K,
                               exo_c2w)
    return out, ego_depth, ego_ids, covisible


def test_thin_plate_at_a_grazing_angle_hides_the_wall_behind_it():
    # A 1 cm plate 1.4 m from the exo camera, its face turned 78 deg away from it (seen
    # almost edge-on: ~8 exo pixels across 0.5 m), in front of a striped wall; the ego camera
    # sees the plate's face at 40 deg from 0.9 m, about 4x magnified across it.
    wall = _box((3.0, 0.0, 0.0), (0.05, 4.0, 3.0))
    plate = _box((1.4, 0.0, 0.0), (0.01, 0.5, 0.4), yaw=np.radians(78.0))
    rows = [[0.8, 0.7, 0.5, 0.05, 1.0], [0.3, 0.6, 0.9, 0.03, 0.0]]
    exo_c2w = look_at([0.0, 0.0, 0.0], [1.4, 0.0, 0.0])
    view = np.array([np.cos(np.radians(38.0)), np.sin(np.radians(38.0)), 0.0])
    ego_c2w = look_at(np.array([1.4, 0.0, 0.05]) - 0.9 * view, [1.4, 0.0, 0.0])
    for config, closed in ((LiftConfig(), True), (LiftConfig(mesh=False), False)):
        out, ego_depth, ego_ids, covisible = _render_both([wall, plate], rows, exo_c2w,
                                                          ego_c2w, config)
        truth_plate = covisible & (ego_ids == 1)
        assert truth_plate.sum() > 500                 # the plate fills much of the view
        rendered = out.depth_m[0].numpy()
        on_plate = np.abs(rendered - ego_depth) <= 0.01 * ego_depth
        shows_plate = covisible & on_plate & (ego_ids == 1)
        if closed:
            # Exactly the ray-cast plate pixels show the plate, at its depth: no wall.
            np.testing.assert_array_equal(shows_plate, truth_plate)
            assert not (covisible & (ego_ids == 0) & (rendered < 2.0)).any()
        else:       # square splats: most plate pixels get a neighbouring sample's depth
            assert (shows_plate != truth_plate).sum() > 0.3 * truth_plate.sum()


def test_magnified_view_has_no_holes_inside_a_surface_the_exo_camera_saw_whole():
    # A textured slab seen by the exo camera from 2 m, by the ego camera from 0.5 m at 40 deg
    # (3x magnified and sheared): every ego pixel lies inside the exo view of the slab.
    slab = _box((2.0, 0.0, 0.0), (0.05, 3.0, 3.0))
    rows = [[0.8, 0.6, 0.4, 0.04, 0.0]]
    exo_c2w = look_at([0.0, 0.0, 0.0], [2.0, 0.0, 0.0])
    ego_eye = np.array([2.0, 0.0, 0.0]) + 0.5 * np.array([-np.cos(0.7), np.sin(0.7), 0.0])
    ego_c2w = look_at(ego_eye, [1.975, 0.0, 0.0])
    out, ego_depth, ego_ids, covisible = _render_both([slab], rows, exo_c2w, ego_c2w)
    assert covisible[2:-2, 2:-2].all()
    assert out.mask[0].all()
    np.testing.assert_allclose(out.depth_m[0].numpy(), ego_depth, rtol=1e-3)


def test_flying_pixels_at_a_depth_step_are_not_lifted():
    # Left: a wall at 1 m; right: a steep but real surface (depth grows 6 % per column: seen
    # ~9 deg from edge-on), then a step forward to 1.6 m; one column of mixed ("flying")
    # depth at each step.
    height, width = 24, 40
    depth = np.ones((height, width), np.float32)
    depth[:, 15:] = 1.3 * 1.06 ** np.arange(width - 15)[None]
    depth[:, 30:] = 1.6
    depth[:, 14] = 1.15                                           # between 1 and 1.3
    depth[:, 29] = 0.5 * (depth[0, 28] + 1.6)                     # between the ramp and 1.6
    K = Intrinsics(40.0, 40.0, 19.5, 11.5, width, height)
    flying = flying_pixels(torch.from_numpy(depth)[None], torch.ones(1, height, width,
                                                                     dtype=torch.bool), 0.02)
    expected = np.zeros((height, width), bool)
    expected[:, [14, 29]] = True
    np.testing.assert_array_equal(flying[0].numpy(), expected)
    cloud = lift_points(np.zeros((1, height, width, 3), np.uint8), depth[None], K,
                        np.eye(4)[None])
    z = cloud.xyz[:, 2].numpy()
    lifted = np.sort(np.unique(np.round(z, 4)))
    assert not np.isin(np.round([1.15, depth[0, 29]], 4), lifted).any()
    assert len(cloud) == height * (width - 2)          # the ramp is kept whole
    # No triangle joins the two sides of a step.
    tri_z = cloud.xyz[cloud.faces][..., 2]
    spread = (tri_z.amax(1) / tri_z.amin(1)).numpy()
    assert spread.max() < 1.06 ** 2


def test_compiled_and_op_by_op_triangle_renders_agree(monkeypatch):
    from egox_model.geometry import render

    v, u = np.mgrid[0:64, 0:96]
    depth = (2.0 + 0.3 * np.sin(u / 9.0) + 0.2 * np.cos(v / 7.0)).astype(np.float32)[None]
    depth[:, 20:40, 30:50] = 1.2                          # a box in front: depth edges
    rgb = np.random.default_rng(3).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    K = Intrinsics(120.0, 120.0, 47.5, 31.5, 96, 64)
    cloud = lift_points(rgb, depth, K, np.eye(4)[None])
    poses = np.stack([look_at([0.3, -0.2, -0.4], [0.0, 0.0, 2.0], up=[0, -1, 0]),
                      look_at([-0.2, 0.1, 0.9], [0.0, 0.0, 2.0], up=[0, -1, 0])])
    compiled = render_points(cloud, K, poses)
    for name in ("_one_pixel_triangles", "_triangle_setup", "_candidate_keys", "_resolve_faces"):
        monkeypatch.setattr(render, name, getattr(render, name).__wrapped__)
    eager = render_points(cloud, K, poses)
    assert compiled.mask.float().mean() > 0.5
    assert (compiled.mask != eager.mask).float().mean() < 1e-3
    both = compiled.mask & eager.mask
    np.testing.assert_allclose(compiled.depth_m[both], eager.depth_m[both], rtol=1e-4)
    diff = (compiled.rgb[both].int() - eager.rgb[both].int()).abs()
    assert (diff > 1).float().mean() < 1e-3


def test_a_failing_compile_runs_op_by_op_with_one_warning(monkeypatch):
    """torch.compile is called on first use (not at import), and a backend failure there
    leaves the function running op by op, warned once."""
    import warnings

    import pytest

    from egox_model.geometry import render

    calls = []

    def broken_compile(fn, **kwargs):
        calls.append(fn)

        def run(*args):
            raise torch._dynamo.exc.BackendCompilerFailed(fn, RuntimeError("no compiler"),
                                                          None)
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = render._fused(lambda x: x * 2)
    assert calls == []                                   # nothing compiled before the call
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*op by op"):
        assert double(torch.ones(3)).tolist() == [2.0, 2.0, 2.0]
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # eager from now on, no new warning
        assert double(torch.ones(2)).tolist() == [2.0, 2.0]
    assert len(calls) == 1
