"""Depth backends: tiny random-weight models saved and loaded back through the user's path
(PerceptionConfig -> Perception.from_config); shapes, dtypes, ranges, errors, licences."""
import json
import shutil

import numpy as np
import pytest

from egox_model.errors import ConfigError, ModelLoadError
from egox_model.geometry.camera import Intrinsics
from egox_model.perception import PerceptionConfig
from egox_model.perception.depth import load_depth_estimator
from egox_model.perception.model_dir import licence_of
from egox_model.perception.perceive import Perception


def _frames(num, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (num, height, width, 3), dtype=np.uint8)


def _K(height, width):
    f = 0.6 * width
    return Intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height)


@pytest.mark.parametrize("num,height,width,batch",
                         [(3, 24, 40, 2), (1, 17, 9, 8), (5, 30, 30, 4)])
def test_perception_loads_the_users_directories(tiny_models, num, height, width, batch):
    config = PerceptionConfig(depth_model=str(tiny_models["depth_pro"]),
                              video_depth_model=str(tiny_models["da_relative"]),
                              device="auto", batch_size=batch)
    perception = Perception.from_config(config)
    frames, K = _frames(num, height, width), _K(height, width)
    metric = perception.depth.estimate(frames, K)
    relative = perception.video_depth.estimate(frames, K)
    for pred, kind in ((metric, "metric"), (relative, "inverse_relative")):
        assert pred.kind == kind
        assert pred.values.shape == (num, height, width) and pred.values.dtype == np.float32
        assert np.isfinite(pred.values).all() and (pred.values >= 0).all()
    assert (metric.values > 0).any()
    # Depth Pro: metric depth = f_x / (W c) with the camera's f_x: halving f halves depth.
    half = Intrinsics(K.fx / 2, K.fy / 2, K.cx, K.cy, width, height)
    halved = perception.depth.estimate(frames, half).values
    valid = metric.values > 0
    np.testing.assert_allclose(halved[valid], metric.values[valid] / 2, rtol=1e-5)
    assert perception.info()["depth_model"]["licence"].startswith("apple-amlr")
    assert perception.info()["video_depth"]["source"] == "video_depth_model"


def test_batching_does_not_change_the_result(tiny_models):
    frames, K = _frames(5, 20, 34), _K(20, 34)
    one = load_depth_estimator(tiny_models["da_metric"], "x", batch_size=1).estimate(frames, K)
    all_ = load_depth_estimator(tiny_models["da_metric"], "x", batch_size=5).estimate(frames, K)
    np.testing.assert_allclose(one.values, all_.values, rtol=1e-4, atol=1e-6)
    assert one.kind == "metric"
    assert (one.values >= 0).all() and (one.values <= 20.0 + 1e-4).all()   # sigmoid * max_depth


def test_depth_anything_input_size_follows_its_processor(tiny_models):
    est = load_depth_estimator(tiny_models["da_relative"], "x")
    assert est.input_size(448, 784) == (28, 56)     # short side 28, 49 -> a multiple of 14
    assert est.input_size(784, 448) == (56, 28)
    pro = load_depth_estimator(tiny_models["depth_pro"], "x")
    assert pro.input_size(448, 784) == (32, 32)     # patch_size / smallest ratio


def test_relative_model_is_refused_as_metric_depth(tiny_models):
    with pytest.raises(ModelLoadError, match="relative-depth model.*video_depth_model"):
        Perception.from_config(PerceptionConfig(depth_model=str(tiny_models["da_relative"])))


@pytest.mark.parametrize("remove,match", [
    ("preprocessor_config.json", "lacks preprocessor_config.json"),
    ("model.safetensors", r"lacks weights \(model.safetensors"),
    ("config.json", "lacks config.json"),
])
def test_incomplete_directories_name_the_file(tiny_models, tmp_path, remove, match):
    broken = tmp_path / "model"
    shutil.copytree(tiny_models["da_metric"], broken)
    (broken / remove).unlink()
    with pytest.raises(ModelLoadError, match=f"perception.depth_model=.*{match}"):
        Perception.from_config(PerceptionConfig(depth_model=str(broken)))


def test_wrong_or_missing_directories(tiny_models, tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory.*nothing is downloaded"):
        Perception.from_config(PerceptionConfig(video_depth_model=str(tmp_path / "none")))
    other = tmp_path / "other"
    shutil.copytree(tiny_models["da_metric"], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "dpt"}))
    with pytest.raises(ModelLoadError, match="model_type 'dpt', expected 'depth_anything'"):
        Perception.from_config(PerceptionConfig(depth_model=str(other)))


def test_config_checks():
    with pytest.raises(ConfigError, match="perception.device|device"):
        PerceptionConfig(device="gpu")
    with pytest.raises(ConfigError, match="mask_phrases"):
        PerceptionConfig(mask_phrases=["person", " "])
    assert not PerceptionConfig().enabled
    assert list(PerceptionConfig().mask_phrases) == ["person", "robot", "arm", "hand"]


@pytest.mark.parametrize("width,licence", [(384, "apache-2.0"), (768, "cc-by-nc-4.0"),
                                           (1024, "cc-by-nc-4.0"), (16, "unknown")])
def test_licence_by_backbone_width(tmp_path, width, licence):
    config = {"model_type": "depth_anything", "backbone_config": {"hidden_size": width}}
    assert licence_of(tmp_path, config).startswith(licence)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n")
    assert licence_of(tmp_path, config) == "mit (model card)"
