"""Loading the CLIP-I and FVD backbones from local paths: the input FVD's I3D receives, and
the messages that name what is missing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from egox_model.errors import InputError, ModelLoadError
from egox_model.eval.clip_image import load_clip_image_scorer
from egox_model.eval.fvd import load_video_features


class Probe(torch.nn.Module):
    """A TorchScript 'I3D' whose features describe its input: C, T, H, W, min, max, mean of
    each window, and the three flags it was called with."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        n = x.shape[0]
        shape = torch.tensor(x.shape[1:], dtype=x.dtype).expand(n, 4)
        flags = torch.tensor([float(rescale), float(resize), float(return_features)],
                             dtype=x.dtype).expand(n, 3)
        stats = torch.stack((x.amin((1, 2, 3, 4)), x.amax((1, 2, 3, 4)), x.mean((1, 2, 3, 4))),
                            1)
        return torch.cat((shape, stats, flags), 1)


def test_fvd_windows_resize_crop_and_call_convention(tmp_path):
    torch.jit.script(Probe()).save(str(tmp_path / "i3d_torchscript.pt"))
    features = load_video_features(tmp_path, window=3)          # a directory works too
    frames = np.zeros((7, 56, 98, 3), np.uint8)
    frames[:, :, 10:88] = 255     # shorter side 56 -> 224 (x4): the centre 224 of 392 columns
    got = features(frames)        # are source columns 21..77, all white; 7 frames: 2 windows
    np.testing.assert_allclose(got, [[3, 3, 224, 224, 1, 1, 1, 0, 0, 1]] * 2, atol=1e-6)
    frames[:, :, :] = 0
    assert features(frames)[0, 4:7].tolist() == [-1, -1, -1]      # uint8 0 -> -1
    with pytest.raises(InputError, match="shorter than the FVD window of 3"):
        features(frames[:2])


def test_fvd_names_the_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="i3d_torchscript.pt"):
        load_video_features(tmp_path)
    (tmp_path / "i3d_torchscript.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelLoadError, match="is not a TorchScript module"):
        load_video_features(tmp_path / "i3d_torchscript.pt")


def test_clip_image_scores_and_missing_files(tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory"):
        load_clip_image_scorer(tmp_path / "none")
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16))
    model.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="lacks preprocessor_config.json"):
        load_clip_image_scorer(tmp_path)
    processor = CLIPImageProcessor(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path)
    scorer = load_clip_image_scorer(tmp_path)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8) for _ in range(2))
    pixels = processor(images=list(a), return_tensors="pt")["pixel_values"]
    pixels_b = processor(images=list(b), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ea, eb = model(pixel_values=pixels).image_embeds, model(pixel_values=pixels_b).image_embeds
    expected = torch.nn.functional.cosine_similarity(ea, eb).mean()
    assert scorer.score(a, b) == pytest.approx(float(expected), abs=1e-5)
    assert scorer.score(a, a) == pytest.approx(1.0, abs=1e-6)
