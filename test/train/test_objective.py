"""The training objective: the transformer input layout and the loss against a direct
computation; GGA gradients of the training kernels against the dense-bias reference."""
from dataclasses import replace

import pytest
import torch

from egox_model.generator.gga import GGAAttnProcessor, GGAConfig
from egox_model.generator.wan.conditioning import condition_mask
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.generator.wan.text_cache import TEXT_LENGTH
from egox_model.train.objective import draw_step, flow_matching_loss
from egox_model.train.preprocess import ClipLatents


def _latents(seed=0, T=2, h=2, wx=3, we=2):
    g = torch.Generator().manual_seed(seed)
    return ClipLatents("c", *(torch.randn(16, T, h, w, generator=g) for w in (wx, we, we)),
                       prompt_embeds=torch.randn(4, 24, generator=g),
                       image_embeds=torch.randn(7, 20, generator=g), geometry=None)


class _Recorder(torch.nn.Module):
    """Records its inputs; predicts `pred`."""

    def __init__(self, pred):
        super().__init__()
        self.pred, self.seen = pred, {}

    def forward(self, **kwargs):
        self.seen = kwargs
        return (self.pred,)


@pytest.mark.parametrize("layout", ["official", "exo"])
def test_input_layout_and_loss(layout):
    lat, sigma = _latents(), 0.3
    noise = torch.randn(lat.ego_latents.shape, generator=torch.Generator().manual_seed(5))
    pred = torch.randn(1, 16, 2, 2, 5, generator=torch.Generator().manual_seed(6))
    model = _Recorder(pred)
    loss = flow_matching_loss(model, lat, sigma, noise, mask_layout=layout,
                              device=torch.device("cpu"), dtype=torch.float64)
    x = model.seen["hidden_states"][0]
    assert x.dtype == torch.float64 and x.shape == (36, 2, 2, 5)
    torch.testing.assert_close(x[:16, ..., :3], lat.exo_latents.double())         # clean exo
    z_t = (1 - sigma) * lat.ego_latents + sigma * noise
    torch.testing.assert_close(x[:16, ..., 3:], z_t.double())
    torch.testing.assert_close(x[16:20], condition_mask(5, 2, 3, 2, layout)[0].double())
    torch.testing.assert_close(x[20:, ..., :3], lat.exo_latents.double())
    torch.testing.assert_close(x[20:, ..., 3:], lat.prior_latents.double())
    assert model.seen["timestep"].item() == pytest.approx(300.0)
    text = model.seen["encoder_hidden_states"][0]
    assert text.shape == (TEXT_LENGTH, 24) and not text[4:].any()
    torch.testing.assert_close(text[:4], lat.prompt_embeds.double())
    want = ((pred[0, ..., 3:] - (noise - lat.ego_latents)) ** 2).mean()  # exo columns ignored
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_draws_depend_on_seed_step_process_only():
    sigmas = torch.linspace(1, 0.001, 1000)
    a = draw_step(3, 7, 0, 4, sigmas, lambda i: (2, 3))
    b = draw_step(3, 7, 0, 4, sigmas, lambda i: (2, 3))
    assert (a.clip_index, a.sigma) == (b.clip_index, b.sigma) and torch.equal(a.noise, b.noise)
    others = [draw_step(*args, 4, sigmas, lambda i: (2, 3)) for args in
              ((3, 8, 0), (4, 7, 0), (3, 7, 1))]
    assert all(not torch.equal(o.noise, a.noise) for o in others)


def test_gga_training_kernels_gradients(setup):
    """LoRA gradients through GGA (strength 3, tiny model, real clip geometry): 'chunked',
    the training default, equals 'dense' (the N x N reference)."""
    from egox_model.train.smoke import smoke_config
    from egox_model.train.trainer import _lora_model, preprocess_split

    root, model_dir, data = setup
    config = replace(smoke_config(model_dir, data), gga_strength=3.0)
    config = replace(config, data=replace(config.data, cache_dir=str(root / "cache_gga")))
    clip = preprocess_split(config, torch.device("cpu"))[0][0]
    torch.manual_seed(0)
    model, _ = _lora_model(config, model_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    noise = torch.randn(clip.ego_latents.shape, generator=torch.Generator().manual_seed(1))
    grads = {}
    for kernel in ("dense", "chunked"):
        processor = GGAAttnProcessor(GGAConfig(strength=3.0, kernel=kernel))
        install_attn1_processor(model, processor)
        processor.set_geometry(clip.geometry)
        model.zero_grad()
        flow_matching_loss(model, clip, 0.7, noise, mask_layout="official",
                           device=torch.device("cpu"), dtype=torch.float32).backward()
        grads[kernel] = torch.cat([p.grad.flatten() for p in model.parameters()
                                   if p.requires_grad])
    ref = grads["dense"]
    assert ref.norm() > 0 and (grads["chunked"] - ref).norm() <= 1e-5 * ref.norm()
