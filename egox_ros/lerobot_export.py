"""`egox export-lerobot`: recorded bags (exo, generated ego, robot state) -> a LeRobot v3 dataset.

Per bag (or per segment between marker messages): the time range every stream covers is
cut into a grid at `fps` (t0, t0 + 1/fps, ...). At each grid time every camera gives its
nearest frame by header stamp, every state/action topic its value interpolated by stamp
(`egox_model.resample`: JointState positions and Twist linearly, PoseStamped position
linearly and orientation by slerp), every tf:TARGET:SOURCE pose its TF lookup
(`egox_ros.tf_tree`: the same interpolation along each moving link). A grid time that
falls in a gap of any stream (its bracketing samples more than `max_gap_s` apart) or inside
a clip rejected by `min_quality` (its `clip_quality` span, first to last exo stamp) is left
out, and the episode is split there: each gap and each rejected clip is reported, nothing
is filled. Each remaining run of
at least `min_frames` grid times is one episode (`egox_model.lerobot.LeRobotWriter`).

rclpy-free (reading: `egox_ros.bag_streams`). `meta/egox_export.json` records
each run: sources, the resampling method, episodes, gaps and the clips left out with their
scores.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from egox_model.errors import ConfigError
from egox_model.geometry.pose import c2w_to_pose
from egox_model.lerobot import LeRobotWriter
from egox_model.quality import QUALITY_KEYS
from egox_model.quality_filter import QualityFilter
from egox_model.resample import Bracket, bracket, frame_grid, runs
from egox_ros.bag_streams import BagStreams, is_tf, label, read_bag, read_frames
from egox_ros.errors import BagError
from egox_ros.tf_tree import TF_TOPIC

__all__ = ["ExportConfig", "RESAMPLING", "export_lerobot", "find_bags"]

RESAMPLING = ("grid t0 + k/fps over the span every stream covers; cameras: nearest frame by "
              "header stamp; JointState positions and Twist: linear interpolation by stamp; "
              "PoseStamped: position linear, orientation slerp; tf:TARGET:SOURCE: TF lookup "
              "(each moving link likewise); a grid time whose bracketing samples of any "
              "stream (each moving TF link included) are more than max_gap_s apart, or "
              "inside a clip that fails min_quality, is left out and the episode split "
              "there (never filled)")
NS = 1_000_000_000


@dataclass(frozen=True)
class ExportConfig:
    """What `egox export-lerobot` exports: cameras name -> image topic, state and action
    topics (concatenated in this order into observation.state and action), the episode's
    task text ('' = the bag's directory name), the quality filter expression ('' = keep
    every clip) and where the scores are, marker topic ('' = one episode per bag)."""

    fps: int
    cameras: dict[str, str]
    state: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    task: str = ""
    min_quality: str = ""
    quality_topic: str = "/egox/clip_quality"
    marker_topic: str = ""
    max_gap_s: float = 0.0          # 0: 1.5 frame periods
    min_frames: int = 1
    vcodec: str = "h264"

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps < 1:
            raise ConfigError("LeRobot stores fps as a positive integer, e.g. --fps 30",
                              key="fps", value=self.fps)
        if not self.cameras:
            raise ConfigError("name at least one camera: --camera NAME=TOPIC")
        bad = [n for n in self.cameras if not n or "/" in n or "." in n]
        if bad:
            raise ConfigError(f"camera names {bad}: use a plain word (it becomes the feature "
                              "observation.images.NAME)")
        if self.max_gap_s < 0 or self.min_frames < 1:
            raise ConfigError(f"max_gap_s {self.max_gap_s} must be >= 0 and min_frames "
                              f"{self.min_frames} >= 1")
        if self.min_quality:
            QualityFilter(self.min_quality, known_keys=QUALITY_KEYS)
        if self.vcodec not in ("h264", "hevc", "libsvtav1"):
            raise ConfigError("LeRobot's encoders are h264, hevc and libsvtav1", key="vcodec",
                              value=self.vcodec)
        bad = [s for s in (*self.state, *self.action)
               if is_tf(s) and (s.count(":") != 2 or not all(s.split(":")[1:]))]
        if bad:
            raise ConfigError(f"{bad}: a pose from TF is tf:TARGET_FRAME:SOURCE_FRAME, e.g. "
                              "tf:map:ego_camera_optical_frame (SOURCE's pose in TARGET)")

    @property
    def max_gap_ns(self) -> int:
        return int(round((self.max_gap_s or 1.5 / self.fps) * NS))


def _gaps(name: str, covered: np.ndarray, grid: np.ndarray) -> list[dict[str, Any]]:
    return [{"topic": name, "from_ns": int(grid[a]), "to_ns": int(grid[b - 1]), "frames": b - a}
            for a, b in runs(~covered)]


@dataclass
class _Plan:
    """The episodes of one bag: [start, stop) grid ranges, the grid, brackets per stream."""

    grid: np.ndarray
    segments: list[tuple[int, int]]
    cameras: dict[str, Bracket]
    vectors: dict[str, np.ndarray]         # state/action spec -> (G, d) values, NaN in gaps
    names: dict[str, list[str]]
    gaps: list[dict[str, Any]]
    excluded: list[dict[str, Any]]
    short: list[dict[str, Any]]


def _plan(bag: BagStreams, config: ExportConfig, keep: QualityFilter | None) -> _Plan:
    streams = {**{t: s for t, s in bag.camera_stamps.items()},
               **{t: v.stamps for t, v in bag.vectors.items()},
               **{f"{TF_TOPIC}:{child}": stamps for links in bag.tf_links.values()
                  for child, stamps in links.items()}}
    start = max(int(s[0]) for s in streams.values())
    stop = min(int(s[-1]) for s in streams.values())
    if stop < start:
        spans = {t: (int(s[0]), int(s[-1])) for t, s in streams.items()}
        raise BagError(f"{bag.name}: the streams do not overlap in time (first, last stamp "
                       f"ns): {spans}")
    grid = frame_grid(start, stop, config.fps)
    brackets = {t: bracket(s, grid, config.max_gap_ns) for t, s in streams.items()}
    ok = np.ones(len(grid), bool)
    gaps = []
    for topic, b in brackets.items():
        ok &= b.covered
        gaps += _gaps(topic, b.covered, grid)
    excluded = []
    for values in bag.clips:
        if keep is not None and not keep(values):
            first, last = int(values["first_stamp_ns"]), int(values["last_stamp_ns"])
            ok &= ~((grid >= first) & (grid <= last))
            excluded.append({"bag": bag.name, "first_stamp_ns": first,
                             "last_stamp_ns": last, "scores": values})
    cuts = set(np.searchsorted(grid, bag.markers, side="left").tolist())
    segments, short = [], []
    for a, b in runs(ok):
        bounds = [a, *sorted(c for c in cuts if a < c < b), b]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi - lo >= config.min_frames:
                segments.append((lo, hi))
            else:
                short.append({"bag": bag.name, "from_ns": int(grid[lo]),
                              "frames": hi - lo})
    for gap in gaps:
        gap["bag"] = bag.name
    cameras = {t: brackets[t] for t in bag.camera_stamps}
    vectors = {t: brackets[t].interpolate(v.values, v.quaternions) for t, v in bag.vectors.items()}
    names = {t: v.names for t, v in bag.vectors.items()}
    for spec in bag.tf_links:
        _, target, source = spec.split(":")
        vectors[spec] = np.full((len(grid), 7), np.nan)
        for k in (k for lo, hi in segments for k in range(lo, hi)):
            vectors[spec][k] = np.concatenate(c2w_to_pose(bag.tf.lookup(target, source,
                                                                        int(grid[k]))))
        names[spec] = [f"{label(source)}.{c}" for c in ("x", "y", "z", "qx", "qy", "qz", "qw")]
    return _Plan(grid, segments, cameras, vectors, names, gaps, excluded, short)


def _is_bag(path: Path) -> bool:
    return path.is_file() or (path / "metadata.yaml").exists()


def find_bags(source: Path, with_bags: Path | None = None) -> list[list[Path]]:
    """The bags to export, each with the bag read together with it: `source` itself when it
    is a bag, else the bags directly inside it, sorted by name. `with_bags`: a bag read with
    a single `source` bag, or a directory holding a bag of the same name for each (what
    `egox convert` / `egox convert --ray` write: the ego topics beside the recorded ones)."""
    source = Path(source)
    if not source.exists():
        raise BagError(f"{source} does not exist")
    bags = [source] if _is_bag(source) else sorted(p for p in source.iterdir() if _is_bag(p))
    if not bags:
        raise BagError(f"{source} is neither a bag (no metadata.yaml) nor a directory of bags")
    if with_bags is None:
        return [[bag] for bag in bags]
    with_bags = Path(with_bags)
    if _is_bag(with_bags):
        if len(bags) > 1:
            raise BagError(f"--with {with_bags} is one bag but {source} holds {len(bags)}: "
                           "give a directory with a bag of the same name for each")
        return [[bags[0], with_bags]]
    missing = [b.name for b in bags if not _is_bag(with_bags / b.name)]
    if missing:
        raise BagError(f"--with {with_bags} has no bag for {missing}")
    return [[bag, with_bags / bag.name] for bag in bags]


def export_lerobot(source: str | Path, out_dir: str | Path, config: ExportConfig, *,
                   with_bags: str | Path | None = None) -> dict[str, Any]:
    """Export the bag (or directory of bags) `source`, each read together with its
    `with_bags` bag (`find_bags`), into the LeRobot v3 dataset `out_dir` (created, or
    appended to); returns the run's report, also appended to meta/egox_export.json."""
    out_dir = Path(out_dir)
    keep = (QualityFilter(config.min_quality, known_keys=QUALITY_KEYS)
            if config.min_quality else None)
    bags = find_bags(Path(source), None if with_bags is None else Path(with_bags))
    report: dict[str, Any] = {"sources": [[str(p) for p in b] for b in bags], "fps": config.fps,
                              "max_gap_s": config.max_gap_ns / NS, "resampling": RESAMPLING,
                              "min_quality": config.min_quality, "episodes": [], "gaps": [],
                              "excluded_clips": [], "short_segments": []}
    plans = [(bag, _plan(bag, config, keep)) for bag in (
        read_bag(paths, cameras=list(config.cameras.values()),
                 specs=[*config.state, *config.action], quality_topic=config.quality_topic,
                 quality_required=bool(config.min_quality), marker_topic=config.marker_topic)
        for paths in bags)]
    groups = {key: specs for key, specs in (("observation.state", config.state),
                                            ("action", config.action)) if specs}
    writer: LeRobotWriter | None = None
    open_readers: list[Iterator[np.ndarray]] = []      # closed at the end, even on errors
    try:
        for bag, plan in plans:
            report["gaps"] += plan.gaps
            report["excluded_clips"] += plan.excluded
            report["short_segments"] += plan.short
            if not plan.segments:
                continue
            picks = {t: np.concatenate([b.nearest()[lo:hi] for lo, hi in plan.segments])
                     for t, b in plan.cameras.items()}
            readers = {name: read_frames(bag.paths, topic, bag.camera_stamps[topic], picks[topic])
                       for name, topic in config.cameras.items()}
            open_readers += readers.values()
            firsts = {name: next(gen) for name, gen in readers.items()}
            frames = {name: itertools.chain([firsts[name]], gen)
                      for name, gen in readers.items()}
            if writer is None:
                writer = LeRobotWriter(
                    out_dir, fps=config.fps, vcodec=config.vcodec,
                    vectors={key: [n for t in specs for n in plan.names[t]]
                             for key, specs in groups.items()},
                    cameras={name: f.shape[:2] for name, f in firsts.items()})
            for key, specs in groups.items():
                names = [n for t in specs for n in plan.names[t]]
                if writer.features[key]["names"] != names:
                    raise BagError(f"{bag.name}: {key} would be {names}, the dataset's is "
                                   f"{writer.features[key]['names']}")
            for lo, hi in plan.segments:
                vectors = {key: np.concatenate([plan.vectors[t][lo:hi] for t in specs], axis=1)
                           for key, specs in groups.items()}
                index = writer.add_episode(
                    task=config.task or bag.path.name, length=hi - lo, vectors=vectors,
                    videos={name: itertools.islice(gen, hi - lo) for name, gen in frames.items()})
                first, last = int(plan.grid[lo]), int(plan.grid[hi - 1])
                report["episodes"].append({
                    "episode_index": index, "bag": bag.name, "from_ns": first,
                    "to_ns": last, "frames": hi - lo,
                    "clips": [c for c in bag.clips if int(c["first_stamp_ns"]) <= last
                              and int(c["last_stamp_ns"]) >= first]})
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for reader in open_readers:
            reader.close()
    if writer is None:
        rejected = [(c["first_stamp_ns"], c["last_stamp_ns"]) for c in report["excluded_clips"]]
        gaps = [(g["topic"], g["from_ns"], g["to_ns"]) for g in report["gaps"]]
        raise BagError(f"no episode to export from {source}: every grid time fell in a gap "
                       f"{gaps[:5]} or a clip failing --min-quality {rejected[:5]} (first "
                       "five of each, ns); see --max-gap, --min-quality")
    writer.close()
    report["frames"] = sum(e["frames"] for e in report["episodes"])
    report["total_episodes"] = writer.info["total_episodes"]
    report["total_frames"] = writer.total_frames
    log = out_dir / "meta" / "egox_export.json"
    runs_so_far = json.loads(log.read_text())["runs"] if log.exists() else []
    log.write_text(json.dumps({"runs": runs_so_far + [report]}, indent=2) + "\n")
    return report
