"""The file demo (no ROS): outputs, report keys and sane values."""
import json

import imageio.v3 as iio

from egox_model.demo import run_demo
from egox_model.scene import SceneConfig

REPORT_KEYS = {"prior_psnr_covered_db", "prior_coverage", "output_psnr_db", "output_ssim",
               "fusion_alpha_rel_err", "fusion_beta_rel_err", "backend", "frames",
               "ms_per_frame"}


def test_demo_writes_videos_preview_and_report(tmp_path):
    config = SceneConfig(seed=1, num_frames=9, exo_size=(112, 196), ego_size=(112, 112))
    result = run_demo(tmp_path, scene_config=config)
    for name in ("exo.mp4", "prior.mp4", "ego.mp4", "preview.png", "report.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert iio.imread(tmp_path / "ego.mp4", plugin="pyav").shape == (9, 112, 112, 3)
    report = json.loads((tmp_path / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report == json.loads(json.dumps(result.report))
    assert report["backend"] == "prior" and report["frames"] == 9
    assert report["fusion_alpha_rel_err"] < 0.03 and report["fusion_beta_rel_err"] < 0.2
    assert report["fused_depth_abs_rel_median"] < 0.03
    assert 0.1 < report["prior_coverage"] < 1.0
    assert report["prior_psnr_covisible_db"] > 22.0
    assert report["reference_psnr_covisible_db"] > 15.0     # the splat reference, same pixels
    assert 0.0 < report["output_ssim"] <= 1.0
    assert {"fusion", "lift", "render", "hole_fill"} <= set(report["ms_per_frame"])
