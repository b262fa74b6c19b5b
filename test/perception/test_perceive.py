"""Perception in front of the backends: the same output as precomputed estimates, timings
and diagnostics, errors for missing depth; `egox generate` without --exo-depth; the node's
pipeline with depth_source 'estimate' (clips without depth, estimated by make_backend's
generator, i.e. on the worker)."""
import dataclasses
import json

import numpy as np
import pytest

from egox_model.config import from_flat
from egox_model.errors import ConfigError, InputError
from egox_model.generator import GeneratorConfig, make_generator
from egox_model.generator.prior_backend import PriorGenerator
from egox_model.perception.perceive import PerceivingGenerator, Perception, with_perception
from egox_model.prior import render_ego_prior
from egox_model.scene import SceneConfig, render_scene
from standins import MetricFromTruth, RelativeFromTruth


@pytest.fixture(scope="module")
def scene():
    return render_scene(SceneConfig(seed=4, num_frames=5, exo_size=(64, 112),
                                    ego_size=(40, 40)))


def test_perceiving_generator_equals_the_backend_on_estimated_depth(scene):
    metric, relative = MetricFromTruth(scene.exo_depth_m), RelativeFromTruth(scene.exo_depth_m)
    perception = Perception(metric, relative)
    clip = dataclasses.replace(scene.to_clip(), exo_depth_m=None)
    generator = PerceivingGenerator(PriorGenerator(), perception)
    assert generator.name == "prior"
    output = generator.generate(clip)
    filled, _ = perception.complete(clip)
    reference = PriorGenerator().generate(filled)
    np.testing.assert_array_equal(output.ego_rgb, reference.ego_rgb)
    assert {"perception_depth", "perception_video_depth", "perception_align",
            "render"} <= set(output.ms_per_frame)
    diag = output.diagnostics["perception"]
    assert "weaker choice" in diag["video_depth"]["note"]
    assert diag["depth_model"]["licence"] == "n/a"


def test_missing_depth_is_named(scene):
    clip = dataclasses.replace(scene.to_clip(), exo_depth_m=None)
    with pytest.raises(InputError, match="no exo depth.*perception.depth_model"):
        render_ego_prior(clip)
    with pytest.raises(InputError, match="perception.depth_model is not set"):
        Perception().complete(clip)
    with pytest.raises(InputError, match="or both exo_depth_mono_m"):
        dataclasses.replace(clip, exo_depth_mono_m=scene.exo_depth_m)


def test_with_perception_builds_from_the_config_tree(tiny_models):
    generator = make_generator(GeneratorConfig())
    assert with_perception(generator, GeneratorConfig()) is generator
    config = from_flat(GeneratorConfig, {"perception.depth_model": str(tiny_models["depth_pro"]),
                                         "perception.device": "cpu"})
    wrapped = with_perception(make_generator(config), config)
    assert isinstance(wrapped, PerceivingGenerator) and wrapped.name == "prior"
    assert wrapped.perception.depth.info["device"] == "cpu"
    assert wrapped.perception.depth.info["dtype"] == "float32"


def test_node_settings_depth_source_estimate(tiny_models):
    from egox_ros.node import make_backend
    from egox_ros.params import EgoxConfig

    with pytest.raises(ConfigError, match="perception.depth_model=''.*depth_source 'estimate'"):
        make_backend(EgoxConfig(depth_source="estimate"))
    config = from_flat(EgoxConfig, {"depth_source": "estimate",
                                    "perception.depth_model": str(tiny_models["depth_pro"])})
    assert isinstance(make_backend(config), PerceivingGenerator)


def _write_inputs(tmp_path, clip):
    from egox_model.clip_io import write_camera
    from egox_model.geometry.camera import CameraModel
    from egox_model.video import write_video

    write_video(tmp_path / "exo.mp4", clip.exo_rgb, fps=30.0)
    write_camera(tmp_path / "exo.json", CameraModel(clip.exo_K), clip.exo_c2w[0])
    write_camera(tmp_path / "ego.json", CameraModel(clip.ego_K), clip.ego_c2w)
    return ["generate", "--exo", str(tmp_path / "exo.mp4"), "--exo-camera",
            str(tmp_path / "exo.json"), "--ego-poses", str(tmp_path / "ego.json"),
            "--frames", "4", "--out", str(tmp_path / "out")]


def test_egox_generate_without_exo_depth(scene, tiny_models, tmp_path):
    from typer.testing import CliRunner

    from egox_model.cli import app

    args = _write_inputs(tmp_path, scene.to_clip())
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "perception.depth_model=''" in str(result.exception)
    result = CliRunner().invoke(app, args + ["--perception.depth_model",
                                             str(tiny_models["depth_pro"])])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["frames"] == 4
    perception = report["diagnostics"]["perception"]
    assert perception["depth_model"]["model_type"] == "depth_pro"
    assert perception["video_depth"]["source"] == "depth_model"
    assert "perception_depth" in report["ms_per_frame"]


def test_pipeline_with_estimated_depth_makes_clips_without_depth(tiny_models):
    from geometry_msgs.msg import PoseStamped

    from egox_model.geometry.pose import c2w_to_pose
    from egox_ros.image_conversion import numpy_to_image
    from egox_ros.messages import RclpyFactory
    from egox_ros.node import make_backend
    from egox_ros.params import EgoxConfig
    from egox_ros.pipeline import ExoPipeline

    scene = render_scene(SceneConfig(seed=2, num_frames=3, exo_size=(48, 64),
                                     ego_size=(32, 32)))
    K = scene.ego_K
    config = from_flat(EgoxConfig, {
        "depth_source": "estimate", "perception.depth_model": str(tiny_models["depth_pro"]),
        "ego_width": K.width, "ego_height": K.height, "ego_fx": K.fx, "ego_fy": K.fy,
        "ego_cx": K.cx, "ego_cy": K.cy, "exo_width": 64, "exo_height": 48, "clip_length": 3,
        "clip_stride": 3, "exo_pose_source": "topic"})
    factory, pipeline, clips = RclpyFactory(), ExoPipeline(config), []

    def pose(c2w, header):
        msg = PoseStamped(header=header)
        p, q = c2w_to_pose(c2w)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, p)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = map(float, q)
        return msg

    for i, stamp in enumerate(int(s) for s in scene.stamps_ns):
        header = factory.header(stamp, "exo")
        clips += pipeline.on_camera_info(factory.camera_info(scene.exo_K, header))
        clips += pipeline.on_exo_image(numpy_to_image(scene.exo_rgb[i], "rgb8", header))
        clips += pipeline.on_ego_pose(pose(scene.ego_c2w[i], header))
        clips += pipeline.on_exo_pose(pose(scene.exo_c2w[i], header))
    assert len(clips) == 1 and not pipeline.bad_inputs
    clip = clips[0]
    assert clip.exo_depth_m is None and clip.exo_depth_mono_m is None
    output = make_backend(config).generate(clip)
    assert output.ego_rgb.shape == (3, 32, 32, 3)
    assert output.diagnostics["perception"]["depth_model"]["model_type"] == "depth_pro"


def test_summary_for_diagnostics_names_licences_and_the_weaker_choice(tiny_models):
    config = from_flat(GeneratorConfig, {"perception.depth_model": str(tiny_models["depth_pro"]),
                                         "perception.video_depth_model":
                                             str(tiny_models["da_relative"])})
    summary = Perception.from_config(config.perception).summary()
    assert summary["depth_model"].startswith("depth_pro [apple-amlr")
    assert "unknown (Depth Anything with backbone width 16" in summary["video_depth"]
    assert "weaker choice" in summary["video_depth"]
    assert summary["masks"].startswith("motion masks")


def test_perceiving_generator_delegates_to_its_backend():
    class Remote(PriorGenerator):
        name = "remote"

        def status(self):
            return {"server": "up"}

    wrapped = PerceivingGenerator(Remote(), Perception())
    assert wrapped.name == "remote" and wrapped.status() == {"server": "up"}
    with pytest.raises(AttributeError):
        wrapped.no_such_thing
    bare = PerceivingGenerator.__new__(PerceivingGenerator)
    with pytest.raises(AttributeError):
        bare.status
