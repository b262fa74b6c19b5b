"""`egox eval split` end to end on a tiny synthetic split: the prior backend generating, and
prediction folders read back, with tiny random LPIPS / CLIP / TorchScript-I3D backbones saved
to disk and loaded through the user's flags."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
from typer.testing import CliRunner

from egox_model.cli import app
from egox_model.config import from_flat
from egox_model.data import PairedClip, read_paired_clip, write_paired_clip, write_splits
from egox_model.data.synthetic import synthetic_paired_clip
from egox_model.errors import ConfigError, InputError
from egox_model.eval.fvd import fvd, load_video_features
from egox_model.eval.lpips import LPIPS
from egox_model.eval.metrics import psnr, ssim
from egox_model.eval.runner import ABLATIONS, first_frames, read_prediction
from egox_model.generator import GeneratorConfig, make_generator
from egox_model.generator.gga import GGAConfig
from egox_model.generator.wan.backend import WanGenerator
from egox_model.generator.wan.config import WanConfig
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip
from egox_model.geometry.render import RenderConfig
from egox_model.prior import PriorConfig
from egox_model.scene import SceneConfig
from egox_model.video import read_video, write_video

SEEDS = (3, 4)


class TinyI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature, (N, 6) features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, (2, 16, 16), stride=(1, 16, 16))
        self.fc = torch.nn.Linear(8, 6)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dataset root with split 'test' of 2 synthetic clips (also as read back), and the
    backbone files."""
    root = tmp_path_factory.mktemp("data")
    names = []
    for seed in SEEDS:
        paired = synthetic_paired_clip(SceneConfig(seed=seed, num_frames=6, exo_size=(40, 64),
                                                   ego_size=(48, 48)))
        write_paired_clip(root / "clips" / paired.name, paired)
        names.append(paired.name)
    write_splits(root, {"test": names})
    models = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    lpips = LPIPS("alex")
    torch.save({f"features.{k}": v for k, v in lpips.features.state_dict().items()},
               models / "alexnet-owt-7be5be79.pth")
    torch.save({f"lin{i}.model.1.weight": lin.model[1].weight.detach().abs()
                for i, lin in enumerate(lpips.lins)}, models / "alex.pth")
    clip_dir = models / "clip"
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16)).save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(clip_dir)
    torch.jit.script(TinyI3D().eval()).save(str(models / "i3d_torchscript.pt"))
    flags = ["--lpips-dir", str(models), "--clip-model", str(clip_dir),
             "--i3d", str(models / "i3d_torchscript.pt"), "--fvd-window", "3"]
    truth = {name: read_paired_clip(root / "clips" / name) for name in names}
    return root, truth, flags


def _invoke(args):
    result = CliRunner().invoke(app, ["eval", "split", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_prior_backend_rows_per_clip_values_and_stated_ablations(setup, tmp_path):
    root, truth, flags = setup
    names = list(truth)
    result = _invoke([root, "--split", "test", "--out", tmp_path, *flags,
                      "--ablations", "no_gga,noisy_exo", "--prior.render.max_splat_level", "2"])
    table = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["full", "no_gga", "noisy_exo"]
    full, no_gga, noisy = table["rows"]
    assert list(full["clips"]) == names
    # per-clip PSNR / SSIM equal those of the prior backend run here with the same setting
    generator = make_generator(GeneratorConfig(prior=PriorConfig(
        render=RenderConfig(max_splat_level=2))))
    for name in names:
        paired = truth[name]
        ego = generator.generate(paired.clip).ego_rgb
        assert full["clips"][name]["psnr"] == pytest.approx(psnr(ego, paired.ego_rgb))
        assert full["clips"][name]["ssim"] == pytest.approx(ssim(ego, paired.ego_rgb))
        assert (tmp_path / "videos" / "full" / name / "ego.mp4").is_file()
    assert full["metrics"]["psnr"] == pytest.approx(
        np.mean([c["psnr"] for c in full["clips"].values()]))
    assert 10 < full["metrics"]["psnr"] < 40 and 0 < full["metrics"]["ssim"] < 1
    assert full["metrics"]["fvd"] > 0 and full["metrics"]["lpips"] > 0
    assert -1 <= full["metrics"]["clip_i"] < 1
    assert "iou" not in full["metrics"]                # generated videos carry no object ids
    assert any("IoU / Loc.Err not computed for 2 clip(s)" in n for n in full["notes"])
    for row in (no_gga, noisy):
        assert row["metrics"] == {} and row["clips"] == {}
        assert "not applicable: backend 'prior'" in row["notes"][0]
    assert no_gga["settings"] == {"wan.gga.strength": 0.0}
    markdown = (tmp_path / "results.md").read_text()
    assert "| Config | PSNR↑ | SSIM↑ | LPIPS↓ | CLIP-I↑ | Loc.Err↓ | IoU↑ | FVD↓ |" in markdown
    assert "| w/o GGA | — | — | — | — | — | — | — |" in markdown
    assert table["notes"] == []                      # every backbone was given
    assert f"| {names[0]} |" in markdown and "## Per clip: prior backend" in markdown
    assert markdown in result.output


def _predictions(root, truth, out, shift_px: int):
    """A predictions folder: the ground truth's own ego.mp4 (shift 0) or its frames rolled
    sideways by shift_px, with the ground truth's object ids rolled the same way."""
    for name, paired in truth.items():
        (out / name).mkdir(parents=True)
        if shift_px == 0:
            shutil.copy(root / "clips" / name / "ego.mp4", out / name / "ego.mp4")
        else:
            write_video(out / name / "ego.mp4", np.roll(paired.ego_rgb, shift_px, axis=2),
                        paired.clip.fps)
        np.savez(out / name / "masks.npz",
                 ego_objects=np.roll(paired.ego_objects, shift_px, axis=2))
    return out


def test_prediction_folders_identical_and_shifted(setup, tmp_path):
    root, truth, flags = setup
    names = list(truth)
    same = _predictions(root, truth, tmp_path / "same", 0)
    shifted = _predictions(root, truth, tmp_path / "shifted", 1)
    _invoke([root, "--out", tmp_path / "out", *flags, "--predictions", same,
             "--predictions", shifted])
    table = json.loads((tmp_path / "out" / "results.json").read_text())
    ident, moved = (r["metrics"] for r in table["rows"])
    assert ident["psnr"] == "inf" and ident["ssim"] == pytest.approx(1.0)
    assert ident["lpips"] == 0.0 and ident["clip_i"] == pytest.approx(1.0, abs=1e-6)
    assert ident["iou"] == 1.0 and ident["location_error_px"] == 0.0
    assert ident["fvd"] == pytest.approx(0.0, abs=1e-6)
    assert moved["psnr"] < 35 and moved["ssim"] < 0.99 and moved["lpips"] > 0
    assert 0 < moved["iou"] < 1, moved
    # the ball lies whole inside every frame of the synthetic clips: a pure 1 px shift
    assert moved["location_error_px"] == pytest.approx(1.0, abs=1e-9)
    # FVD: the Frechet distance of all windows of the split, recomputed here
    features = load_video_features(flags[flags.index("--i3d") + 1], window=3)
    pred = np.concatenate([features(read_video(shifted / n / "ego.mp4")[0]) for n in names])
    target = np.concatenate([features(truth[n].ego_rgb) for n in names])
    assert pred.shape == (2 * len(names), 6)
    assert moved["fvd"] == pytest.approx(fvd(pred, target), rel=1e-9)
    assert table["rows"][0]["settings"] == {"predictions": str(same)}
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| same | inf | 1.000 | 0.000 | 1.000 | 0.00 | 1.000 | 0.00 |" in markdown


@pytest.mark.parametrize("args,error,message", [
    (["--ablations", "no_gga,bogus"], InputError, "unknown ablation"),
    (["--split", "nosuch"], InputError, "has no split 'nosuch'"),
    (["--predictions", "/nonexistent"], InputError, "'/nonexistent' does not exist"),
    (["--predictions", "/tmp", "--wan.seed", "3"], ConfigError, "do nothing when scoring"),
])
def test_user_errors_name_the_flag(setup, tmp_path, args, error, message):
    root, _, _ = setup
    result = CliRunner().invoke(app, ["eval", "split", str(root), "--out", str(tmp_path),
                                      *args])
    assert isinstance(result.exception, error) and message in str(result.exception)


def test_a_missing_backbone_is_one_line_and_exit_2(setup, tmp_path):
    root, _, _ = setup
    proc = subprocess.run([sys.executable, "-c", "from egox_model.cli import main; main()",
                           "eval", "split", str(root), "--out", str(tmp_path),
                           "--lpips-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "missing: alexnet*.pth, alex.pth" in proc.stderr


def test_wan_ablation_rows_use_the_generator_switches(tmp_path):
    """Backend 'wan' (tiny random weights): each ablation row is the generator with its
    switch set; the no_gga row equals a generator built here with GGA strength 0."""
    model_dir = save_tiny_model_dir(tmp_path / "wan")
    clip = tiny_clip()
    ego = np.random.default_rng(0).integers(0, 256, (clip.num_frames, 32, 32, 3), np.uint8)
    write_paired_clip(tmp_path / "data" / "clips" / "tiny", PairedClip("tiny", clip, ego))
    write_splits(tmp_path / "data", {"test": ["tiny"]})
    wan = {"dtype": "float32", "device": "cpu", "num_inference_steps": 2, "progress": False}
    _invoke([tmp_path / "data", "--out", tmp_path / "out", "--backend", "wan",
             "--wan.model_dir", model_dir, *[a for k, v in wan.items()
                                             for a in (f"--wan.{k}", str(v).lower())],
             "--ablations", "no_gga,no_prior"])
    table = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = table["rows"]
    assert [" ".join(n.split()[:3]) for n in table["notes"]] == [
        "LPIPS not computed:", "CLIP-I not computed:", "FVD not computed:"]
    assert [r["label"] for r in rows] == ["EgoX (wan)", "w/o GGA", "w/o ego prior"]
    psnrs = [r["clips"]["tiny"]["psnr"] for r in rows]
    assert len(set(psnrs)) == 3 and all(np.isfinite(psnrs))
    paired = read_paired_clip(tmp_path / "data" / "clips" / "tiny")
    no_gga = WanGenerator(WanConfig(model_dir=str(model_dir), gga=GGAConfig(strength=0.0),
                                    **wan)).generate(paired.clip).ego_rgb
    assert psnrs[1] == pytest.approx(psnr(no_gga, paired.ego_rgb), abs=1e-9)
    assert rows[2]["settings"] == {"wan.conditioning.zero_prior": True}
    for _, overrides in ABLATIONS.values():          # every switch is a real setting
        config = from_flat(GeneratorConfig, overrides)
        assert config != GeneratorConfig()


def test_first_frames_cuts_every_per_frame_field():
    clip = tiny_clip(frames=5)
    ego = np.zeros((5, 32, 32, 3), np.uint8)
    objects = np.arange(5, dtype=np.uint16)[:, None, None] * np.ones((1, 32, 32), np.uint16)
    cut = first_frames(PairedClip("c", clip, ego, prior_rgb=ego, ego_objects=objects), 3)
    assert cut.clip.num_frames == 3 and cut.ego_rgb.shape[0] == cut.prior_rgb.shape[0] == 3
    for field in ("exo_c2w", "ego_c2w", "stamps_ns", "exo_depth_m", "dynamic_mask"):
        np.testing.assert_array_equal(getattr(cut.clip, field), getattr(clip, field)[:3])
    assert cut.ego_objects[:, 0, 0].tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="has 5 frames, fewer than --frames 6"):
        first_frames(PairedClip("c", clip, ego), 6)


def test_a_prediction_of_another_size_is_refused(tmp_path):
    clip = tiny_clip(frames=5)
    paired = PairedClip("c", clip, np.zeros((5, 32, 32, 3), np.uint8))
    (tmp_path / "c").mkdir()
    write_video(tmp_path / "c" / "ego.mp4", np.zeros((5, 32, 48, 3), np.uint8), 30.0)
    with pytest.raises(InputError, match=r"is 5 frames of 48x32; the ground truth of clip c "
                                         r"is 5 frames of 32x32"):
        read_prediction(tmp_path, paired)
    with pytest.raises(InputError, match="does not exist"):
        read_prediction(tmp_path / "none", paired)
    odd = PairedClip("odd", tiny_clip(frames=5, ego_hw=(31, 29)),
                     np.zeros((5, 31, 29, 3), np.uint8))
    (tmp_path / "odd").mkdir()                # write_video pads to 32x30; read back: 31x29
    write_video(tmp_path / "odd" / "ego.mp4", np.full((5, 31, 29, 3), 200, np.uint8), 30.0)
    assert read_prediction(tmp_path, odd).ego_rgb.shape == (5, 31, 29, 3)
