"""The paired-clip format: synthetic clips written and read back (exact cameras, depth and
masks; videos within H.264 loss), splits, and the errors."""
import json

import numpy as np
import pytest

from egox_model.data import (PairedClip, clip_dirs, read_paired_clip, read_splits,
                             write_paired_clip, write_splits)
from egox_model.data.synthetic import synthetic_paired_clip, write_synthetic_dataset
from egox_model.errors import InputError
from egox_model.scene import SceneConfig

SMALL = SceneConfig(num_frames=5, exo_size=(32, 48), ego_size=(32, 32))


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_synthetic_round_trip(tmp_path):
    paired = synthetic_paired_clip(SceneConfig(**{**SMALL.__dict__, "seed": 3}))
    write_paired_clip(tmp_path / "c", paired)
    back = read_paired_clip(tmp_path / "c")
    a, b = paired.clip, back.clip
    assert back.name == "synthetic_00003" and back.source == {"kind": "synthetic", "seed": 3}
    assert b.exo_K == a.exo_K and b.ego_K == a.ego_K and b.prompt == a.prompt
    np.testing.assert_array_equal(b.exo_c2w, a.exo_c2w)
    np.testing.assert_array_equal(b.ego_c2w, a.ego_c2w)
    np.testing.assert_array_equal(b.stamps_ns, a.stamps_ns)
    np.testing.assert_array_equal(b.exo_depth_m, a.exo_depth_m)
    np.testing.assert_array_equal(b.dynamic_mask, a.dynamic_mask)
    np.testing.assert_array_equal(back.ego_objects, paired.ego_objects)
    assert back.ego_objects.any() and back.prior_rgb is None
    assert b.exo_rgb.shape == a.exo_rgb.shape and back.ego_rgb.shape == paired.ego_rgb.shape
    assert _psnr(b.exo_rgb, a.exo_rgb) > 30 and _psnr(back.ego_rgb, paired.ego_rgb) > 30


def test_odd_sizes_and_prior(tmp_path):
    """Odd sizes survive write_video's even padding; a prior video is stored and read back."""
    config = SceneConfig(num_frames=2, exo_size=(17, 23), ego_size=(15, 9))
    paired = synthetic_paired_clip(config)
    paired.prior_rgb = paired.ego_rgb[:, ::-1].copy()
    write_paired_clip(tmp_path / "c", paired)
    back = read_paired_clip(tmp_path / "c")
    assert back.clip.exo_rgb.shape == (2, 17, 23, 3) and back.ego_rgb.shape == (2, 15, 9, 3)
    assert _psnr(back.prior_rgb, paired.prior_rgb) > 25


def test_dataset_splits(tmp_path):
    splits = write_synthetic_dataset(tmp_path, [1, 2], val_seeds=[7], config=SMALL)
    assert splits == {"train": ["synthetic_00001", "synthetic_00002"],
                      "val": ["synthetic_00007"]}
    assert read_splits(tmp_path) == splits
    assert [p.name for p in clip_dirs(tmp_path, "val")] == ["synthetic_00007"]
    (tmp_path / "splits.json").unlink()
    assert read_splits(tmp_path)["train"] == ["synthetic_00001", "synthetic_00002",
                                              "synthetic_00007"]
    with pytest.raises(InputError, match="no split 'test'"):
        clip_dirs(tmp_path, "test")
    with pytest.raises(InputError, match="missing under"):
        write_splits(tmp_path, {"train": ["nope"]})


def test_errors(tmp_path):
    paired = synthetic_paired_clip(SMALL)
    with pytest.raises(InputError, match="ego_rgb must have shape 5x32x32x3"):
        PairedClip("x", paired.clip, paired.ego_rgb[:, :16])
    with pytest.raises(InputError, match="clip name"):
        PairedClip("a b", paired.clip, paired.ego_rgb)
    write_paired_clip(tmp_path / "c", paired)
    with pytest.raises(InputError, match="already exists"):
        write_paired_clip(tmp_path / "c", paired)
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    (tmp_path / "c" / "meta.json").write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(InputError, match="version 9"):
        read_paired_clip(tmp_path / "c")
    with pytest.raises(InputError, match="no meta.json"):
        read_paired_clip(tmp_path)


def test_cli_data_synthetic(tmp_path):
    """`egox data synthetic`: one JSON line; the clips and splits it names exist."""
    from typer.testing import CliRunner

    from egox_ros.cli import app

    run = CliRunner().invoke(app, ["data", "synthetic", "--out", str(tmp_path), "--seeds", "1",
                                   "--val-seeds", "1", "--frames", "2", "--exo-size", "16x32",
                                   "--ego-size", "16x16"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary == {"root": str(tmp_path), "train": 1, "val": 1}
    assert read_splits(tmp_path) == {"train": ["synthetic_00000"], "val": ["synthetic_00001"]}
    assert read_paired_clip(tmp_path / "clips" / "synthetic_00001").clip.exo_rgb.shape == \
        (2, 16, 32, 3)
