"""A LeRobot dataset v3.0 writer (pyarrow + PyAV), following huggingface/lerobot's
`lerobot/datasets` (codebase_version "v3.0") file for file:

    meta/info.json                 codebase_version, fps, features, totals, paths, splits
    meta/stats.json                per-feature stats over the whole dataset (stats.py)
    meta/tasks.parquet             task_index, indexed by the task text (pandas index)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, tasks,
                                   length, data/chunk_index, data/file_index,
                                   dataset_from_index, dataset_to_index,
                                   videos/<key>/{chunk_index, file_index, from_timestamp,
                                   to_timestamp}, meta/episodes/{chunk_index, file_index},
                                   stats/<feature>/<stat>
    data/chunk-000/file-000.parquet            one row per frame: the vector features,
                                   timestamp (= frame_index / fps), frame_index,
                                   episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4        one video per camera; episodes follow each
                                   other in it, located by from/to_timestamp

Episodes are added one at a time (`add_episode`); `close()` writes the tables and metadata.
As lerobot does, an episode starts a new data file once the current one holds
`data_files_size_in_mb` (in memory, before compression) and a new video file once the
camera's holds `video_files_size_in_mb` of encoded frames (the encoder's lookahead, a few
dozen frames, counts late); an episode never spans two files. An
existing dataset is appended to: its features and fps must match, its file sizes apply, and
(as lerobot does when it resumes recording) this writer's episodes go to the next data,
video and episodes file after the latest episode's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from egox_model.errors import ConfigError, InputError
from egox_model.lerobot.stats import aggregate_stats, feature_stats, image_stats
from egox_model.video import VideoWriter

__all__ = ["CODEBASE_VERSION", "DATA_PATH", "EPISODES_PATH", "LeRobotWriter", "VIDEO_PATH",
           "read_stats", "video_key"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000                 # files per chunk directory
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
INFO_PATH, STATS_PATH, TASKS_PATH = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
STATS_SAMPLE_FRAMES = 100          # frames per episode and camera sampled for image stats
STATS_SAMPLE_SIZE = 64             # ... subsampled to at most this many pixels a side


def video_key(camera: str) -> str:
    """The feature key of a camera: observation.images.<camera>."""
    return f"observation.images.{camera}"


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    """lerobot's update_chunk_file_indices."""
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def read_stats(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json as arrays ({} when absent)."""
    path = Path(root) / STATS_PATH
    if not path.exists():
        return {}
    return {k: {s: np.asarray(v) for s, v in d.items()}
            for k, d in json.loads(path.read_text()).items()}


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes DataFrame({"task_index": ...}, index=tasks)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _read_tasks(root: Path) -> list[str]:
    table = pq.read_table(root / TASKS_PATH)
    order = np.argsort(table.column("task_index").to_numpy())
    return [table.column("__index_level_0__")[int(i)].as_py() for i in order]


def _video_info(path: Path) -> dict[str, Any]:
    """features[<video>]["info"] as lerobot's get_video_info reads it back."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"video.height": stream.height, "video.width": stream.width,
                "video.codec": stream.codec.canonical_name, "video.pix_fmt": stream.pix_fmt,
                "video.is_depth_map": False, "video.fps": int(stream.base_rate),
                "video.channels": 3, "has_audio": bool(container.streams.audio)}


class LeRobotWriter:
    """Writes (or appends to) the LeRobot v3 dataset at `root`.

    `vectors`: feature key -> component names (float32 vectors, e.g. "observation.state",
    "action"); `cameras`: camera name -> (height, width) of its frames (feature
    `observation.images.<name>`, a video). Use as a context manager, or call `close()`.
    """

    def __init__(self, root: str | Path, *, fps: int, vectors: Mapping[str, list[str]],
                 cameras: Mapping[str, tuple[int, int]], vcodec: str = "h264", crf: int = 23,
                 robot_type: str | None = None,
                 data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
                 video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB) -> None:
        if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
            raise ConfigError("LeRobot stores fps as a positive integer", key="fps", value=fps)
        bad = [k for k in [*vectors, *(video_key(c) for c in cameras)] if "/" in k]
        if bad:
            raise ConfigError(f"feature names must not contain '/': {bad}")
        self.root, self.fps, self.vcodec, self.crf = Path(root), fps, vcodec, crf
        self.cameras = dict(cameras)
        self.features: dict[str, dict] = {
            key: {"dtype": "float32", "shape": [len(names)], "names": list(names)}
            for key, names in vectors.items()}
        self.features.update({
            video_key(name): {"dtype": "video", "shape": [h, w, 3],
                              "names": ["height", "width", "channels"]}
            for name, (h, w) in self.cameras.items()})
        self.features.update(DEFAULT_FEATURES)
        self._videos: dict[str, VideoWriter] = {}
        self._rows: dict[str, list] = {key: [] for key in self.features
                                       if self.features[key]["dtype"] != "video"}
        self._data_bytes = 0                    # of the rows held for the current data file
        self._episodes: list[dict[str, Any]] = []
        self._episode_stats: list[dict] = []
        self._closed = False
        if (self.root / INFO_PATH).exists():
            self._open_existing()
        else:
            self._start_new(robot_type, data_files_size_in_mb, video_files_size_in_mb)

    # ---- dataset state ---------------------------------------------------------------------
    def _start_new(self, robot_type: str | None, data_mb: float, video_mb: float) -> None:
        self.info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type,
                     "total_episodes": 0, "total_frames": 0, "total_tasks": 0,
                     "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": data_mb,
                     "video_files_size_in_mb": video_mb, "fps": self.fps,
                     "splits": {}, "data_path": DATA_PATH,
                     "video_path": VIDEO_PATH if self.cameras else None,
                     "features": self.features}
        self.tasks: list[str] = []
        self.stats: dict = {}
        self.data_file = self.episodes_file = (0, 0)
        self.video_files = {video_key(c): (0, 0) for c in self.cameras}

    def _open_existing(self) -> None:
        info = json.loads((self.root / INFO_PATH).read_text())
        if info.get("codebase_version") != CODEBASE_VERSION:
            raise ConfigError(f"{self.root} is a LeRobot {info.get('codebase_version')} "
                              f"dataset; only {CODEBASE_VERSION} can be appended to")
        if info["fps"] != self.fps:
            raise ConfigError(f"{self.root} holds {info['fps']} fps; appending needs the same "
                              f"--fps, not {self.fps}")
        mine = {k: (v["dtype"], list(v["shape"]), v["names"]) for k, v in self.features.items()}
        theirs = {k: (v["dtype"], list(v["shape"]), v["names"])
                  for k, v in info["features"].items()}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"{self.root} has other features than this export: {diff} "
                              "differ; export to a new directory or use the same cameras, "
                              "sizes and state/action topics")
        self.features = info["features"]
        self.info, self.tasks, self.stats = info, _read_tasks(self.root), read_stats(self.root)
        last = sorted((self.root / "meta/episodes").glob("chunk-*/file-*.parquet"))[-1]
        table = pq.read_table(last)
        row = table.slice(table.num_rows - 1).to_pylist()[0]
        self.data_file = _next_file(row["data/chunk_index"], row["data/file_index"])
        self.episodes_file = _next_file(row["meta/episodes/chunk_index"],
                                        row["meta/episodes/file_index"])
        self.video_files = {video_key(c): _next_file(row[f"videos/{video_key(c)}/chunk_index"],
                                                     row[f"videos/{video_key(c)}/file_index"])
                            for c in self.cameras}

    @property
    def total_frames(self) -> int:
        """Frames in the dataset, this writer's included."""
        return self.info["total_frames"]

    # ---- episodes --------------------------------------------------------------------------
    def add_episode(self, *, task: str, length: int, vectors: Mapping[str, np.ndarray],
                    videos: Mapping[str, Iterable[np.ndarray]]) -> int:
        """Append one episode of `length` frames: `vectors` key -> (length, d), `videos`
        camera -> its `length` frames (H, W, 3) uint8 RGB, consumed one at a time. Returns
        the episode index."""
        if self._closed:
            raise RuntimeError("the writer is closed")
        if length < 1:
            raise InputError(f"an episode needs frames, got length {length}")
        missing = (set(self._rows) - set(DEFAULT_FEATURES) - set(vectors)) | \
            (set(self.cameras) - set(videos))
        if missing:
            raise InputError(f"episode lacks {sorted(missing)}")
        episode = self.info["total_episodes"]
        start = self.info["total_frames"]
        if self._data_bytes >= self.info["data_files_size_in_mb"] * 2**20:
            self._write_data()
            self.data_file = _next_file(*self.data_file)
        if task not in self.tasks:
            self.tasks.append(task)
        frame_index = np.arange(length)
        columns = {"timestamp": (frame_index / self.fps).astype(np.float32),
                   "frame_index": frame_index, "episode_index": np.full(length, episode),
                   "index": start + frame_index,
                   "task_index": np.full(length, self.tasks.index(task))}
        for key in self._rows:
            if key not in DEFAULT_FEATURES:
                values = np.asarray(vectors[key], np.float32)
                if values.shape != (length, self.features[key]["shape"][0]):
                    raise InputError(f"{key}: {values.shape} != ({length}, "
                                     f"{self.features[key]['shape'][0]})")
                columns[key] = values
        stats = {key: feature_stats(columns[key]) for key in self._rows}
        row: dict[str, Any] = {"episode_index": episode, "tasks": [task], "length": length,
                               "data/chunk_index": self.data_file[0],
                               "data/file_index": self.data_file[1],
                               "dataset_from_index": start, "dataset_to_index": start + length}
        for camera, frames in videos.items():
            key = video_key(camera)
            video, sampled = self._video(camera), []
            before = video.frames
            sample_at = set(np.linspace(0, length - 1, min(length, STATS_SAMPLE_FRAMES))
                            .round().astype(int).tolist())
            for i, rgb in enumerate(frames):
                video.add(rgb)
                if i in sample_at:
                    step = max(1, -(-max(rgb.shape[:2]) // STATS_SAMPLE_SIZE))
                    sampled.append(rgb[::step, ::step])
            if video.frames - before != length:
                raise InputError(f"camera {camera}: {video.frames - before} frames for an "
                                 f"episode of {length}")
            stats[key] = image_stats(np.stack(sampled), length)
            chunk, file = self.video_files[key]
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": before / self.fps,
                        f"videos/{key}/to_timestamp": (before + length) / self.fps})
        row.update({"meta/episodes/chunk_index": self.episodes_file[0],
                    "meta/episodes/file_index": self.episodes_file[1]})
        row.update({f"stats/{key}/{name}": value.tolist()
                    for key, feature in stats.items() for name, value in feature.items()})
        for key in self._rows:
            self._rows[key].append(columns[key])
            self._data_bytes += columns[key].nbytes
        self._episodes.append(row)
        self._episode_stats.append(stats)
        self.info["total_episodes"] += 1
        self.info["total_frames"] += length
        return episode

    def _video(self, camera: str) -> VideoWriter:
        """The camera's open video file, a new one when the current one is full."""
        key = video_key(camera)
        current = self._videos.get(camera)
        if current is not None and \
                current.bytes >= self.info["video_files_size_in_mb"] * 2**20:
            current.close()
            self.video_files[key] = _next_file(*self.video_files[key])
            del self._videos[camera]
        if camera not in self._videos:
            chunk, file = self.video_files[key]
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk,
                                                 file_index=file)
            # GOP 2: lerobot's choice, so any frame decodes after at most one other.
            self._videos[camera] = VideoWriter(path, self.fps, self.cameras[camera],
                                               self.vcodec, {"g": "2", "crf": str(self.crf)})
        return self._videos[camera]

    # ---- finishing -------------------------------------------------------------------------
    def close(self) -> None:
        """Finish the videos and write data, episodes, tasks, stats and info (info last)."""
        if self._closed:
            return
        self._closed = True
        for video in self._videos.values():
            video.close()
        if not self._episodes:
            return
        self._write_data()
        path = self.root / EPISODES_PATH.format(chunk_index=self.episodes_file[0],
                                                file_index=self.episodes_file[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self._episodes), path)
        pq.write_table(_tasks_table(self.tasks), self.root / TASKS_PATH)
        stats = aggregate_stats(([self.stats] if self.stats else []) + self._episode_stats)
        (self.root / STATS_PATH).write_text(json.dumps(
            {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()},
            indent=4))
        for camera, video in self._videos.items():        # each camera's last file
            feature = self.info["features"][video_key(camera)]
            feature.setdefault("info", _video_info(video.path))
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = {"train": f"0:{self.info['total_episodes']}"}
        (self.root / INFO_PATH).write_text(json.dumps(self.info, indent=4))

    def _write_data(self) -> None:
        """The rows held for the current data file, to it; then none are held."""
        arrays, fields = [], []
        for key, parts in self._rows.items():
            values = np.concatenate(parts)
            feature = self.features[key]
            if key in DEFAULT_FEATURES:
                arrays.append(pa.array(values.astype(feature["dtype"])))
            else:
                flat = pa.array(values.reshape(-1), pa.float32())
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
            fields.append(key)
        path = self.root / DATA_PATH.format(chunk_index=self.data_file[0],
                                            file_index=self.data_file[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, names=fields), path, compression="snappy")
        self._rows = {key: [] for key in self._rows}
        self._data_bytes = 0

    def __enter__(self) -> LeRobotWriter:
        return self

    def abort(self) -> None:
        """Stop without writing any table or metadata: the dataset stays as it was (video
        files of this writer may be left; the next writer overwrites them)."""
        if not self._closed:
            self._closed = True
            for video in self._videos.values():
                video.abort()

    def __exit__(self, exc_type, *exc: Any) -> None:
        self.close() if exc_type is None else self.abort()
