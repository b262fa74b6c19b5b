"""Runtime 'tensorrt' of the `wan` backend, on the CPU: the exportable GGA form, the ONNX
export (run with onnxruntime), the engine cache keys and the errors. TensorRT itself is not
installable here: test/cuda/test_tensorrt.py builds and runs engines where it is.

Truth for the export: the tiny random-weight model loaded from its directory with a merged
random LoRA, run eagerly with `GGAAttnProcessor` ("split" kernel) on the token geometry of
`tiny_clip`; the exported graph gets the same clip's bias as its `gga_bias` input.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from test_gga_reference import Case, geometry as random_geometry
from typer.testing import CliRunner

from egox_model.cli import app
from egox_model.errors import ConfigError, InputError, ModelLoadError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig, gga_attention, gga_tables
from egox_model.generator.gga.bias import gga_dense_bias
from egox_model.generator.wan import WanConfig, WanGenerator
from egox_model.generator.wan.lora import add_lora, save_lora
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.generator.wan.tensorrt import (ClipShape, EngineCache, EngineKey,
                                               EngineTransformer, GGABiasInputProcessor,
                                               TokenGrid, import_tensorrt, model_hash)
from egox_model.generator.wan.tensorrt.build import load_fused_transformer
from egox_model.generator.wan.tensorrt.processor import bias_input_attention, gga_bias_input
from egox_model.generator.wan.tiny import save_tiny_model_dir, tiny_clip
from egox_model.geometry.tokens import token_geometry
from egox_model.prior import PriorConfig, render_ego_prior

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FRAMES, EXO_HW, EGO_HW = 5, (32, 48), (32, 32)
SIZE_FLAGS = ["--frames", "5", "--exo-size", "32x48", "--ego-size", "32x32"]
#: Ops a static TensorRT graph must not need: data-dependent shapes, boolean gathers, scatters.
FORBIDDEN_OPS = {"NonZero", "Compress", "GatherND", "ScatterND", "ScatterElements", "Loop",
                 "If", "Unique"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("wan") / "model")


@pytest.fixture(scope="module")
def lora_file(model_dir, tmp_path_factory):
    """A rank-4 LoRA with random (non-zero) B on every attention projection."""
    from diffusers import WanTransformer3DModel
    model = WanTransformer3DModel.from_pretrained(model_dir / "transformer")
    add_lora(model, rank=4, alpha=8.0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.2)
    return save_lora(model, tmp_path_factory.mktemp("lora") / "lora.safetensors")


@pytest.fixture(scope="module")
def clip_geometry():
    clip = tiny_clip()
    prior = render_ego_prior(clip, PriorConfig())
    return token_geometry(clip.exo_K, clip.exo_c2w, prior.exo_depth_m, clip.ego_K, clip.ego_c2w)


def wan_flags(model_dir, lora_file, engine_dir) -> list[str]:
    return ["--wan.model_dir", str(model_dir), "--wan.lora_path", str(lora_file),
            "--wan.dtype", "float32", "--wan.device", "cpu", "--wan.engine_dir", str(engine_dir)]


@pytest.fixture(scope="module")
def exported(model_dir, lora_file, tmp_path_factory):
    """`egox export-trt --onnx-only` on the tiny model: (engine_dir, CLI output, onnx path)."""
    engine_dir = tmp_path_factory.mktemp("engines")
    result = CliRunner().invoke(app, ["export-trt", "--onnx-only", *SIZE_FLAGS,
                                      *wan_flags(model_dir, lora_file, engine_dir)])
    assert result.exit_code == 0, result.output
    onnx_path = Path(re.search(r"^onnx: (.+)$", result.output, re.M)[1])
    return engine_dir, result.output, onnx_path


def wan_config(model_dir, lora_file, engine_dir, **options) -> WanConfig:
    return WanConfig(model_dir=str(model_dir), lora_path=str(lora_file), dtype="float32",
                     device="cpu", engine_dir=str(engine_dir), num_inference_steps=3,
                     progress=False, **options)


# 1. The exportable GGA form ---------------------------------------------------------------

GRIDS = [Case(2, 3, 4, 2), Case(2, 1, 3, 5), Case(1, 1, 1, 1), Case(3, 2, 1, 4)]


@pytest.mark.parametrize("case", GRIDS, ids=str)
@pytest.mark.parametrize("config", [GGAConfig(), GGAConfig(strength=1.0),
                                    GGAConfig(form="power")], ids=["official3", "official1",
                                                                   "power"])
def test_bias_input_attention_equals_dense_gga(case: Case, config: GGAConfig) -> None:
    geometry = random_geometry(case)
    tables = gga_tables(geometry)
    grid = TokenGrid.of_geometry(geometry)
    assert grid.num_tokens == tables.num_tokens
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, grid.num_tokens, 8, generator=g, dtype=torch.float64)
               for _ in range(3))
    bias = gga_bias_input(geometry, config, torch.float64)
    # the bias rows are the dense bias's ego rows, exactly; zero on every ego key
    torch.testing.assert_close(bias, gga_dense_bias(tables, config)[tables.ego_idx].double(),
                               rtol=0, atol=0)
    assert (bias[:, tables.ego_idx] == 0).all()
    dense = gga_attention(q, k, v, tables, dataclasses.replace(config, kernel="dense"))
    torch.testing.assert_close(bias_input_attention(q, k, v, grid, bias), dense,
                               rtol=0, atol=1e-12)


def test_bias_input_processor_equals_gga_processor_in_model(model_dir, lora_file,
                                                            clip_geometry) -> None:
    transformer = load_fused_transformer(wan_config(model_dir, lora_file, "unused"), "cpu")
    shape = ClipShape.from_pixels(FRAMES, EXO_HW, EGO_HW, image_tokens=17)
    inputs = shape.example_inputs(transformer.config, torch.float32)
    del inputs["gga_bias"]
    outs = {}
    with torch.no_grad():
        for name, processor in (("split", GGAAttnProcessor(GGAConfig(kernel="split"))),
                                ("bias_input", GGABiasInputProcessor(GGAConfig()))):
            install_attn1_processor(transformer, processor)
            processor.set_geometry(clip_geometry)
            outs[name] = transformer(**inputs, return_dict=False)[0]
            processor.set_geometry(None)
            outs[name + "_off"] = transformer(**inputs, return_dict=False)[0]
    torch.testing.assert_close(outs["bias_input"], outs["split"], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs["bias_input_off"], outs["split_off"], rtol=0, atol=1e-5)
    assert (outs["split"] - outs["split_off"]).abs().max() > 1e-3   # GGA changes the output


def test_bias_input_shape_errors() -> None:
    grid = TokenGrid(2, 1, 3, 2)
    q = torch.zeros(1, 2, grid.num_tokens, 4)
    with pytest.raises(InputError, match=r"must be \(N_e, N\) = \(4, 10\)"):
        bias_input_attention(q, q, q, grid, torch.zeros(10, 10))
    with pytest.raises(InputError, match="does not match the token grid"):
        bias_input_attention(q[:, :, :8], q[:, :, :8], q[:, :, :8], grid, torch.zeros(4, 10))
    with pytest.raises(InputError, match=">= 1"):
        TokenGrid(1, 0, 1, 1)


# 2. ONNX export -----------------------------------------------------------------------------

def test_export_trt_onnx_only_command(exported, model_dir, lora_file) -> None:
    engine_dir, output, onnx_path = exported
    shape = ClipShape.from_pixels(FRAMES, EXO_HW, EGO_HW, image_tokens=17)
    assert f"clip shape {shape.tag}" in output and "built: onnx" in output
    assert "engine:" not in output
    assert onnx_path.is_file() and onnx_path.with_name("model.onnx.data").is_file()
    assert onnx_path.is_relative_to(engine_dir)
    again = CliRunner().invoke(app, ["export-trt", "--onnx-only", *SIZE_FLAGS,
                                     *wan_flags(model_dir, lora_file, engine_dir)])
    assert again.exit_code == 0 and "built: nothing (cached files match)" in again.output
    assert f"onnx: {onnx_path}" in again.output


def test_exported_graph_is_static(exported) -> None:
    model = onnx.load(str(exported[2]), load_external_data=False)
    ops = Counter(node.op_type for node in model.graph.node)
    assert not FORBIDDEN_OPS & set(ops), ops
    # per block: attn1 exo rows, attn1 ego rows, attn2 image tokens, attn2 text tokens
    assert ops["Softmax"] == 4 * 2
    float32, int64, double = (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64,
                              onnx.TensorProto.DOUBLE)
    assert all(t.data_type != double for t in model.graph.initializer)
    dims = {i.name: ([d.dim_value for d in i.type.tensor_type.shape.dim],
                     i.type.tensor_type.elem_type) for i in model.graph.input}
    assert dims == {"hidden_states": ([1, 36, 2, 4, 10], float32),
                    "timestep": ([1], float32),
                    "encoder_hidden_states": ([1, 512, 24], float32),
                    "encoder_hidden_states_image": ([1, 17, 20], float32),
                    "gga_bias": ([8, 20], float32)}
    assert [o.name for o in model.graph.output] == ["noise_pred"]
    assert int64 not in {i.type.tensor_type.elem_type for i in model.graph.input}


def test_onnx_equals_torch_with_gga_and_lora(exported, model_dir, lora_file,
                                             clip_geometry) -> None:
    """onnxruntime on the export == the eager model (LoRA fused, GGAAttnProcessor 'split')."""
    session = ort.InferenceSession(str(exported[2]), providers=["CPUExecutionProvider"])
    transformer = load_fused_transformer(wan_config(model_dir, lora_file, "unused"), "cpu")
    shape = ClipShape.from_pixels(FRAMES, EXO_HW, EGO_HW, image_tokens=17)
    inputs = shape.example_inputs(transformer.config, torch.float32, seed=3)
    inputs["timestep"] = torch.tensor([742.5])
    inputs["gga_bias"] = gga_bias_input(clip_geometry, GGAConfig(), torch.float32)
    processor = GGAAttnProcessor(GGAConfig(kernel="split"))
    install_attn1_processor(transformer, processor)
    with torch.no_grad():
        processor.set_geometry(clip_geometry)
        eager = transformer(**{k: v for k, v in inputs.items() if k != "gga_bias"},
                            return_dict=False)[0].numpy()
        processor.set_geometry(None)
        no_gga = transformer(**{k: v for k, v in inputs.items() if k != "gga_bias"},
                             return_dict=False)[0].numpy()
    out = session.run(["noise_pred"], {k: v.numpy() for k, v in inputs.items()})[0]
    assert out.shape == (1, 16, 2, 4, 10)
    np.testing.assert_allclose(out, eager, rtol=0, atol=2e-5)
    assert np.abs(eager - no_gga).max() > 1e-3
    zero = session.run(["noise_pred"], {k: (torch.zeros_like(v) if k == "gga_bias" else v)
                                        .numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(zero, no_gga, rtol=0, atol=2e-5)  # zero bias = GGA off


def test_exported_lora_is_merged(exported, model_dir, clip_geometry) -> None:
    """Without the LoRA the eager model differs from the export: the export has it fused."""
    session = ort.InferenceSession(str(exported[2]), providers=["CPUExecutionProvider"])
    transformer = load_fused_transformer(WanConfig(model_dir=str(model_dir), dtype="float32",
                                                   device="cpu"), "cpu")
    shape = ClipShape.from_pixels(FRAMES, EXO_HW, EGO_HW, image_tokens=17)
    inputs = shape.example_inputs(transformer.config, torch.float32)
    with torch.no_grad():
        base = transformer(**{k: v for k, v in inputs.items() if k != "gga_bias"},
                           return_dict=False)[0].numpy()
    out = session.run(["noise_pred"], {k: v.numpy() for k, v in inputs.items()})[0]
    assert np.abs(out - base).max() > 1e-3


def test_engine_transformer_in_the_pipeline(exported, model_dir, lora_file) -> None:
    """The engine stand-in, with onnxruntime in place of TensorRT, generates the same video as
    the eager generator: GGA geometry reaches the bias input once per clip."""
    engine_dir, _, onnx_path = exported
    config = wan_config(model_dir, lora_file, engine_dir)
    generator = WanGenerator(config)
    eager = generator.generate(tiny_clip()).ego_rgb
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    loads, biases = [], []

    def load(cache, key, device):
        loads.append(key)

        def run(**inputs):
            biases.append(inputs["gga_bias"])
            return {"noise_pred": torch.from_numpy(session.run(
                ["noise_pred"], {k: v.numpy() for k, v in inputs.items()})[0])}
        return run

    shape = ClipShape.from_pixels(FRAMES, EXO_HW, EGO_HW, image_tokens=17)
    pipe = generator.pipe
    stand_in = EngineTransformer(pipe.transformer.config, torch.float32, torch.device("cpu"),
                                 EngineCache(engine_dir), lambda s: key_of(shape=s),
                                 config.gga, load=load)
    pipe.register_modules(transformer=stand_in)
    out = generator.generate(tiny_clip()).ego_rgb
    assert loads == [key_of(shape=shape)]
    assert len(biases) == 2 * 3 and all(b is biases[0] for b in biases)  # once per clip
    assert biases[0].abs().max() > 0
    assert np.abs(out.astype(int) - eager.astype(int)).max() <= 1
    generator.generate(tiny_clip())
    assert len(loads) == 1 and biases[-1] is not biases[0]   # new clip: new bias, same engine


# 3. Engine cache keys -----------------------------------------------------------------------

def key_of(**changes) -> EngineKey:
    base = EngineKey("NVIDIA H200", (9, 0), "11.4.0.106", "ab" * 32,
                     ClipShape.from_pixels(49, (448, 784), (448, 448)), "bfloat16")
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("change", [
    {"gpu_name": "NVIDIA H100 80GB HBM3"}, {"compute_capability": (8, 9)},
    {"tensorrt_version": "11.4.1.2"}, {"model_hash": "cd" * 32}, {"precision": "float16"},
    {"shape": ClipShape.from_pixels(33, (448, 784), (448, 448))},
    {"shape": ClipShape.from_pixels(49, (448, 800), (448, 432))},
    {"shape": ClipShape.from_pixels(49, (448, 784), (448, 448), image_tokens=0)},
    {"format": 99}], ids=lambda c: next(iter(c)))
def test_engine_key_changes_with_each_input(change, tmp_path) -> None:
    base, other = key_of(), key_of(**change)
    assert other != base
    cache = EngineCache(tmp_path)
    assert cache.plan_path(other) != cache.plan_path(base)
    assert len(base.differences(other)) == 1
    assert EngineKey.from_dict(other.as_dict()) == other
    gpu_independent = {"gpu_name", "compute_capability", "tensorrt_version"}
    assert (other.model_stem == base.model_stem) == bool(gpu_independent & set(change))


def test_model_hash_follows_weights_and_every_lora(model_dir, lora_file, tmp_path) -> None:
    import shutil
    copy = shutil.copytree(model_dir / "transformer", tmp_path / "model" / "transformer")
    memo = tmp_path / "digests.json"
    base = model_hash(copy.parent, [], memo)
    assert model_hash(copy.parent, [], memo) == base and memo.is_file()
    with_lora = model_hash(copy.parent, [("egox", lora_file, 1.0)], memo)
    assert with_lora != base
    assert model_hash(copy.parent, [("egox", lora_file, 0.5)], memo) != with_lora
    assert model_hash(copy.parent, [("other", lora_file, 1.0)], memo) != with_lora
    assert model_hash(model_dir, [], memo) == base          # same contents, other folder
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_hash(copy.parent, [], memo) != base       # contents, not names, count
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_hash(copy.parent, [("egox", tmp_path / "missing.safetensors", 1.0)])


def test_mismatched_plan_key_is_refused(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    here, built = key_of(), key_of(gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0))
    plan = cache.plan_path(here)
    plan.write_bytes(b"plan")                # a plan copied under this GPU's name
    plan.with_suffix(".json").write_text(__import__("json").dumps(built.as_dict()))
    with pytest.raises(ModelLoadError, match=r"built for GPU 'NVIDIA A100-SXM4-80GB' \(here "
                                             r"'NVIDIA H200'\); compute capability"):
        cache.find(here)
    with pytest.raises(ModelLoadError, match=r"--frames 49 --exo-size 448x784 --ego-size "
                                             r"448x448 --rebuild"):
        cache.find(here)
    plan.unlink()
    (tmp_path / "x.plan").write_bytes(b"plan")
    cache.plan_path(built).write_bytes(b"plan")
    cache.save_key(built)
    assert cache.find(here) is None
    message = cache.missing_message(here)
    assert "TensorRT 11.4.0.106" in message and "NVIDIA A100-SXM4-80GB" in message
    assert "egox export-trt --frames 49 --exo-size 448x784 --ego-size 448x448" in message
    assert [k for _, k in cache.keys()] == [built]          # x.plan has no key: skipped


# 4. Without TensorRT ------------------------------------------------------------------------

def test_missing_tensorrt_is_a_clear_error(monkeypatch, model_dir, lora_file, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)       # import tensorrt -> ImportError
    install = r"pip install tensorrt-cu13==11.4.0.106 on a CUDA machine"
    with pytest.raises(ConfigError, match=r"runtime='tensorrt': runtime 'tensorrt' needs the "
                                          r"tensorrt package \(" + install):
        import_tensorrt()
    with pytest.raises(ConfigError, match=install):
        WanGenerator(wan_config(model_dir, lora_file, tmp_path, runtime="tensorrt"))
    result = CliRunner().invoke(app, ["export-trt", *SIZE_FLAGS,
                                      *wan_flags(model_dir, lora_file, tmp_path)])
    assert isinstance(result.exception, ConfigError), result.output
    assert install in str(result.exception)
    assert not list(tmp_path.glob("onnx/*"))                 # refused before exporting


def test_export_trt_rejects_bad_sizes(model_dir, tmp_path) -> None:
    result = CliRunner().invoke(app, ["export-trt", "--onnx-only", "--exo-size", "448",
                                      "--wan.model_dir", str(model_dir)])
    assert isinstance(result.exception, InputError)
    assert "--exo-size must be HxW" in str(result.exception)
    result = CliRunner().invoke(app, ["export-trt", "--onnx-only", "--frames", "48",
                                      "--wan.model_dir", str(model_dir),
                                      "--wan.engine_dir", str(tmp_path)])
    assert isinstance(result.exception, InputError) and "4k+1" in str(result.exception)
