"""The `egox` console script: egox_model's commands plus the ROS 2 ones.

`egox_model.cli` defines the ROS-free commands (it must not import ROS); this module adds
`record`, `convert`, `bench ros` and the `demo` that runs the synthetic scene through ROS 2.
ROS imports happen inside the commands, so `egox --help` works without a ROS environment.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from egox_model.cli import app, bench_app
from egox_ros.dds import local_ros_env, use_localhost_profile

__all__ = ["app", "main"]


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def record(out: Path = typer.Option(..., "--out", "-o", help="new bag directory (MCAP)"),
           topics: list[str] = typer.Argument(..., help="absolute topic names to record"),
           duration: float = typer.Option(0.0, help="stop after this many seconds (0 = Ctrl-C)")
           ) -> None:
    """Record TOPICS to a rosbag2 MCAP bag (header stamp as log time, QoS kept)."""
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from egox_ros.recorder import BagRecorder

    if out.exists():
        _fail(f"{out} already exists; rosbag2 bags go into a new directory")
    use_localhost_profile()       # discovery range: the user's (a robot's topics may be remote)
    rclpy.init()
    recorder = BagRecorder(out, topics)
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    end = time.monotonic() + duration if duration > 0 else None
    try:
        while rclpy.ok() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        counts = dict(recorder.counts)
        recorder.destroy_node()
        rclpy.try_shutdown()
    typer.echo(json.dumps({"bag": str(out), "messages": counts}))


@app.command()
def convert(in_bag: Path = typer.Argument(..., help="recorded exo bag (MCAP or sqlite3)"),
            out_bag: Path = typer.Argument(..., help="new bag directory for the ego topics"),
            config: Optional[Path] = typer.Option(
                None, help="ROS parameter file (config/egox.yaml format)"),
            namespace: str = typer.Option("/", help="namespace the node would run in"),
            remap: list[str] = typer.Option([], help="REL=ABS, e.g. "
                                                     "exo/image_raw=/cam/color/image_raw"),
            backend: Optional[str] = typer.Option(None, help="override the config's backend"),
            model_dir: Optional[str] = typer.Option(None, help="override model_dir"),
            lora: Optional[str] = typer.Option(None, help="override lora_path"),
            show_progress: bool = typer.Option(True, "--progress/--no-progress",
                                               help="progress bar on stderr")) -> None:
    """Run the egox pipeline over IN_BAG and write the ego topics to OUT_BAG."""
    import dataclasses

    from tqdm import tqdm

    from egox_ros.convert import convert_bag
    from egox_model.errors import ConfigError
    from egox_ros.errors import BagError
    from egox_ros.node import make_backend
    from egox_ros.params import EgoxConfig, load_yaml

    try:
        cfg = load_yaml(config) if config else EgoxConfig()
        changes = {k: v for k, v in (("backend", backend), ("model_dir", model_dir),
                                     ("lora_path", lora)) if v is not None}
        cfg = dataclasses.replace(cfg, **changes)
        bad = [r for r in remap if "=" not in r]
        if bad:
            raise ConfigError(f"--remap {bad[0]!r} must be REL=ABS, e.g. "
                              "exo/image_raw=/camera/color/image_raw")
        remaps = dict(r.split("=", 1) for r in remap)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    bar = tqdm(total=0, unit="msg", desc="convert", disable=not show_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    warned: list[str] = []
    try:
        summary = convert_bag(in_bag, out_bag, cfg, make_backend(cfg), namespace=namespace,
                              remap=remaps, progress=progress,
                              on_bad_input=lambda c, m, first: first and warned.append(m))
    except (BagError, ConfigError) as err:
        bar.close()
        _fail(str(err))
    bar.close()
    for message in warned:
        typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)
    typer.echo(json.dumps(summary))


@bench_app.command("ros")
def bench_ros(json_out: bool = typer.Option(False, "--json", help="last line: one JSON object"),
              backend: str = typer.Option("prior", help="generator backend for the latency"),
              clips: int = typer.Option(2, help="clips played back to back")) -> None:
    """Image-message conversion MB/s (vs a naive per-pixel copy) and node latency per clip."""
    import tempfile

    from egox_ros.bench import run_bench

    local_ros_env(Path(tempfile.mkdtemp(prefix="egox-bench-")))
    result = run_bench(backend, clips=clips)
    conv, lat = result["conversion"], result["latency"]
    typer.echo(f"conversion {conv['image']}: {conv['rgb8_owned_MBps']:.0f} MB/s owned copy, "
               f"{conv['rgb8_view_MBps']:.0f} MB/s zero-copy view; naive per-pixel "
               f"{conv['naive_per_pixel_MBps']:.2f} MB/s (x{conv['speedup_vs_naive']:.0f}), "
               f"np.array(msg.data) {conv['np_array_baseline_MBps']:.0f} MB/s")
    typer.echo(f"latency {lat['backend']} {lat['frames']} frames exo {lat['exo']} -> ego "
               f"{lat['ego']}: backend {lat['backend_ms_per_clip']} ms, node overhead "
               f"{[round(x, 1) for x in lat['node_overhead_ms']]} ms, end-to-end overhead "
               f"{[round(x, 1) for x in lat['end_to_end_overhead_ms']]} ms")
    if json_out:
        typer.echo(json.dumps(result))


@app.command()
def demo(out: Path = typer.Option(Path("out/demo"), "--out", "-o", help="output directory"),
         seed: int = typer.Option(0, help="scene seed"),
         generator: str = typer.Option("prior", help="generator backend: prior or wan"),
         model_dir: Optional[str] = typer.Option(None, help="wan: local model directory"),
         lora: Optional[str] = typer.Option(None, help="wan: local LoRA weights file"),
         steps: Optional[int] = typer.Option(None, help="wan: denoising steps (default 50)"),
         cpu_offload: bool = typer.Option(False, help="wan: model CPU offload (less GPU "
                                                      "memory)"),
         vae_tiling: bool = typer.Option(False, help="wan: tiled VAE encode/decode"),
         ros: bool = typer.Option(True, help="also run the scene through ROS 2 (DIR/bag/)")
         ) -> None:
    """Synthetic scene -> prior -> generator -> files, then the same scene through ROS 2."""
    from egox_ros.ros_demo import run_demo_with_ros

    wan_options = {k: v for k, v in (("model_dir", model_dir), ("lora_path", lora),
                                     ("num_inference_steps", steps),
                                     ("cpu_offload", cpu_offload), ("vae_tiling", vae_tiling))
                   if v is not None and v is not False}
    if wan_options and generator != "wan":
        raise typer.BadParameter(f"--model-dir, --lora, --steps, --cpu-offload and "
                                 f"--vae-tiling are options of --generator wan, not "
                                 f"{generator!r}", param_hint="--generator")
    out.mkdir(parents=True, exist_ok=True)
    local_ros_env(out)
    report = run_demo_with_ros(out, seed=seed, generator=generator, ros=ros, **wan_options)
    keys = ("backend", "frames", "ego_messages", "stamps_match", "latency_ms")
    typer.echo(json.dumps({k: report.get(k) for k in keys}))
    typer.echo(f"wrote {out}/: exo.mp4 prior.mp4 ego.mp4 preview.png report.json"
               + (" bag/" if ros else ""))


def main() -> None:
    """Console-script entry point (`egox`)."""
    app()


if __name__ == "__main__":
    main()
