"""The `egox` command: demo, offline generation and benchmarks.

Each command is a thin wrapper: it parses flags into the component's config dataclass and
calls into the library, so the same code runs from Python, ROS parameters and the shell.
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from egox_model.config import from_flat
from egox_model.config.flags import with_settings
from egox_model.errors import ConfigError, EgoxError
from egox_model.generator.config import GeneratorConfig

app = typer.Typer(help="EgoX exo-to-ego video synthesis.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: each prints its figure beside its baseline.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
eval_app = typer.Typer(help="Evaluations: each prints its scores beside a reference measured "
                            "in the same run.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@bench_app.command("gga")
def bench_gga(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda: 28,028 tokens, 40x128, bf16)."),
    tokens: int = typer.Option(None, help="Sequence length, rounded to whole latent frames."),
    kernel: str = typer.Option(
        "split", help="Efficient GGA kernel: split or chunked (dense is always run as the "
                      "reference)."),
    repeats: int = typer.Option(3, help="Timed calls per method (median reported)."),
) -> None:
    """Efficient GGA vs the dense-bias reference vs plain SDPA: time and peak memory."""
    import json

    from egox_model.bench.gga import GGABenchConfig, format_gga_bench, run_gga_bench
    result = run_gga_bench(GGABenchConfig(device=device, tokens=tokens, kernel=kernel,
                                          repeats=repeats))
    typer.echo(format_gga_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


@bench_app.command("prior")
def bench_prior(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    repeats: int = typer.Option(3, help="Timed runs (median reported)."),
    device: str = typer.Option("cpu", help="Where lifting and rendering run: cpu or cuda."),
    frames: int = typer.Option(49, help="Clip length (49 = the default clip)."),
) -> None:
    """Fusion + lift + render of the default clip, beside open3d's projection."""
    import json

    from egox_model.bench.prior import format_prior_bench, run_prior_bench
    result = run_prior_bench(repeats=repeats, device=device, frames=frames)
    typer.echo(format_prior_bench(result))
    if json_out:
        typer.echo(json.dumps(result.as_dict()))


@eval_app.command("prior")
def eval_prior(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    frames: int = typer.Option(3, min=1, help="Ego frames per scene."),
    size: int = typer.Option(256, min=16, help="Ego images size x size; exo size x 7/4 size."),
    seeds: int = typer.Option(2, min=1, max=2, help="Seeds per scene (the set has 2)."),
    video_depth_error: float = typer.Option(
        0.0, min=0.0, max=0.5, help="Shape error of the synthetic relative depth D_v: a "
        "smooth warp of +/- this fraction and pixel noise of half of it (0: exact up to an "
        "affine map)."),
) -> None:
    """Ego prior on the evaluation scene family: covisible PSNR / SSIM from ground-truth and
    fused depth, beside a 5-pixel square splat reference run on the same depth
    (docs/prior.md)."""
    import json

    from egox_model.eval.prior import format_prior_eval, run_prior_eval
    result = run_prior_eval(num_frames=frames, size=size, seeds=seeds,
                            video_depth_error=video_depth_error)
    typer.echo(format_prior_eval(result))
    if json_out:
        typer.echo(json.dumps(result))


@app.command("generate")
@with_settings(GeneratorConfig)
def generate(
    exo: Path = typer.Option(..., "--exo", help="Exo video file (mp4, ...)."),
    exo_camera: Path = typer.Option(..., "--exo-camera",
                                    help="Exo camera JSON/NPZ (egox_model/clip_io.py)."),
    ego_poses: Path = typer.Option(..., "--ego-poses",
                                   help="Ego camera + trajectory JSON/NPZ, one c2w per frame."),
    exo_depth: Path = typer.Option(None, "--exo-depth",
                                   help="NPZ: depth_m, or depth_mono_m + depth_video. Without "
                                        "it, --perception.depth_model DIR estimates depth."),
    out: Path = typer.Option(Path("out/generate"), "--out", help="Output folder."),
    prompt: str = typer.Option("", help="Text prompt describing the scene."),
    frames: int = typer.Option(49, min=1, help="Frames per clip, from the start of the video "
                                               "(backend 'wan': 4k+1)."),
    clip_stride: int = typer.Option(0, "--clip-stride", min=0, help="0: one clip. Else the "
                                    "whole video, as clips of --frames starting every this "
                                    "many frames, stitched without repeats; each continues "
                                    "from the previous one's output of the frames they share "
                                    "(wan: overlap 4m+1, docs/wan.md)."),
    settings: dict = None,
) -> None:
    """Offline generation from files with any backend (`--backend wan --wan.model_dir DIR`):
    writes ego.mp4, prior.mp4, ego_stamps_ns.npy and report.json to --out. Every setting of
    the generator tree is a flag (`egox params` lists them)."""
    from egox_model.clip_io import load_clip, write_generation
    from egox_model.clip_stream import generate_stream
    from egox_model.generator import make_generator
    from egox_model.perception.perceive import with_perception

    config = from_flat(GeneratorConfig, settings)
    if exo_depth is None and not config.perception.depth_model:
        raise ConfigError("without --exo-depth the depth is estimated: give a local metric "
                          "depth model directory (docs/perception.md)",
                          key="perception.depth_model", value="")
    if clip_stride > frames:
        raise ConfigError(f"must be at most --frames {frames} (a larger stride skips frames)",
                          key="clip-stride", value=clip_stride)
    try:
        config.check_clip_overlap(frames, frames - clip_stride if clip_stride else 0)
    except EgoxError as err:
        raise ConfigError(str(err), key="clip-stride", value=clip_stride) from None
    clip = load_clip(exo, exo_camera, ego_poses, exo_depth, prompt=prompt,
                     max_frames=None if clip_stride else frames)
    length = frames if clip_stride else clip.num_frames
    config.check_clip_shapes(length, clip.exo_rgb.shape[1:3],
                             (clip.ego_K.height, clip.ego_K.width))
    generator = with_perception(make_generator(config), config)
    if clip_stride:
        output, starts = generate_stream(generator, clip, length, clip_stride)
    else:
        output, starts = generator.generate(clip), [0]
    report = write_generation(out, output, clip.fps)
    typer.echo(f"wrote {out}/ego.mp4 ({report['frames']} frames from {len(starts)} clip(s), "
               f"of {clip.num_frames} input frames), prior.mp4, report.json")


@bench_app.command("step")
def bench_step(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option(None, help="cuda (all 40 blocks, 28,028 tokens) or cpu (2-block "
                                          "slice); default: cuda if present."),
    layers: int = typer.Option(None, help="Blocks to build (default 40 cuda / 2 cpu)."),
    frames: int = typer.Option(None, help="Latent frames (default 13 cuda / 1 cpu)."),
    kernel: str = typer.Option("split", help="GGA kernel: split, chunked or dense."),
    runtime: str = typer.Option("eager", help="Comma-separated runtimes: eager, compile, "
                                              "tensorrt."),
    precision: str = typer.Option("bf16", help="Comma-separated precisions: bf16, fp8."),
    repeats: int = typer.Option(1, help="Timed steps per setting (median reported)."),
) -> None:
    """One CFG denoising step of the Wan 14B transformer shape per runtime x precision, GGA
    on vs off, beside eager bf16 and the compute floor."""
    import json

    import torch

    from egox_model.bench.step import StepBenchConfig, format_step_bench, run_step_bench
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_step_bench(StepBenchConfig(
        device=device, layers=layers, frames=frames, kernel=kernel, repeats=repeats,
        runtimes=tuple(runtime.split(",")), precisions=tuple(precision.split(","))))
    typer.echo(format_step_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


@bench_app.command("clip")
def bench_clip(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option(None, help="cuda or cpu; default: cuda if present."),
    size: str = typer.Option(None, help="14b (real shapes, CUDA) or tiny; default 14b on "
                                        "cuda, tiny on cpu."),
    layers: int = typer.Option(40, help="Transformer blocks of the 14b model."),
    runtime: str = typer.Option("eager", help="eager, compile or tensorrt."),
    precision: str = typer.Option("bf16", help="bf16 or fp8."),
    schedule: str = typer.Option("50x2,4x1", help="Comma-separated STEPSxCALLS: 50x2 = 50 "
                                                  "steps with CFG, 4x1 = 4 without."),
    measured_steps: int = typer.Option(0, help="Run at most this many steps per schedule and "
                                               "scale the step stage (0 = run them all)."),
) -> None:
    """One whole clip (prior, text, VAE encode, steps, VAE decode) stage by stage per
    schedule, with peak GPU memory; the first schedule is the baseline."""
    import json

    import torch

    from egox_model.bench.clip import ClipBenchConfig, format_clip_bench, run_clip_bench
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_clip_bench(ClipBenchConfig(
        device=device, size=size or ("14b" if device == "cuda" else "tiny"), layers=layers,
        runtime=runtime, precision=precision, schedules=tuple(schedule.split(",")),
        measured_steps=measured_steps))
    typer.echo(format_clip_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


def _size(flag: str, text: str) -> tuple[int, int]:
    """(H, W) in pixels from a flag's "HxW"."""
    from egox_model.errors import InputError

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"{flag} must be HxW in pixels (e.g. 448x784), got {text!r}")
    return int(parts[0]), int(parts[1])


@app.command("export-trt")
@with_settings(GeneratorConfig)
def export_trt(
    frames: int = typer.Option(49, min=1, help="Clip frames (4k+1)."),
    exo_size: str = typer.Option("448x784", "--exo-size", help="Exo frame size HxW (pixels)."),
    ego_size: str = typer.Option("448x448", "--ego-size", help="Ego frame size HxW (pixels)."),
    onnx_only: bool = typer.Option(False, "--onnx-only",
                                   help="Export ONNX only (no TensorRT, no GPU needed)."),
    rebuild: bool = typer.Option(False, "--rebuild",
                                 help="Export and build again even if cached files match."),
    settings: dict = None,
) -> None:
    """Export the wan transformer (LoRAs fused, GGA bias as an input) to ONNX for one clip
    size and build its TensorRT engine into --wan.engine_dir, for `--wan.runtime tensorrt`
    (docs/tensorrt.md). Takes the same --wan.* settings as generation."""
    from egox_model.generator.wan.tensorrt import export_engine

    config = from_flat(GeneratorConfig, settings).wan
    result = export_engine(config, frames, _size("--exo-size", exo_size),
                           _size("--ego-size", ego_size), onnx_only=onnx_only, rebuild=rebuild)
    made = ", ".join(result.built) or "nothing (cached files match)"
    typer.echo(f"clip shape {result.shape.tag}, model {result.model_hash[:16]}; built: {made}")
    typer.echo(f"onnx: {result.onnx_path}")
    if result.plan_path is not None:
        typer.echo(f"engine: {result.plan_path}")


def _serve_config() -> type:
    from egox_model.serve.config import ServeConfig
    return ServeConfig


@app.command("serve")
@with_settings(_serve_config())
def serve_command(settings: dict = None) -> None:
    """Serve a generator backend over HTTP with Ray Serve (docs/serve.md): `--backend prior`
    or `--backend wan --wan.model_dir DIR`, plus --serve.* (host 127.0.0.1, port 8000,
    replicas, GPUs per replica, body limit, timeout, token). Runs until Ctrl-C / SIGTERM."""
    from egox_model.serve.server import start_server, wait_for_signal

    config = from_flat(_serve_config(), settings)
    server = start_server(config, log=lambda text: typer.echo(text, err=True))
    typer.echo(f"serving backend {config.backend} at {server.url} (POST /v1/generate, "
               f"GET /healthz; token {'required' if server.token_required else 'off'}); "
               "Ctrl-C stops", err=True)
    try:
        wait_for_signal()
    finally:
        server.stop()


data_app = typer.Typer(help="Paired exo/ego clip datasets for training and evaluation "
                            "(docs/training.md).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synthetic")
def data_synthetic(
    out: Path = typer.Option(..., "--out", help="Dataset root (created)."),
    seeds: int = typer.Option(8, min=1, help="Training clips: seeds 0..N-1."),
    val_seeds: int = typer.Option(2, min=0, help="Validation clips: the next N seeds."),
    frames: int = typer.Option(49, min=1, help="Frames per clip."),
    exo_size: str = typer.Option("448x784", help="Exo frame size HxW (pixels)."),
    ego_size: str = typer.Option("448x448", help="Ego frame size HxW (pixels)."),
) -> None:
    """Render paired clips of the synthetic room (one per seed) with splits train / val."""
    import json

    from egox_model.data.synthetic import write_synthetic_dataset
    from egox_model.scene import SceneConfig

    config = SceneConfig(num_frames=frames, exo_size=_size("--exo-size", exo_size),
                         ego_size=_size("--ego-size", ego_size))
    splits = write_synthetic_dataset(out, range(seeds), config=config,
                                     val_seeds=range(seeds, seeds + val_seeds))
    typer.echo(json.dumps({"root": str(out), **{k: len(v) for k, v in splits.items()}}))


@data_app.command("import-official")
def data_import_official(
    meta: Path = typer.Argument(..., help="The official release's meta JSON."),
    out: Path = typer.Option(..., "--out", help="Dataset root (clips are added)."),
    base_dir: Path = typer.Option(None, help="Folder relative video paths start from "
                                             "(default: the meta file's)."),
    data_root: Path = typer.Option(None, help="Folder holding depth_maps/<take>/ (default: "
                                              "the meta file's)."),
    split: str = typer.Option("train", help="Split the clips join."),
    frames: int = typer.Option(None, min=1, help="Keep at most this many frames."),
    ego_rot90: int = typer.Option(0, help="np.rot90 turns applied to the ego / prior videos "
                                          "(Aria videos stored rotated)."),
) -> None:
    """Convert the official EgoX meta format (videos, 3x4 w2c extrinsics, intrinsics, depth
    .npy per frame) into paired clips."""
    import json

    from egox_model.data.official import import_official

    names = import_official(meta, out, base_dir=base_dir, data_root=data_root, split=split,
                            max_frames=frames, ego_rotation_k=ego_rot90)
    typer.echo(json.dumps({"root": str(out), "split": split, "clips": names}))


def _train_config() -> type:
    from egox_model.train.config import TrainConfig
    return TrainConfig


@app.command("train")
@with_settings(_train_config())
def train_command(
    out: Path = typer.Option(..., "--out", help="Output folder: metrics.jsonl, tensorboard/, "
                                                "checkpoints/, pytorch_lora_weights.safetensors."),
    smoke_test: bool = typer.Option(False, "--smoke-test",
                                    help="Train the tiny random-weight model on synthetic "
                                         "clips written under --out, on the CPU (< 1 min)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Continue from the newest checkpoint in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm progress bar."),
    settings: dict = None,
) -> None:
    """LoRA fine-tuning of Wan 2.1 I2V on paired exo/ego clips (docs/training.md):
    `--model_dir DIR --data.root ROOT --out OUT`; multi-GPU under `accelerate launch`. Prints
    last one JSON object with first_loss and last_loss."""
    import json

    from egox_model.train.smoke import smoke_test as run_smoke_test
    from egox_model.train.trainer import train

    if smoke_test:
        if settings:
            raise ConfigError(f"--smoke-test sets its own options; drop {sorted(settings)}")
        result = run_smoke_test(out, progress=progress)
    else:
        result = train(from_flat(_train_config(), settings), out, resume=resume,
                       progress=progress)
    if result.is_main:                  # one summary per run, also under accelerate launch
        typer.echo(json.dumps(result.as_dict()))


@bench_app.command("remote")
def bench_remote(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    frames: int = typer.Option(49, min=1, help="Clip length (49 = the default clip)."),
    repeats: int = typer.Option(3, min=1, help="Timed clips per side (median reported)."),
    port: int = typer.Option(8000, help="Loopback port of the server the bench starts."),
) -> None:
    """Backend 'prior' through `egox serve` on loopback vs the same backend in-process: round
    trip, its parts (encode, server, decode) and payload bytes per clip."""
    import json

    from egox_model.bench.remote import format_remote_bench, run_remote_bench
    result = run_remote_bench(frames=frames, repeats=repeats, port=port)
    typer.echo(format_remote_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


@bench_app.command("perception")
@with_settings(GeneratorConfig)
def bench_perception(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    frames: int = typer.Option(9, min=1, help="Frames of the clip at the default exo size."),
    size: str = typer.Option(None, help="Random-weight models when no --perception.* "
                                        "directory is given: tiny, or real (published sizes); "
                                        "default real on cuda, tiny on cpu."),
    repeats: int = typer.Option(1, min=1, help="Timed runs per stage (median reported)."),
    settings: dict = None,
) -> None:
    """ms per frame of each perception stage (the configured --perception.* models, else
    random-weight ones), beside the prior stage's, in one run."""
    import json

    from egox_model.bench.perception import (PerceptionBenchConfig, format_perception_bench,
                                             run_perception_bench)
    from egox_model.perception.model_dir import resolve_device

    config = from_flat(GeneratorConfig, settings)
    size = size or ("real" if resolve_device(config.perception.device).type == "cuda"
                    else "tiny")
    if size not in ("tiny", "real"):
        raise ConfigError("must be 'tiny' or 'real'", key="size", value=size)
    result = run_perception_bench(PerceptionBenchConfig(
        frames=frames, size=size, repeats=repeats, perception=config.perception,
        prior=config.prior))
    typer.echo(format_perception_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


@eval_app.command("split")
@with_settings(GeneratorConfig)
def eval_split(
    data_dir: Path = typer.Argument(..., help="Paired-clip dataset root (ROOT/clips/NAME/, "
                                              "ROOT/splits.json; docs/evaluation.md)."),
    split: str = typer.Option("test", help="Split of ROOT/splits.json to score."),
    out: Path = typer.Option(Path("out/eval"), "--out", help="Output folder: results.md, "
                                                             "results.json, videos/ROW/NAME/."),
    predictions: list[Path] = typer.Option(
        None, "--predictions", help="Score this folder of NAME/ego.mp4 (+ NAME/masks.npz "
                                    "ego_objects) instead of generating; repeat for more rows."),
    ablations: str = typer.Option("", help="Comma-separated ablation rows generated beside the "
                                           "full model: no_gga, no_prior, noisy_exo "
                                           "(backend 'wan')."),
    lpips_dir: str = typer.Option("", help="Folder with torchvision's alexnet-owt-7be5be79.pth "
                                           "(or vgg16-397923af.pth) and lpips' alex.pth (or "
                                           "vgg.pth); '' = no LPIPS."),
    lpips_net: str = typer.Option("alex", help="LPIPS backbone: alex or vgg."),
    clip_model: str = typer.Option("", help="Local transformers CLIP directory; '' = no "
                                            "CLIP-I."),
    i3d: str = typer.Option("", help="TorchScript I3D file (i3d_torchscript.pt); '' = no FVD."),
    fvd_window: int = typer.Option(16, min=1, help="Frames per FVD window."),
    metrics_device: str = typer.Option("cpu", help="Where the metric backbones run."),
    frames: int = typer.Option(0, min=0, help="Frames per clip from the start (0 = all)."),
    max_clips: int = typer.Option(0, min=0, help="First N clips of the split (0 = all)."),
    settings: dict = None,
) -> None:
    """Generate (or read) the ego videos of a split and write the paper-style table: PSNR,
    SSIM always; LPIPS, CLIP-I, FVD with local backbones; IoU / location error where object
    masks exist. Every generator setting is a flag (`egox params`)."""
    from egox_model.eval.runner import EvalOptions, make_generate, run_eval

    options = EvalOptions(
        split=split, frames=frames, max_clips=max_clips,
        ablations=tuple(a.strip() for a in ablations.split(",") if a.strip()),
        lpips_dir=lpips_dir, lpips_net=lpips_net, clip_model=clip_model, i3d=i3d,
        fvd_window=fvd_window, device=metrics_device)
    if predictions and settings:
        raise ConfigError(f"generator flags ({', '.join(sorted(settings))}) do nothing when "
                          "scoring --predictions folders; drop them")
    backend, generate = ("", None) if predictions else make_generate(settings)
    run_eval(data_dir, out, options, predictions=list(predictions or ()), generate=generate,
             backend=backend, log=lambda text: typer.echo(text, err=True))
    typer.echo((out / "results.md").read_text())
    typer.echo(f"wrote {out}/results.md and {out}/results.json")


@eval_app.command("seams")
def eval_seams(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    frames: int = typer.Option(25, min=2, help="Frames of the synthetic scene."),
    length: int = typer.Option(9, min=1, help="Frames per clip (4k+1)."),
    stride: int = typer.Option(4, min=1, help="Frames between clip starts (wan: a multiple "
                                              "of 4)."),
    steps: int = typer.Option(4, min=1, help="Denoising steps of the tiny wan model."),
    exo_size: str = typer.Option("32x64", "--exo-size", help="Exo frame size HxW (pixels)."),
    ego_size: str = typer.Option("32x32", "--ego-size", help="Ego frame size HxW (pixels)."),
) -> None:
    """Frame-to-frame change across clip boundaries vs within clips of a long synthetic
    episode, for `prior` and the tiny random-weight `wan` with continuation on and off
    (docs/wan.md, "Long episodes")."""
    import json

    from egox_model.eval.seams import SeamsConfig, format_seams, run_seams
    result = run_seams(SeamsConfig(frames=frames, length=length, stride=stride, steps=steps,
                                   exo_size=_size("--exo-size", exo_size),
                                   ego_size=_size("--ego-size", ego_size)))
    typer.echo(format_seams(result))
    if json_out:
        typer.echo(json.dumps(result))


def run(command: typer.Typer) -> None:
    """Run a typer app; a user error (any EgoxError) ends as one line and exit status 2."""
    try:
        command()
    except EgoxError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
