"""The `egox` console script: egox_model's commands plus the ROS 2 ones.

`egox_model.cli` defines the ROS-free commands (it must not import ROS); this module adds
`record`, `convert`, `export-lerobot`, `bench ros` and the `demo` that runs the synthetic
scene through ROS 2. ROS imports happen inside the commands, so `egox --help` works without
a ROS environment.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from egox_model.cli import app, bench_app, run
from egox_model.config import from_flat
from egox_model.config.flags import with_settings
from egox_model.errors import ConfigError
from egox_model.generator.config import GeneratorConfig
from egox_ros.dds import local_ros_env, use_localhost_profile
from egox_ros.params import EgoxConfig

__all__ = ["app", "main"]


@app.command()
def record(out: Path = typer.Option(..., "--out", "-o", help="new bag directory (MCAP)"),
           topics: list[str] = typer.Argument(..., help="absolute topic names to record"),
           duration: float = typer.Option(0.0, help="stop after this many seconds (0 = Ctrl-C)"),
           flush_period: float = typer.Option(
               1.0, "--flush-period", help="seconds between writes to disk: at most what a "
                                           "crash loses (0: only full 1 MiB chunks)")
           ) -> None:
    """Record TOPICS to a rosbag2 MCAP bag (header stamp as log time, QoS kept)."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from egox_ros.recorder import BagRecorder
    from egox_ros.spin import ros_main

    if out.exists():
        raise ConfigError(f"--out {out} already exists; rosbag2 bags go into a new directory")
    use_localhost_profile()       # discovery range: the user's (a robot's topics may be remote)
    counts: dict[str, int] = {}
    with ros_main("egox_record", []):     # Ctrl-C ends the loop; user errors exit 2
        recorder = BagRecorder(out, topics, flush_period_s=flush_period)
        executor = SingleThreadedExecutor()
        executor.add_node(recorder)
        end = time.monotonic() + duration if duration > 0 else None
        try:
            while rclpy.ok() and (end is None or time.monotonic() < end):
                executor.spin_once(timeout_sec=0.1)
        finally:
            counts = dict(recorder.counts)
            recorder.destroy_node()
    typer.echo(json.dumps({"bag": str(out), "messages": counts}))


@app.command("paired-from-bag")
@with_settings(EgoxConfig)
def paired_from_bag(
        in_bag: Path = typer.Argument(..., help="bag with the exo topics and a real ego camera"),
        out_root: Path = typer.Argument(..., help="paired-clip dataset root (docs/training.md); "
                                                  "clips are added to it"),
        config: Optional[Path] = typer.Option(
            None, help="ROS 2 parameter file (config/egox.yaml format); flags override it"),
        node_name: str = typer.Option("egox", help="node whose section of --config applies"),
        namespace: str = typer.Option("/", help="namespace the node would run in"),
        remap: list[str] = typer.Option([], help="REL=ABS, e.g. exo/image_raw=/cam/image"),
        ego_image_topic: str = typer.Option("/ego/image_raw", help="the real ego camera"),
        ego_info_topic: str = typer.Option(
            "/ego/camera_info", help="its CameraInfo (fisheye is undistorted)"),
        max_gap_ms: float = typer.Option(20.0, min=0.0, help="largest exo/ego stamp gap"),
        split: str = typer.Option("train", help="split the clips join"),
        settings: dict = None) -> None:
    """Write the clips of IN_BAG (cut as `egox convert` cuts them) with the real ego images at
    their stamps as paired training clips under OUT_ROOT. Last line: a JSON summary."""
    from egox_ros.paired_from_bag import write_paired_from_bag
    from egox_ros.params import load_config

    bad = [r for r in remap if "=" not in r]
    if bad:
        raise ConfigError(f"--remap {bad[0]!r} must be REL=ABS, e.g. "
                          "exo/image_raw=/camera/color/image_raw")
    summary = write_paired_from_bag(
        in_bag, out_root, load_config(config, node_name, settings),
        ego_image_topic=ego_image_topic, ego_info_topic=ego_info_topic, namespace=namespace,
        remap=dict(r.split("=", 1) for r in remap), max_gap_ns=int(max_gap_ms * 1e6),
        split=split)
    typer.echo(json.dumps(summary))


bag_app = typer.Typer(help="Bag maintenance.", no_args_is_help=True)
app.add_typer(bag_app, name="bag")


@bag_app.command("repair")
def bag_repair(bag: Path = typer.Argument(..., help="MCAP bag directory, e.g. after a crash")
               ) -> None:
    """Rebuild the index, summary and metadata.yaml of an MCAP bag a crash left without them
    (like `ros2 bag reindex`), from every complete record. The original file is kept as
    NAME.mcap.broken; a valid bag is left unchanged. Last line: a JSON summary."""
    from egox_ros.bag_repair import repair_bag

    report = repair_bag(bag)
    if report.status == "valid":
        typer.echo(f"{bag} is a valid bag already; nothing changed")
    else:
        typer.echo(f"{bag}: recovered {sum(report.messages.values())} messages on "
                   f"{len(report.messages)} topic(s); reading stopped: {report.stopped}; the "
                   f"original file is kept as {report.kept.name}")
        for topic, reason in report.skipped.items():
            typer.secho(f"warning: {topic} not recovered: {reason}", err=True,
                        fg=typer.colors.YELLOW)
        if report.orphans:
            typer.secho(f"warning: {report.orphans} messages of channels declared in the lost "
                        "part of the file were dropped", err=True, fg=typer.colors.YELLOW)
    typer.echo(json.dumps(report.as_dict()))


@app.command()
@with_settings(EgoxConfig)
def convert(in_bag: Path = typer.Argument(..., help="recorded exo bag (MCAP or sqlite3); with "
                                                    "--ray: a directory of such bags"),
            out_bag: Path = typer.Argument(..., help="new bag directory for the ego topics; "
                                                     "with --ray: the output directory"),
            config: Optional[Path] = typer.Option(
                None, help="ROS 2 parameter file (config/egox.yaml format); flags override it"),
            node_name: str = typer.Option("egox", help="node whose section of --config "
                                                       "applies (and whose topics are written)"),
            namespace: str = typer.Option("/", help="namespace the node would run in"),
            remap: list[str] = typer.Option([], help="REL=ABS, e.g. "
                                                     "exo/image_raw=/cam/color/image_raw"),
            show_progress: bool = typer.Option(True, "--progress/--no-progress",
                                               help="progress bar on stderr"),
            ray_address: str = typer.Option(
                "", "--ray", metavar="ADDRESS|auto",
                help="convert every bag of IN_BAG (a directory) into OUT_BAG/<name> with one "
                     "Ray task per clip: 'auto' starts a private loopback-only Ray here, an "
                     "address (e.g. ray://head:10001 or head:6379) joins a running cluster. "
                     "Finished bags are skipped on a rerun; exit status 1 if any bag failed"),
            num_cpus: Optional[int] = typer.Option(
                None, "--num-cpus", min=1, help="--ray auto: CPUs of the local Ray "
                                                "(default: all)"),
            gpus_per_task: Optional[float] = typer.Option(
                None, "--gpus-per-task", min=0.0, help="--ray: GPUs each clip's task asks "
                "for (default: 1 for backend wan unless --wan.device cpu, else 0)"),
            cpus_per_task: float = typer.Option(1.0, "--cpus-per-task", min=0.0,
                                                help="--ray: CPUs each clip's task asks for"),
            max_in_flight: int = typer.Option(
                0, "--max-in-flight", min=0, help="--ray: clips sent out at once (bounds the "
                "driver's memory; 0: twice the tasks the cluster can run at once)"),
            settings: dict = None) -> None:
    """Run the egox pipeline over IN_BAG and write the ego topics to OUT_BAG. Every node
    parameter is also a flag (`--backend wan --wan.model_dir DIR`; `egox params`).
    With `--ray ADDRESS|auto`: a directory of bags on a Ray cluster (docs/ros.md)."""
    from tqdm import tqdm

    from egox_ros.params import load_config

    cfg = load_config(config, node_name, settings)
    bad = [r for r in remap if "=" not in r]
    if bad:
        raise ConfigError(f"--remap {bad[0]!r} must be REL=ABS, e.g. "
                          "exo/image_raw=/camera/color/image_raw")
    remaps = dict(r.split("=", 1) for r in remap)
    if ray_address:
        _convert_on_ray(in_bag, out_bag, cfg, ray_address, namespace=namespace,
                        node_name=node_name, remap=remaps, show_progress=show_progress,
                        num_cpus=num_cpus, gpus_per_task=gpus_per_task,
                        cpus_per_task=cpus_per_task, max_in_flight=max_in_flight)
        return
    ray_only = {"--num-cpus": num_cpus, "--gpus-per-task": gpus_per_task,
                "--max-in-flight": max_in_flight or None,
                "--cpus-per-task": None if cpus_per_task == 1.0 else cpus_per_task}
    given = [flag for flag, value in ray_only.items() if value is not None]
    if given:
        raise ConfigError(f"{given[0]} applies to --ray conversion only; add --ray auto (or a "
                          "cluster address) or drop it")
    if in_bag.is_dir() and not (in_bag / "metadata.yaml").exists() and \
            any((p / "metadata.yaml").exists() for p in in_bag.iterdir() if p.is_dir()):
        raise ConfigError(f"IN_BAG {in_bag} is a directory of bags, not a bag: convert them "
                          f"all with `egox convert --ray auto {in_bag} OUT_DIR`")

    from egox_ros.convert import convert_bag
    from egox_ros.node import make_backend

    generator = make_backend(cfg)
    warned: list[str] = []
    bars: list[tqdm] = []                 # opened at the first progress call, after the checks

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="msg", desc="convert",
                             disable=not show_progress))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    try:
        summary = convert_bag(in_bag, out_bag, cfg, generator, namespace=namespace,
                              node_name=node_name, remap=remaps, progress=progress,
                              on_bad_input=lambda c, m, first: first and warned.append(m))
    finally:
        for bar in bars:
            bar.close()
    for message in warned:
        typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)
    typer.echo(json.dumps(summary))


def _convert_on_ray(in_dir: Path, out_dir: Path, cfg: EgoxConfig, address: str, *,
                    namespace: str, node_name: str, remap: dict[str, str], show_progress: bool,
                    num_cpus: Optional[int], gpus_per_task: Optional[float],
                    cpus_per_task: float, max_in_flight: int) -> None:
    """`egox convert --ray`: every bag of IN_DIR, a per-bag summary, exit 1 if any failed."""
    from tqdm import tqdm

    from egox_model.ray_local import ray_session
    from egox_ros.convert_ray import convert_dir, find_bags, make_ray_runner, summary
    from egox_ros.node import make_backend

    find_bags(in_dir)                     # a wrong IN_DIR fails before Ray starts
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"OUT_DIR {out_dir} exists and is not a directory")
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ConfigError(f"OUT_DIR {out_dir} is inside IN_DIR {in_dir}: its bags would be "
                          "read as input; choose a directory outside IN_DIR")
    if num_cpus is not None and address != "auto":
        raise ConfigError("--num-cpus sizes the local Ray of --ray auto; a cluster at "
                          f"{address!r} has its own")
    warned: list[str] = []
    with ray_session(address, num_cpus=num_cpus):
        runner, in_flight = make_ray_runner(cfg, make_backend, gpus_per_task=gpus_per_task,
                                            cpus_per_task=cpus_per_task,
                                            max_in_flight=max_in_flight)
        with tqdm(total=0, unit="clip", desc="convert", disable=not show_progress) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            results = convert_dir(in_dir, out_dir, cfg, runner, namespace=namespace,
                                  node_name=node_name, remap=remap, max_in_flight=in_flight,
                                  progress=progress,
                                  on_bad_input=lambda c, m, first: first and warned.append(m))
    for message in warned:
        typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)
    for r in results:
        line = f"{r.status:8s}{r.name}"
        if r.status == "done":
            line += f": {r.clips} clips, {r.ego_frames} ego frames in {r.seconds:.1f} s"
        elif r.status == "skipped":
            line += ": output exists (finished by an earlier run)"
        else:
            line += f": {r.reason}"
        typer.secho(line, err=True, fg=typer.colors.RED if r.status == "failed" else None)
    report = summary(results)
    typer.echo(json.dumps(report))
    if report["failed"]:
        raise typer.Exit(1)


@app.command("export-lerobot")
def export_lerobot(
        source: Path = typer.Argument(..., metavar="BAG_OR_DIR",
                                      help="a bag, or a directory of bags (one or more "
                                           "episodes each)"),
        out_dir: Path = typer.Argument(..., help="LeRobot v3 dataset directory: created, or "
                                                 "appended to"),
        fps: int = typer.Option(..., "--fps", help="frames per second of the dataset"),
        with_bags: Optional[Path] = typer.Option(
            None, "--with", metavar="BAG_OR_DIR",
            help="read together with each bag: a bag (for one bag) or a directory with a bag "
                 "of the same name per bag, e.g. what egox convert wrote (the ego topics)"),
        camera: list[str] = typer.Option(
            [], "--camera", metavar="NAME=TOPIC",
            help="a camera (Image or CompressedImage topic) as observation.images.NAME; "
                 "default: exo=/exo/image_raw and ego=/egox/ego/image"),
        state: list[str] = typer.Option([], "--state", metavar="TOPIC",
                                        help="JointState / PoseStamped / Twist(Stamped) "
                                             "topic, or tf:TARGET:SOURCE (SOURCE's pose in "
                                             "TARGET from /tf, /tf_static), concatenated "
                                             "into observation.state"),
        action: list[str] = typer.Option([], "--action", metavar="TOPIC",
                                         help="the same kinds of topic, into action"),
        task: str = typer.Option("", help="task text of the episodes (default: the bag's "
                                          "directory name)"),
        min_quality: str = typer.Option(
            "", "--min-quality", metavar="EXPR",
            help="keep only clips whose ~/clip_quality scores pass, e.g. "
                 "'prior_psnr_db>=20 and prior_coverage>=0.5' (docs/lerobot.md)"),
        quality_topic: str = typer.Option("/egox/clip_quality", "--quality-topic",
                                          help="where the clip scores are"),
        marker: str = typer.Option("", "--marker", metavar="TOPIC",
                                   help="each message on TOPIC starts a new episode"),
        max_gap: float = typer.Option(0.0, "--max-gap", min=0.0,
                                      help="seconds between neighbouring samples of a stream "
                                           "beyond which it has a gap (0: 1.5 / fps)"),
        min_frames: int = typer.Option(1, "--min-frames", min=1,
                                       help="shorter pieces between gaps are left out"),
        vcodec: str = typer.Option("h264", help="video encoder: h264 or libsvtav1")) -> None:
    """Export recorded bags (exo, generated ego, robot state/action) as a LeRobot v3
    dataset; gaps and clips below --min-quality split episodes and are reported, never
    filled. Last line: a JSON summary."""
    from egox_ros.lerobot_export import ExportConfig
    from egox_ros.lerobot_export import export_lerobot as run_export

    bad = [c for c in camera if "=" not in c]
    if bad:
        raise ConfigError(f"--camera {bad[0]!r} must be NAME=TOPIC, e.g. "
                          "ego=/egox/ego/image")
    cameras = dict(c.split("=", 1) for c in camera) or {"exo": "/exo/image_raw",
                                                        "ego": "/egox/ego/image"}
    config = ExportConfig(fps=fps, cameras=cameras, state=tuple(state), action=tuple(action),
                          task=task, min_quality=min_quality, quality_topic=quality_topic,
                          marker_topic=marker, max_gap_s=max_gap, min_frames=min_frames,
                          vcodec=vcodec)
    report = run_export(source, out_dir, config, with_bags=with_bags)
    for gap in report["gaps"]:
        typer.secho(f"warning: gap on {gap['topic']} in {gap['bag']}: {gap['frames']} frame(s) "
                    f"from {gap['from_ns']} ns, episode split there", err=True,
                    fg=typer.colors.YELLOW)
    for clip in report["excluded_clips"]:
        typer.secho(f"left out: clip {clip['first_stamp_ns']}..{clip['last_stamp_ns']} ns of "
                    f"{clip['bag']} fails --min-quality", err=True, fg=typer.colors.YELLOW)
    typer.echo(json.dumps({
        "dataset": str(out_dir), "episodes": len(report["episodes"]),
        "frames": report["frames"], "total_episodes": report["total_episodes"],
        "total_frames": report["total_frames"], "gaps": len(report["gaps"]),
        "excluded_clips": [[c["first_stamp_ns"], c["last_stamp_ns"]]
                           for c in report["excluded_clips"]]}))


@app.command()
@with_settings(EgoxConfig)
def params(output_format: str = typer.Option("yaml", "--format",
                                             help="yaml (a ROS 2 parameter file) or markdown"),
           config: Optional[Path] = typer.Option(None, help="start from this parameter file"),
           settings: dict = None) -> None:
    """Print every parameter of the egox node with its default (or the --config / flag
    value), allowed values and description: the source of config/egox.yaml."""
    from egox_model.config import format_params_file, format_params_table
    from egox_ros.params import YAML_HEADER, load_config

    cfg = load_config(config, "egox", settings)
    if output_format == "yaml":
        typer.echo(format_params_file(cfg, "egox", YAML_HEADER), nl=False)
    elif output_format == "markdown":
        typer.echo(format_params_table(cfg), nl=False)
    else:
        raise ConfigError(f"--format {output_format!r}: use yaml or markdown")


@bench_app.command("burst")
def bench_burst(json_out: bool = typer.Option(False, "--json",
                                              help="last line: one JSON object"),
                clips: int = typer.Option(20, min=1, help="clips in the burst"),
                queue_size: int = typer.Option(2, min=1, help="the node's queue_size"),
                depth: int = typer.Option(1000, min=1, help="subscription_depth (reliable)")
                ) -> None:
    """A burst of clips published unpaced into the node: clips out, drops by cause, and
    RSS before / peak / after beside the resting baseline."""
    import tempfile

    from egox_ros.bench_burst import bench_burst as run_burst
    from egox_ros.bench_burst import format_burst

    local_ros_env(Path(tempfile.mkdtemp(prefix="egox-bench-")))
    result = run_burst(clips=clips, queue_size=queue_size, depth=depth)
    typer.echo(format_burst(result))
    if json_out:
        typer.echo(json.dumps(result))


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
@with_settings(GeneratorConfig)
def demo(out: Path = typer.Option(Path("out/demo"), "--out", "-o", help="output directory"),
         seed: int = typer.Option(0, min=0, help="scene seed"),
         ros: bool = typer.Option(True, help="also run the scene through ROS 2 (DIR/bag/)"),
         depth: str = typer.Option("synthetic", "--depth",
                                   help="synthetic (estimates with known fusion parameters) "
                                        "or estimate (--perception.depth_model DIR, "
                                        "docs/perception.md)"),
         settings: dict = None) -> None:
    """Synthetic scene -> prior -> generator -> files, then the same scene through ROS 2.
    Every generator setting is a flag (`--backend wan --wan.model_dir DIR
    --wan.num_inference_steps 20`; `egox params`); `--depth estimate` treats the exo camera
    as plain RGB (`--perception.depth_model DIR`)."""
    from egox_ros.ros_demo import run_demo_with_ros

    config = from_flat(GeneratorConfig, settings)
    out.mkdir(parents=True, exist_ok=True)
    local_ros_env(out)
    report = run_demo_with_ros(out, seed=seed, config=config, ros=ros, depth=depth)
    keys = ("backend", "frames", "ego_messages", "stamps_match", "latency_ms")
    typer.echo(json.dumps({k: report.get(k) for k in keys + ("lerobot_frames",)}))
    typer.echo(f"wrote {out}/: exo.mp4 prior.mp4 ego.mp4 preview.png report.json"
               + (" bag/ lerobot/" if ros else ""))


def main() -> None:
    """Console-script entry point (`egox`): user errors end as one line, exit status 2."""
    run(app)


if __name__ == "__main__":
    main()
