"""`egox convert --ray ADDRESS|auto IN_DIR OUT_DIR`: convert a directory of bags on Ray.

One Ray task per clip (the generator call); everything else stays in the driver:
- The driver reads the bags (`BagClips`: the same `ExoPipeline` as one-process conversion)
  and writes the output bags (`EgoBagWriter`). Reading and clip assembly are cheap next to a
  `wan` clip (minutes on a GPU), need the bags only where the driver runs (no shared file
  system on the cluster), and keep every output bag with a single writer that renames it into
  place when it is complete. Only clips and ego frames travel through Ray's object store; at
  most `max_in_flight` clips are out at once, which bounds the driver's memory.
- Tasks keep their generator between clips (a per-worker cache, `max_calls=0`: Ray would
  otherwise end a GPU task's worker after each call and reload the model every clip).
- Results are written in submission order, so each output bag gets the same messages in the
  same order as `egox convert IN_BAG OUT_BAG`.
- Overlapping clips (clip_stride < clip_length) of a backend that continues them (`wan`,
  `remote`) go out one at a time per bag: each continues from the output of the one before
  (`ClipStream`), as in one-process conversion, so the output is the same.
- Resumable: an output bag is written to `OUT_DIR/.partial/NAME` and renamed to
  `OUT_DIR/NAME` when complete; a bag whose output exists is skipped, a stale partial one
  (a killed run) is deleted and redone; one run per OUT_DIR (a lock). A failed bag
  (unreadable, missing topics, a task error) leaves nothing behind, is named in the summary
  with its reason, and is retried by the next run.

`auto` starts a private loopback-only Ray (`egox_model.ray_local`); an address connects to a
running cluster, whose nodes need this package installed.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from egox_model.clip import Clip
from egox_model.errors import ConfigError, EgoxError
from egox_model.generator.base import Generator
from egox_model.output import GeneratorOutput
from egox_ros.convert import BagClips, EgoBagWriter
from egox_ros.params import EgoxConfig

__all__ = ["BagResult", "ClipRunner", "LocalRunner", "RayRunner", "convert_dir",
           "default_gpus_per_task", "find_bags", "make_ray_runner", "summary"]

#: Folder under OUT_DIR holding output bags still being written.
PARTIAL_DIR = ".partial"


@dataclass
class BagResult:
    """What happened to one input bag: status 'done', 'skipped' (its output existed) or
    'failed' (with `reason`)."""

    name: str
    status: str = "pending"
    reason: str = ""
    clips: int = 0
    ego_frames: int = 0
    messages_read: int = 0
    seconds: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)


class ClipRunner(Protocol):
    """Runs generator calls somewhere: `submit` returns a handle at once, `result` waits."""

    def submit(self, clip: Clip) -> Any: ...

    def result(self, handle: Any) -> GeneratorOutput: ...

    def cancel(self, handle: Any) -> None: ...


class LocalRunner:
    """Runs each clip in this process when submitted (tests; no Ray)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def submit(self, clip: Clip) -> Any:
        try:
            return self.generator.generate(clip), None
        except Exception as err:  # noqa: BLE001 - re-raised by result(), like a task error
            return None, err

    def result(self, handle: Any) -> GeneratorOutput:
        output, err = handle
        if err is not None:
            raise err
        return output

    def cancel(self, handle: Any) -> None:
        pass


_WORKER_GENERATOR: tuple[str, Generator] | None = None


def _generate_on_worker(spec: tuple[str, Callable[[EgoxConfig], Generator], EgoxConfig],
                        clip: Clip) -> GeneratorOutput:
    """The Ray task: build the generator once per worker process and run (the run's token,
    not the factory's identity, decides: a factory pickled by value is a new object in every
    task), then generate one clip."""
    global _WORKER_GENERATOR
    token, factory, config = spec
    if _WORKER_GENERATOR is None or _WORKER_GENERATOR[0] != token:
        _WORKER_GENERATOR = None                     # free the old one before building
        _WORKER_GENERATOR = (token, factory(config))
    return _WORKER_GENERATOR[1].generate(clip)


class RayRunner:
    """One Ray task per clip with `num_gpus` / `num_cpus` each; Ray must be initialised."""

    def __init__(self, config: EgoxConfig, factory: Callable[[EgoxConfig], Generator], *,
                 gpus_per_task: float, cpus_per_task: float = 1.0) -> None:
        import ray
        self._ray = ray
        self.gpus_per_task, self.cpus_per_task = gpus_per_task, cpus_per_task
        self._task = ray.remote(num_gpus=gpus_per_task, num_cpus=cpus_per_task, max_calls=0,
                                max_retries=0)(_generate_on_worker)
        self._spec = ray.put((uuid.uuid4().hex, factory, config))

    def slots(self) -> int:
        """How many tasks the cluster can run at once; ConfigError when not one."""
        resources = self._ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        by_cpu = int(cpus // self.cpus_per_task) if self.cpus_per_task > 0 else sys.maxsize
        by_gpu = int(gpus // self.gpus_per_task) if self.gpus_per_task > 0 else sys.maxsize
        if min(by_cpu, by_gpu) < 1:
            raise ConfigError(f"the Ray cluster has {gpus:g} GPU(s) and {cpus:g} CPU(s): a "
                              f"task asking for {self.gpus_per_task:g} GPU(s) and "
                              f"{self.cpus_per_task:g} CPU(s) would never run; lower "
                              "--gpus-per-task / --cpus-per-task or add nodes",
                              key="gpus_per_task", value=self.gpus_per_task)
        return min(by_cpu, by_gpu)

    def submit(self, clip: Clip) -> Any:
        return self._task.remote(self._spec, clip)

    def result(self, handle: Any) -> GeneratorOutput:
        return self._ray.get(handle)

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=False)


def default_gpus_per_task(config: EgoxConfig) -> float:
    """1 for the `wan` backend unless it is told to run on the CPU; 0 for the others."""
    return 1.0 if config.backend == "wan" and config.wan.device != "cpu" else 0.0


def find_bags(in_dir: str | Path) -> list[Path]:
    """The bags of IN_DIR: its subdirectories (rosbag2 bags), sorted by name; hidden ones
    are left out."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise ConfigError(f"IN_DIR {in_dir} is not a directory; with --ray the arguments are "
                          "a directory of bags and an output directory")
    bags = sorted(p for p in in_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not bags:
        raise ConfigError(f"IN_DIR {in_dir} holds no bags (rosbag2 bag directories)")
    return bags


def _estimate_clips(bag: Path, config: EgoxConfig, **kwargs: Any) -> int:
    """Clips a bag will give, from its exo message count (for the progress bar only)."""
    try:
        with BagClips(bag, config, **kwargs) as clips:
            n = clips.exo_messages
    except (EgoxError, OSError):
        return 0
    length, stride = config.clip_length, config.clip_stride
    return 0 if n < length else (n - length) // stride + 1


def _fsync_tree(path: Path) -> None:
    for item in sorted(path.rglob("*")) + [path]:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(err: BaseException) -> str:
    """One line: the exception's type and message; for a Ray task's error, the task's own
    exception (Ray wraps it with the remote traceback)."""
    if type(err).__module__.startswith("ray."):
        cause = getattr(err, "cause", None)
        if cause is None:                                  # e.g. a worker that died
            lines = str(err).strip().splitlines()
            return f"{type(err).__name__}: {lines[-1] if lines else ''}"
        err = cause
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@dataclass
class _BagState:
    result: BagResult
    final: Path
    partial: Path
    writer: EgoBagWriter | None = None
    read_done: bool = False
    pending: int = 0
    started: float = field(default_factory=time.monotonic)


@contextmanager
def _exclusive(out_dir: Path) -> Iterator[Path]:
    """Hold OUT_DIR/.partial for this run: a second run on the same OUT_DIR is refused, and
    whatever .partial holds is a killed run's leftovers (deleted). Yields the folder."""
    partial_root = out_dir / PARTIAL_DIR
    partial_root.mkdir(parents=True, exist_ok=True)
    with open(partial_root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `egox convert --ray` is writing into {out_dir}; wait "
                              "for it or choose another OUT_DIR") from None
        for stale in partial_root.iterdir():
            if stale.name != ".lock":
                shutil.rmtree(stale)
        try:
            yield partial_root
        finally:
            if [p.name for p in partial_root.iterdir()] == [".lock"]:
                (partial_root / ".lock").unlink()
                partial_root.rmdir()


class _DirConversion:
    """The driver's loop: read bag after bag, send clips out (at most `max_in_flight`),
    write results back in submission order, finish or fail each bag."""

    def __init__(self, config: EgoxConfig, runner: ClipRunner, max_in_flight: int,
                 progress: Callable[[int, int], None] | None, writer_kwargs: dict[str, Any],
                 reader_kwargs: dict[str, Any]) -> None:
        self.config, self.runner = config, runner
        self.max_in_flight = max(1, max_in_flight)
        self.progress = progress
        self.writer_kwargs, self.reader_kwargs = writer_kwargs, reader_kwargs
        self.pending: deque[tuple[_BagState, Clip, Any]] = deque()
        self.expected: dict[str, int] = {}
        self.done = 0

    def tick(self) -> None:
        if self.progress is not None:
            self.progress(self.done, max(sum(self.expected.values()), self.done))

    def fail(self, state: _BagState, err: BaseException) -> None:
        """Stop a bag: its reason, its partial output deleted, its pending clips dropped."""
        if state.result.status == "failed":
            return
        state.result.status, state.result.reason = "failed", _reason(err)
        if state.writer is not None:
            try:
                state.writer.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - the partial bag is deleted anyway
                pass
            state.writer = None
        shutil.rmtree(state.partial, ignore_errors=True)

    def finish_if_complete(self, state: _BagState) -> None:
        """Close, fsync and rename a bag into place once it is read and fully written."""
        if state.result.status != "running" or not state.read_done or state.pending:
            return
        writer, state.writer = state.writer, None
        try:
            writer.__exit__(None, None, None)
            _fsync_tree(state.partial)
            os.replace(state.partial, state.final)      # atomic: complete or absent
        except OSError as err:
            self.fail(state, err)
            return
        state.result.status = "done"
        state.result.clips, state.result.ego_frames = writer.clips, writer.ego_frames
        state.result.seconds = round(time.monotonic() - state.started, 3)

    def drain_one(self) -> None:
        """Wait for the oldest clip out and write it (or drop it: its bag failed)."""
        state, clip, handle = self.pending.popleft()
        state.pending -= 1
        if state.result.status == "failed":
            self.runner.cancel(handle)
        else:
            try:
                state.writer.write(clip, self.runner.result(handle))
            except Exception as err:  # noqa: BLE001 - any task or write error fails the bag
                self.fail(state, err)
        self.done += 1
        self.tick()
        self.finish_if_complete(state)

    def read(self, bag: Path, state: _BagState) -> None:
        """Read one bag, sending its clips out as they complete. Overlapping clips of a
        backend that continues them go out one at a time: each needs the output of the one
        before (`ClipStream`), so a bag's clips then run in sequence, not in parallel."""
        name, result = bag.name, state.result
        estimate, submitted = self.expected[name], 0
        cfg = self.config
        in_sequence = cfg.clip_stride < cfg.clip_length and cfg.continues_clips
        result.status = "running"
        try:
            with BagClips(bag, self.config, **self.reader_kwargs) as clips:
                state.writer = EgoBagWriter(state.partial, self.config,
                                            **self.writer_kwargs).__enter__()
                for clip in clips:
                    while (len(self.pending) >= self.max_in_flight
                           or in_sequence and state.pending):
                        self.drain_one()
                    if result.status == "failed":       # a task of this bag failed
                        break
                    task = state.writer.stream.with_context(clip) if in_sequence else clip
                    self.pending.append((state, clip, self.runner.submit(task)))
                    state.pending += 1
                    submitted += 1
                    self.expected[name] = max(estimate, submitted)
                result.messages_read = clips.messages_read
                result.counters = clips.counters()
        except Exception as err:  # noqa: BLE001 - a corrupt bag fails alone, others go on
            self.fail(state, err)
        self.expected[name] = submitted
        state.read_done = True
        self.tick()
        self.finish_if_complete(state)


def convert_dir(in_dir: str | Path, out_dir: str | Path, config: EgoxConfig,
                runner: ClipRunner, *, namespace: str = "/", node_name: str = "egox",
                remap: dict[str, str] | None = None, max_in_flight: int = 2,
                progress: Callable[[int, int], None] | None = None,
                on_bad_input: Callable[[str, str, bool], None] | None = None
                ) -> list[BagResult]:
    """Convert every bag of `in_dir` into `out_dir/<bag name>`; one result per bag.

    Bags whose output exists are skipped. Clips go to `runner` as they are read, at most
    `max_in_flight` at a time, and are written in order. `progress(clips done, clips
    expected)`: the expected count is estimated from the exo message counts until every bag
    has been read. ConfigError when another run is writing into `out_dir`.
    """
    bags = find_bags(in_dir)
    out_dir = Path(out_dir)
    results = [BagResult(bag.name) for bag in bags]
    with _exclusive(out_dir) as partial_root:
        run = _DirConversion(config, runner, max_in_flight, progress,
                             writer_kwargs=dict(namespace=namespace, node_name=node_name),
                             reader_kwargs=dict(namespace=namespace, remap=remap,
                                                on_bad_input=on_bad_input))
        todo = []
        for bag, result in zip(bags, results):
            if (out_dir / bag.name).exists():
                result.status = "skipped"
            else:
                todo.append((bag, result))
                run.expected[bag.name] = _estimate_clips(bag, config, namespace=namespace,
                                                         remap=remap)
        run.tick()
        for bag, result in todo:
            run.read(bag, _BagState(result, out_dir / bag.name, partial_root / bag.name))
        while run.pending:
            run.drain_one()
    return results


def summary(results: list[BagResult]) -> dict[str, Any]:
    """JSON-ready: counts per status and each bag's result."""
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    counts = {s: by_status.get(s, 0) for s in ("done", "skipped", "failed")}
    return {"bags": len(results), **counts, "results": [asdict(r) for r in results]}


def make_ray_runner(config: EgoxConfig, factory: Callable[[EgoxConfig], Generator], *,
                    gpus_per_task: float | None, cpus_per_task: float,
                    max_in_flight: int) -> tuple[RayRunner, int]:
    """The runner for the connected cluster and the in-flight bound (0: twice its slots)."""
    gpus = default_gpus_per_task(config) if gpus_per_task is None else gpus_per_task
    if gpus < 0 or cpus_per_task < 0:
        raise ConfigError("--gpus-per-task and --cpus-per-task must be >= 0",
                          key="gpus_per_task", value=gpus)
    runner = RayRunner(config, factory, gpus_per_task=gpus, cpus_per_task=cpus_per_task)
    slots = runner.slots()
    return runner, max_in_flight if max_in_flight > 0 else 2 * slots
