"""LoRA on the tiny Wan transformer: save -> load round trip, official keys, fusing, stacked
adapters (EgoX + an original-Wan / lightx2v-style file), errors."""
from __future__ import annotations

import re

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from egox_model.errors import ConfigError, ModelLoadError
from egox_model.generator.wan.backend import load_adapters
from egox_model.generator.wan.config import WanConfig
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
    ({"transformer.blocks.0.attn1.to_q.weight": torch.zeros(32, 32)}, "not a LoRA weight"),
    ({"transformer.blocks.0.norm2.lora_A.weight": torch.zeros(2, 32),
      "transformer.blocks.0.norm2.lora_B.weight": torch.zeros(32, 2)}, "not a Linear layer"),
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


# --- stacked adapters ----------------------------------------------------------------------

#: Original Wan module names (what ComfyUI / Kijai / lightx2v files use) -> diffusers'.
WAN_NAMES = {"self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k",
             "self_attn.v": "attn1.to_v", "self_attn.o": "attn1.to_out.0",
             "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k",
             "cross_attn.v": "attn2.to_v", "cross_attn.o": "attn2.to_out.0",
             "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
             "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2"}


def wan_style_lora(path, model, rank: int = 2, alpha: float = 3.0):
    """A lightx2v-style file (`diffusion_model.blocks.N.self_attn.q.lora_down.weight`,
    `.lora_up.weight`, `.alpha`, `.diff_b` on one bias) on attention, image K/V and FFN;
    returns diffusers module name -> (delta W = alpha / rank * up @ down, delta bias)."""
    gen = torch.Generator().manual_seed(5)
    state, deltas = {}, {}
    for block in range(len(model.blocks)):
        for theirs, ours in WAN_NAMES.items():
            layer = model.get_submodule(f"blocks.{block}.{ours}")
            down = torch.randn(rank, layer.in_features, generator=gen)
            up = torch.randn(layer.out_features, rank, generator=gen) * 0.1
            key = f"diffusion_model.blocks.{block}.{theirs}"
            state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
            state[f"{key}.alpha"] = torch.tensor(alpha)
            deltas[f"blocks.{block}.{ours}"] = (alpha / rank * up @ down, None)
    bias = torch.randn(model.blocks[1].ffn.net[2].out_features, generator=gen)
    state["diffusion_model.blocks.1.ffn.2.diff_b"] = bias
    deltas["blocks.1.ffn.net.2"] = (deltas["blocks.1.ffn.net.2"][0], bias)
    save_file(state, str(path))
    return deltas


def egox_lora(path, rank: int = 4, alpha: float = 8.0):
    """The EgoX adapter (diffusers keys, alpha in the metadata); name -> alpha / rank * B A."""
    model = randomized_lora(rank, alpha)
    save_lora(model, path)
    weights = dict(model.named_parameters())
    return {name: alpha / rank * weights[f"{name}.lora_B.egox.weight"]
            @ weights[f"{name}.lora_A.egox.weight"]
            for name in {n.rsplit(".lora_A", 1)[0] for n in weights if ".lora_A." in n}}


def test_stacked_adapters_fuse_to_the_manually_merged_weights(tmp_path):
    """W + s1 * alpha1/r1 * B1 A1 + s2 * alpha2/r2 * B2 A2 (and b + s2 * diff_b), through the
    same settings the node reads."""
    egox = egox_lora(tmp_path / "egox.safetensors")
    model = base_transformer()
    distill = wan_style_lora(tmp_path / "lightx2v.safetensors", model)
    base = {name: (module.weight.detach().clone(), module.bias.detach().clone())
            for name, module in model.named_modules() if name in {*egox, *distill}}
    config = WanConfig(lora_path=str(tmp_path / "egox.safetensors"), lora_scale=0.7,
                       adapter_paths=(str(tmp_path / "lightx2v.safetensors"),),
                       adapter_names=("lightx2v",), adapter_scales=(1.5,))
    loaded = load_adapters(model, config)
    assert list(loaded) == ["egox", "lightx2v"]
    assert loaded["egox"]["modules"] == 16 and loaded["egox"]["scale"] == 0.7
    assert loaded["lightx2v"] == {"path": str(tmp_path / "lightx2v.safetensors"),
                                  "scale": 1.5, "rank": 2, "alpha": 2.0, "modules": 24,
                                  "biases": 1}  # alpha / rank folded into the weights
    assert not getattr(model, "peft_config", None)        # fused and unloaded
    assert type(model.blocks[0].attn1.to_q) is torch.nn.Linear
    assert len(base) == 24
    for name, (weight, bias) in base.items():
        want_w, want_b = weight.clone(), bias.clone()
        if name in egox:
            want_w += 0.7 * egox[name]
        delta_w, delta_b = distill[name]
        want_w += 1.5 * delta_w
        if delta_b is not None:
            want_b += 1.5 * delta_b
        layer = model.get_submodule(name)
        torch.testing.assert_close(layer.weight, want_w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.bias, want_b, rtol=1e-5, atol=1e-6)


def test_stacked_default_names_and_scales(tmp_path):
    egox_lora(tmp_path / "a.safetensors", rank=2, alpha=2.0)
    egox_lora(tmp_path / "b.safetensors", rank=3, alpha=1.5)
    one_by_one = base_transformer()
    load_lora(one_by_one, tmp_path / "a.safetensors", "first")
    load_lora(one_by_one, tmp_path / "b.safetensors", "second")
    one_by_one.set_adapters(["first", "second"], [1.0, 1.0])   # peft: the newest only
    expected = forward(one_by_one)                 # both adapters active, unfused
    model = base_transformer()
    loaded = load_adapters(model, WanConfig(adapter_paths=(str(tmp_path / "a.safetensors"),
                                                           str(tmp_path / "b.safetensors"))))
    assert [(k, v["scale"]) for k, v in loaded.items()] == [("adapter_1", 1.0),
                                                            ("adapter_2", 1.0)]
    torch.testing.assert_close(forward(model), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(adapter_paths=("a",), adapter_names=("x", "y")),
     "adapter_names=['x', 'y']: has 2 entries but adapter_paths has 1"),
    (dict(adapter_paths=("a", "b"), adapter_scales=(1.0,)),
     "adapter_scales=[1.0]: has 1 entries but adapter_paths has 2"),
    (dict(adapter_names=("x",)), "has 1 entries but adapter_paths has 0"),
    (dict(adapter_paths=("a", "b"), adapter_names=("x", "x")), "must be distinct"),
    (dict(adapter_paths=("a",), adapter_names=("egox",)), "not 'egox'"),
    (dict(adapter_paths=("a",), adapter_scales=(-1.0,)), "must be a list of numbers >= 0"),
])
def test_bad_adapter_settings(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        WanConfig(**options)


def test_missing_adapter_file_names_the_setting(tmp_path):
    egox_lora(tmp_path / "a.safetensors")
    config = WanConfig(adapter_paths=(str(tmp_path / "a.safetensors"),
                                      str(tmp_path / "gone.safetensors")))
    with pytest.raises(ModelLoadError, match=r"adapter_paths\[1\] '.*gone.safetensors' does "
                                             "not exist"):
        load_adapters(base_transformer(), config)


def test_adapter_name_twice_and_unknown_scale(tmp_path):
    egox_lora(tmp_path / "a.safetensors")
    model = base_transformer()
    load_lora(model, tmp_path / "a.safetensors", "x")
    with pytest.raises(ModelLoadError, match="'x' is already loaded"):
        load_lora(model, tmp_path / "a.safetensors", "x")
    with pytest.raises(ModelLoadError, match=r"scales for adapters \['y'\] that are not loaded"):
        fuse_lora(model, {"y": 1.0})
