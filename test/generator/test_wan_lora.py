"""LoRA on the tiny Wan transformer: save -> load round trip, official keys, fusing, errors."""
from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from egox_model.errors import ModelLoadError
from egox_model.generator.wan.lora import add_lora, fuse_lora, load_lora, save_lora
from egox_model.generator.wan.tiny import TINY_TRANSFORMER

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def base_transformer() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel(**TINY_TRANSFORMER).eval()


def forward(model) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, 36, 2, 4, 8, generator=gen)
    text = torch.randn(1, 512, 24, generator=gen)
    image = torch.randn(1, 5, 20, generator=gen)
    with torch.no_grad():
        return model(hidden, torch.tensor([500.0]), text, image, return_dict=False)[0]


def randomized_lora(rank: int = 4, alpha: float = 8.0) -> WanTransformer3DModel:
    model = base_transformer()
    add_lora(model, rank=rank, alpha=alpha)
    torch.manual_seed(2)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    return model


def test_add_lora_targets_attn1_and_attn2_projections():
    model = randomized_lora()
    wrapped = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters()
               if ".lora_A." in name}
    assert wrapped == {f"blocks.{b}.{a}.{p}" for b in range(2) for a in ("attn1", "attn2")
                       for p in PROJECTIONS}


def test_save_load_identical_outputs_and_fuse(tmp_path):
    model = randomized_lora()
    expected = forward(model)
    assert not torch.allclose(expected, forward(base_transformer()))
    path = save_lora(model, tmp_path)
    assert path.name == "pytorch_lora_weights.safetensors"

    loaded = base_transformer()
    info = load_lora(loaded, tmp_path)
    assert info == {"rank": 4, "alpha": 8.0, "modules": 16}
    torch.testing.assert_close(forward(loaded), expected, rtol=0, atol=0)
    fuse_lora(loaded)
    assert type(loaded.blocks[0].attn1.to_q) is torch.nn.Linear
    torch.testing.assert_close(forward(loaded), expected, rtol=1e-5, atol=1e-5)


def test_official_key_naming_loads_with_alpha_equal_rank(tmp_path):
    """The EgoX release's file: `transformer.blocks.N.attnX.proj.lora_A.weight`, no metadata."""
    model, rank = base_transformer(), 3
    gen = torch.Generator().manual_seed(3)
    state, deltas = {}, {}
    for block in range(2):
        for attn in ("attn1", "attn2"):
            for proj in PROJECTIONS:
                name = f"blocks.{block}.{attn}.{proj}"
                layer = model.get_submodule(name)
                down = torch.randn(rank, layer.in_features, generator=gen)
                up = torch.randn(layer.out_features, rank, generator=gen) * 0.1
                state[f"transformer.{name}.lora_A.weight"] = down
                state[f"transformer.{name}.lora_B.weight"] = up
                deltas[name] = up @ down  # alpha = rank -> scale 1
    save_file(state, str(tmp_path / "pytorch_lora_weights.safetensors"))
    base = {name: model.get_submodule(name).weight.clone() for name in deltas}
    assert load_lora(model, tmp_path / "pytorch_lora_weights.safetensors")["alpha"] == rank
    fuse_lora(model)
    for name, delta in deltas.items():
        torch.testing.assert_close(model.get_submodule(name).weight, base[name] + delta,
                                   rtol=1e-5, atol=1e-5)


def test_peft_key_naming_loads(tmp_path):
    model = randomized_lora()
    expected = forward(model)
    save_lora(model, tmp_path / "a.safetensors")
    from safetensors.torch import load_file, safe_open

    with safe_open(str(tmp_path / "a.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    peft_style = {k.replace("transformer.", "base_model.model.").replace(".weight", ".egox.weight"):
                  v for k, v in load_file(tmp_path / "a.safetensors").items()}
    save_file(peft_style, str(tmp_path / "b.safetensors"), metadata=metadata)
    loaded = base_transformer()
    load_lora(loaded, tmp_path / "b.safetensors")
    torch.testing.assert_close(forward(loaded), expected, rtol=0, atol=0)


@pytest.mark.parametrize("state, message", [
    ({"transformer.blocks.0.ffn.net.0.proj.lora_A.weight": torch.zeros(2, 32)},
     "not a LoRA on to_q/to_k/to_v/to_out.0"),
    ({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 32)},
     "only one of lora_A/lora_B"),
    ({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 40),
      "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(32, 2)}, "do not fit"),
    ({"transformer.blocks.7.attn1.to_q.lora_A.weight": torch.zeros(2, 32),
      "transformer.blocks.7.attn1.to_q.lora_B.weight": torch.zeros(32, 2)}, "wrong base model"),
])
def test_bad_lora_files_raise(tmp_path, state, message):
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelLoadError, match=message):
        load_lora(base_transformer(), tmp_path / "bad.safetensors")


def test_missing_or_corrupt_lora_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_lora(base_transformer(), tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        load_lora(base_transformer(), tmp_path / "junk.safetensors")
