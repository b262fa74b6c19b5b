"""The `egox` command: demo, offline generation and benchmarks.

Each command is a thin wrapper: it parses flags into the component's config dataclass and
calls into the library, so the same code runs from Python, ROS parameters and the shell.
"""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="EgoX exo-to-ego video synthesis.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: each prints its figure beside its baseline.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("gga")
def bench_gga(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda: 28,028 tokens, 40x128, bf16)."),
    tokens: int = typer.Option(None, help="Sequence length, rounded to whole latent frames."),
    kernel: str = typer.Option("split", help="Efficient GGA kernel: split, chunked or flex."),
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


@app.command("generate")
def generate(
    exo: Path = typer.Option(..., "--exo", help="Exo video file (mp4, ...)."),
    exo_camera: Path = typer.Option(..., "--exo-camera",
                                    help="Exo camera JSON/NPZ (egox_model/clip_io.py)."),
    ego_poses: Path = typer.Option(..., "--ego-poses",
                                   help="Ego camera + trajectory JSON/NPZ, one c2w per frame."),
    exo_depth: Path = typer.Option(..., "--exo-depth",
                                   help="NPZ: depth_m, or depth_mono_m + depth_video."),
    model_dir: Path = typer.Option(..., "--model-dir", help="Local diffusers-layout Wan 2.1 I2V."),
    lora: Path = typer.Option(None, "--lora", help="EgoX LoRA .safetensors (official keys ok)."),
    out: Path = typer.Option(Path("out/generate"), "--out", help="Output folder."),
    prompt: str = typer.Option("", help="Text prompt describing the scene."),
    frames: int = typer.Option(49, help="Frames to use from the start of the video (4k+1)."),
    steps: int = typer.Option(50, help="Denoising steps."),
    guidance: float = typer.Option(5.0, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, help="Noise seed."),
    gga: bool = typer.Option(True, "--gga/--no-gga", help="Geometry-Guided Attention."),
    gga_strength: float = typer.Option(3.0, help="GGA lambda."),
    device: str = typer.Option(None, help="cuda, cuda:N or cpu (default: cuda if present)."),
    cpu_offload: bool = typer.Option(False, help="Model CPU offload (less GPU memory)."),
    vae_tiling: bool = typer.Option(False, help="Tiled VAE encode/decode."),
    text_cache: Path = typer.Option(None, help="Folder caching prompt embeddings."),
) -> None:
    """Offline generation from files with the `wan` backend: writes ego.mp4, prior.mp4,
    ego_stamps_ns.npy and report.json to --out."""
    from egox_model.clip_io import load_clip, write_generation
    from egox_model.generator.wan import WanConfig, WanGenerator

    clip = load_clip(exo, exo_camera, ego_poses, exo_depth, prompt=prompt, max_frames=frames)
    config = WanConfig(model_dir=model_dir, lora_path=lora, num_inference_steps=steps,
                       guidance_scale=guidance, seed=seed, gga=gga, gga_strength=gga_strength,
                       device=device, cpu_offload=cpu_offload, vae_tiling=vae_tiling,
                       text_cache_dir=text_cache)
    output = WanGenerator(config).generate(clip)
    report = write_generation(out, output, clip.fps)
    typer.echo(f"wrote {out}/ego.mp4 ({report['frames']} frames), prior.mp4, report.json")


@bench_app.command("step")
def bench_step(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option(None, help="cuda (all 40 blocks, 28,028 tokens) or cpu (2-block "
                                          "slice); default: cuda if present."),
    layers: int = typer.Option(None, help="Blocks to build (default 40 cuda / 2 cpu)."),
    frames: int = typer.Option(None, help="Latent frames (default 13 cuda / 1 cpu)."),
    kernel: str = typer.Option("split", help="GGA kernel: split, chunked, flex or dense."),
    repeats: int = typer.Option(1, help="Timed steps per setting (median reported)."),
) -> None:
    """One CFG denoising step of the Wan 14B transformer shape, GGA on vs off."""
    import json

    import torch

    from egox_model.bench.step import StepBenchConfig, format_step_bench, run_step_bench
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_step_bench(StepBenchConfig(device=device, layers=layers, frames=frames,
                                            kernel=kernel, repeats=repeats))
    typer.echo(format_step_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
