"""`egox bench perception`: every stage timed in one run beside the prior stage."""
import json

from egox_model.bench.perception import (PerceptionBenchConfig, format_perception_bench,
                                         run_perception_bench)


def test_bench_times_random_tiny_models_and_the_prior():
    result = run_perception_bench(PerceptionBenchConfig(frames=2, exo_size=(64, 112)))
    stages = [row["stage"] for row in result["rows"]]
    assert stages[:3] == ["depth: tiny-depth-pro", "depth: tiny-da-metric",
                          "depth: tiny-da-relative"]
    assert any("moving camera (compensated" in s for s in stages)
    assert any(s.startswith("masks: tiny-sam3-video") for s in stages)
    assert all(row["ms_per_frame"] > 0 for row in result["rows"])
    assert set(result["prior_stages_ms_per_frame"]) >= {"fusion", "lift", "render"}
    assert result["rows"][0]["kind"] == "metric" and result["rows"][2]["kind"] == \
        "inverse_relative"
    text = format_perception_bench(result)
    assert "prior (fusion + lift + render)" in text and "apple-amlr" in text


def test_bench_command_times_the_configured_directory(tiny_models):
    from typer.testing import CliRunner

    from egox_model.cli import app

    result = CliRunner().invoke(app, ["bench", "perception", "--json", "--frames", "2",
                                      "--perception.depth_model",
                                      str(tiny_models["da_metric"])])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["exo_size"] == [448, 784] and data["frames"] == 2
    assert data["rows"][0]["stage"].startswith("depth: depth_model ")
    assert data["rows"][0]["input"] == "28x56"
    assert data["prior_ms_per_frame"] > 0
