"""`egox demo` through ROS 2 on a small scene, and the conversion benchmark's bookkeeping."""
import json

from ros_fixtures import wait_until  # noqa: F401,I100 (sets the ROS isolation env first)

from egox_model.config import from_flat
from egox_model.generator import GeneratorConfig
from egox_model.generator.wan.tiny import save_tiny_model_dir
from egox_model.scene import SceneConfig
from egox_ros.bench import bench_conversion
from egox_ros.ros_demo import run_demo_with_ros


def test_demo_goes_through_ros(tmp_path):
    config = SceneConfig(seed=3, num_frames=9, exo_size=(96, 160), ego_size=(64, 64))
    report = run_demo_with_ros(tmp_path, seed=3, scene_config=config)
    assert report["ego_messages"] == 9
    assert report["stamps_match"] is True
    assert report["latency_ms"] > 0
    # The ROS path and the file path run the same generator on the same inputs.
    assert report["ros_vs_file_max_abs_diff"] == 0
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["ego_messages"] == 9 and "prior_psnr_covered_db" in on_disk
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
    for name in ("exo.mp4", "prior.mp4", "ego.mp4", "preview.png"):
        assert (tmp_path / name).is_file()


def test_demo_with_the_wan_backend(tmp_path):
    """`egox demo --backend wan --wan.model_dir DIR --wan.num_inference_steps 4`, with the
    tiny random-weight model saved and loaded back; sizes are multiples of 16 and 4k+1
    frames, as Wan needs."""
    model_dir = save_tiny_model_dir(tmp_path / "model")
    scene = SceneConfig(seed=2, num_frames=5, exo_size=(64, 112), ego_size=(64, 64))
    config = from_flat(GeneratorConfig, {"backend": "wan", "wan.model_dir": str(model_dir),
                                         "wan.num_inference_steps": 4, "wan.seed": 7})
    report = run_demo_with_ros(tmp_path / "out", seed=2, config=config, scene_config=scene)
    assert report["backend"] == "wan" and report["frames"] == 5
    assert report["ego_messages"] == 5 and report["stamps_match"] is True
    assert report["ros_vs_file_max_abs_diff"] == 0  # same seed, same inputs
    assert report["diagnostics"]["steps"] == 4 and report["diagnostics"]["seed"] == 7
    assert report["ros"]["node"]["clips_published"] == 1


def test_conversion_benchmark_reports_both_sides():
    result = bench_conversion(height=48, width=64)
    for key in ("rgb8_owned_MBps", "rgb8_view_MBps", "naive_per_pixel_MBps",
                "np_array_baseline_MBps", "bgr8_to_rgb_MBps", "16UC1_to_metres_MBps"):
        assert result[key] > 0
    assert result["speedup_vs_naive"] > 10


def test_burst_benchmark_counts_every_clip_and_reports_rss_beside_its_baseline():
    from egox_ros.bench_burst import bench_burst, format_burst

    result = bench_burst(clips=3, frames=5, queue_size=1, depth=100)
    assert result["frames_in"] == 15 and result["clips_complete"] == 3
    assert result["clips_published"] + result["drops"].get("queue_overflow", 0) == 3
    assert set(result["drops"]) <= {"queue_overflow"}
    assert 0 < result["rss_before_MB"] <= result["rss_peak_MB"]
    assert abs(result["rss_after_vs_before"]
               - result["rss_after_MB"] / result["rss_before_MB"]) < 0.02
    assert "(baseline)" in format_burst(result)
