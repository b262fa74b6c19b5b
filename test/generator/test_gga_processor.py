"""GGAAttnProcessor inside a tiny diffusers Wan transformer."""
from __future__ import annotations

import pytest
import torch
from test_gga_reference import Case, geometry

from egox_model.errors import InputError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig

diffusers = pytest.importorskip("diffusers")

#: Token grids of the tiny model's input: the usual w_x > w_e, and w_e > w_x.
GRIDS = [Case(2, 3, 4, 2), Case(2, 1, 3, 5)]


def _tiny_wan() -> torch.nn.Module:
    from diffusers import WanTransformer3DModel
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                                 in_channels=4, out_channels=4, text_dim=24, freq_dim=32,
                                 ffn_dim=64, num_layers=2, rope_max_seq_len=64).eval()


def _wan_inputs(case: Case) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"hidden_states": torch.randn(1, 4, case.frames, 2 * case.rows, 2 * case.width,
                                         generator=g),
            "timestep": torch.tensor([500]),
            "encoder_hidden_states": torch.randn(1, 7, 24, generator=g),
            "return_dict": False}


def _install(model: torch.nn.Module, proc: GGAAttnProcessor) -> None:
    procs = model.attn_processors
    model.set_attn_processor({name: proc if ".attn1." in name else p
                              for name, p in procs.items()})


def test_processor_matches_wan_attn_processor_without_geometry() -> None:
    case = GRIDS[0]
    model, inputs = _tiny_wan(), _wan_inputs(case)
    with torch.no_grad():
        stock = model(**inputs)[0]
        proc = GGAAttnProcessor()
        _install(model, proc)
        none = model(**inputs)[0]
        proc.set_geometry(geometry(case))
        proc.config = GGAConfig(strength=0.0)
        zero = model(**inputs)[0]
    torch.testing.assert_close(none, stock, atol=0, rtol=0)
    torch.testing.assert_close(zero, stock, atol=0, rtol=0)


@pytest.mark.parametrize("case", GRIDS, ids=str)
def test_processor_gga_kernels_agree_in_model(case: Case) -> None:
    model, inputs = _tiny_wan(), _wan_inputs(case)
    outs = []
    with torch.no_grad():
        stock = model(**inputs)[0]
        for kernel in ("dense", "chunked", "split"):
            proc = GGAAttnProcessor(GGAConfig(kernel=kernel))
            proc.set_geometry(geometry(case))
            _install(model, proc)
            outs.append(model(**inputs)[0])
            outs.append(model(**inputs)[0])   # "split" reuses its cached bias
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=0)
    assert (outs[0] - stock).abs().max() > 1e-4
    attn2 = [type(p).__name__ for n, p in model.attn_processors.items() if ".attn2." in n]
    assert attn2 == ["WanAttnProcessor"] * 2


def test_cached_split_bias_follows_the_config() -> None:
    """Assigning `config` after a call must not reuse the bias table built for the old one."""
    case = GRIDS[0]
    model, inputs = _tiny_wan(), _wan_inputs(case)

    def run(proc: GGAAttnProcessor) -> torch.Tensor:
        _install(model, proc)
        with torch.no_grad():
            return model(**inputs)[0]

    reused = GGAAttnProcessor(GGAConfig(strength=3.0))
    reused.set_geometry(geometry(case))
    run(reused)
    for config in (GGAConfig(strength=1.0), GGAConfig(form="power")):
        reused.config = config
        fresh = GGAAttnProcessor(config)
        fresh.set_geometry(geometry(case))
        torch.testing.assert_close(run(reused), run(fresh), atol=0, rtol=0)


def test_processor_rejects_cross_attention_and_masks_with_gga() -> None:
    case = GRIDS[0]
    model = _tiny_wan()
    attn = model.blocks[0].attn1
    hidden = torch.randn(1, case.num_tokens, 32)
    proc = GGAAttnProcessor()
    with pytest.raises(InputError, match="encoder_hidden_states"):
        proc(attn, hidden, encoder_hidden_states=hidden)
    proc.set_geometry(geometry(case))
    with pytest.raises(InputError, match="attention_mask"):
        proc(attn, hidden, attention_mask=torch.ones(1, case.num_tokens, dtype=torch.bool))
