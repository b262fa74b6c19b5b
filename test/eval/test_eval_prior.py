"""`egox eval prior`: the scene family, the reference splat and the command end to end."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from egox_model.eval.prior import reference_splat
from egox_model.geometry.camera import Intrinsics
from egox_model.scene.eval_scenes import EVAL_SCENES, render_eval_scene

EGOX = Path(sys.executable).parent / "egox"
ROW_KEYS = {"name", "seed", "magnification", "angle_deg", "obliqueness_deg", "texture",
            "period_m", "covisible_fraction", "psnr_gt_db", "ssim_gt", "psnr_fused_db",
            "ssim_fused", "reference_psnr_gt_db", "reference_ssim_gt",
            "reference_psnr_fused_db", "reference_ssim_fused", "above_reference_db", "met",
            "fused_scale_error_pct", "psnr_fused_plane_db", "reference_psnr_fused_plane_db",
            "fused_plane_scale_error_pct"}


def test_the_family_varies_every_parameter_at_two_seeds():
    assert {s.seed for s in EVAL_SCENES} == {0, 1}
    for field, low, high in (("magnification", 0.5, 3.0), ("angle_deg", 30.0, 150.0)):
        values = {getattr(s, field) for s in EVAL_SCENES}
        assert min(values) == low and max(values) == high and len(values) >= 5
    assert max(s.obliqueness_deg for s in EVAL_SCENES) >= 80.0
    assert {s.texture for s in EVAL_SCENES} == {"checker", "stripes"}
    assert len({s.period_m for s in EVAL_SCENES}) >= 3


def test_magnification_is_the_ratio_of_image_scales():
    spec = next(s for s in EVAL_SCENES if s.magnification == 3.0)
    scene = render_eval_scene(spec, num_frames=1, exo_size=(48, 84), ego_size=(48, 48))
    exo_distance = np.linalg.norm(scene.exo_c2w[0, :3, 3] - [0.0, 0.0, 0.12])
    ego_distance = np.linalg.norm(scene.ego_c2w[0, :3, 3] - [0.0, 0.0, 0.12])
    ratio = (scene.ego_K.fx / ego_distance) / (scene.exo_K.fx / exo_distance)
    assert abs(ratio - 3.0) < 0.01
    assert scene.ego_covisible.any() and not scene.ego_covisible.all()


def test_reference_splat_is_a_5_pixel_square_with_a_depth_band():
    # One exo pixel 1 m in front: a 5x5 block; a second one 1 % farther on the same pixel
    # is averaged in, a third 5 % farther is not.
    K = Intrinsics(20.0, 20.0, 4.5, 4.5, 10, 10)
    depth = np.zeros((10, 10), np.float32)
    rgb = np.zeros((10, 10, 3), np.uint8)
    depth[4, 4], rgb[4, 4] = 1.0, 200
    depth[4, 5], rgb[4, 5] = 1.01, 100               # lands one ego pixel to the right
    c2w = np.eye(4)
    out = reference_splat(rgb, depth, K, c2w, K, c2w[None])[0]
    assert (out[2:7, 2:7] > 0).all() and (out[2:7, 2:8].sum(-1) > 0).sum() == 30
    assert (out[4, 4] == 150).all() and (out[4, 2] == 200).all() and (out[4, 7] == 100).all()
    depth[4, 5] = 1.05
    out = reference_splat(rgb, depth, K, c2w, K, c2w[None])[0]
    assert (out[4, 4] == 200).all() and (out[4, 7] == 100).all()


def test_eval_prior_command_runs_end_to_end_at_a_tiny_size():
    run = subprocess.run([str(EGOX), "eval", "prior", "--json", "--frames", "1", "--size",
                          "48", "--seeds", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "reference" in run.stdout and "targets" in run.stdout
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["scenes"]) == len([s for s in EVAL_SCENES if s.seed == 0])
    for row in result["scenes"]:
        assert ROW_KEYS <= set(row)
        assert set(row["met"]) == {"gt_db", "fused_db", "fused_plane_db", "above_reference_db"}
        scores = [k for k in ROW_KEYS if k.startswith(("psnr", "ssim", "reference"))]
        assert all(np.isfinite(row[k]) for k in scores)
        margin = row["psnr_gt_db"] - row["reference_psnr_gt_db"]
        assert row["above_reference_db"] == round(margin, 3)
    assert result["all_met"] == all(all(r["met"].values()) for r in result["scenes"])
