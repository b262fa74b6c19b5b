"""`egox demo --depth estimate`: the demo's clip as a plain RGB camera's, its depth estimated
by the configured (here tiny random-weight) model, the error against the truth reported."""
import json

from egox_model.config import from_flat
from egox_model.demo import run_demo
from egox_model.generator import GeneratorConfig
from egox_model.scene import SceneConfig


def test_demo_with_estimated_depth(tmp_path, tiny_models):
    config = from_flat(GeneratorConfig, {"perception.depth_model":
                                         str(tiny_models["depth_pro"])})
    scene = SceneConfig(seed=2, num_frames=5, exo_size=(64, 112), ego_size=(48, 48))
    result = run_demo(tmp_path, scene_config=scene, generator=config, depth="estimate")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["depth"] == "estimate" and "fusion_alpha_rel_err" not in report
    assert report["diagnostics"]["perception"]["depth_model"]["model_type"] == "depth_pro"
    assert report["fused_depth_abs_rel_median"] > 0           # random weights: just reported
    assert 0.0 <= report["dynamic_mask_iou"] <= 1.0
    assert result.clip.exo_depth_m is None and result.clip.dynamic_mask is None


def test_demo_cli_depth_estimate_needs_a_model(tmp_path):
    from typer.testing import CliRunner

    from egox_ros.cli import app

    result = CliRunner().invoke(app, ["demo", "--depth", "estimate", "--no-ros", "--out",
                                      str(tmp_path / "demo")])
    assert result.exit_code != 0
    assert "perception.depth_model=''" in str(result.exception)
