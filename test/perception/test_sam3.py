"""The text-prompted mask backend: a tiny random-weight Sam3VideoModel saved with its
tokenizer and loaded back through `perception.mask_model` (the user's path)."""
import numpy as np
import pytest

from egox_model.errors import ModelLoadError
from egox_model.perception import PerceptionConfig
from egox_model.perception.perceive import Perception
from egox_model.perception.tiny import save_sam3_video_model


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory):
    return save_sam3_video_model(tmp_path_factory.mktemp("sam3") / "model")


def test_sam3_backend_runs_through_the_users_path(sam3_dir):
    config = PerceptionConfig(mask_model=str(sam3_dir), mask_phrases=["person"],
                              mask_dilate_px=1, device="cpu")
    perception = Perception.from_config(config)
    masks = perception.masks
    assert masks.segmenter.input_size == (56, 56)
    frames = np.random.default_rng(0).integers(0, 256, (2, 30, 52, 3), dtype=np.uint8)
    out = masks.estimate(frames, ["person"])
    assert out.shape == (2, 30, 52) and out.dtype == bool
    assert masks.last["objects"] >= 1                  # thresholds 0: it tracks something
    raw = masks.segmenter.segment(np.zeros((2, 56, 56, 3), np.uint8), ["person"])
    assert len(raw) == 2 and all(m.shape == (16, 16) for f in raw for m in f.values())
    assert perception.summary()["masks"].startswith("sam3_video [SAM licence")


def test_sam3_directory_needs_its_tokenizer(sam3_dir, tmp_path):
    import shutil

    broken = tmp_path / "sam3"
    shutil.copytree(sam3_dir, broken)
    (broken / "tokenizer_config.json").unlink()
    with pytest.raises(ModelLoadError, match="perception.mask_model=.*lacks tokenizer_config"):
        Perception.from_config(PerceptionConfig(mask_model=str(broken)))
