"""The `egox` node: exo camera + poses in, synthesized ego video out.

Thin by design: callbacks decode and buffer messages (`ExoPipeline`) and put complete clips
on a bounded queue; one worker thread owns the generator, runs it and publishes. Every bad
input is counted and logged once per cause; /diagnostics reports the counters.

Topics (relative, remappable): exo/image_raw or exo/image_raw/compressed, exo/camera_info,
exo/depth, exo/mask, exo/pose, ego/pose, prompt in (or the camera poses from /tf and /tf_static
through tf2_ros, where a ROS 2 workspace provides it); ~/ego/image, ~/ego/camera_info,
~/ego_prior/image, ~/ego_prior/camera_info, ~/clip_quality (one DiagnosticArray per clip,
stamped with its first exo stamp: egox_model.quality) and /diagnostics out.
"""
from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter, deque
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from egox_model.clip import Clip
from egox_model.clip_stream import ClipStream
from egox_model.errors import ConfigError, EgoxError
from egox_model.generator import Generator, make_generator
from egox_model.quality import QUALITY_KEYS, clip_quality
from egox_model.quality_filter import QualityFilter
from egox_ros.messages import RclpyFactory
from egox_ros.params import EgoxConfig, declare_config
from egox_ros.pipeline import ExoPipeline, output_messages
from egox_ros.spin import spin_node
from egox_ros.tf2_lookup import Tf2Lookup, tf2_ros_missing
from egox_ros.work_queue import BoundedQueue

__all__ = ["EgoxNode", "main", "make_backend", "release_free_memory"]


def release_free_memory() -> bool:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`); False where unavailable.

    After a burst, glibc keeps the arenas that held the burst's frames: 0.7-1.2 GB of them
    in the measured burst (docs/ros.md, "Stamps, bursts and diagnostics")."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


class _Abandon(Exception):
    """Raised from the generator's step callback to abandon the clip in flight at shutdown."""


def make_backend(config: EgoxConfig) -> Generator:
    """The generator named by `config.backend`, built from the config tree, behind the
    perception models when `perception.*` names any (depth_source 'estimate': they run on
    the worker, inside generate)."""
    from egox_model.perception.perceive import with_perception

    try:
        return with_perception(make_generator(config), config)
    except EgoxError as err:
        raise ConfigError(f"backend={config.backend!r} could not be built: {err}") from err


class EgoxNode(Node):
    """Node `egox`. `config` / `generator` let in-process users (tests, demo) skip defaults."""

    def __init__(self, *, config: EgoxConfig | None = None, generator: Generator | None = None,
                 node_name: str = "egox", **node_kwargs: Any) -> None:
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.queue: BoundedQueue | None = None
        super().__init__(node_name, **node_kwargs)
        self.config = cfg = declare_config(self, config)
        self.tf = self._tf_lookup(cfg)
        self.generator = generator if generator is not None else make_backend(cfg)
        # max_wait_s on the monotonic clock; the ROS clock checks stamps unless it is sim time.
        self.pipeline = ExoPipeline(cfg, on_bad_input=self._on_bad_input,
                                    clock_ns=time.monotonic_ns, reference_ns=self._wall_ns,
                                    tf=self.tf)
        self.queue = BoundedQueue(cfg.queue_size, cfg.overflow_policy)
        self.factory = RclpyFactory()
        # overlapping clips: the worker's only; keeps the last clip's shared frames
        self.stream = ClipStream(keep=cfg.clip_length - cfg.clip_stride)
        self.counters: Counter[str] = Counter()
        self.latencies_ms: list[float] = []        # last exo frame in -> first ego frame out
        self.backend_ms: list[float] = []          # generator.generate() alone
        self.stage_ms: dict[str, float] = {}       # last clip: assemble/queue/backend/publish
        self.last_error = ""
        self._lock = threading.Lock()
        self._drop_history: deque[tuple[float, Counter[str]]] = deque()   # (monotonic, totals)
        self.last_diagnostics: DiagnosticStatus | None = None
        self._activity: tuple | None = None       # input/output counts at the last period
        self._idle_trimmed = False

        # 1. Publishers: reliable, KEEP_LAST deep enough for a whole clip (REP 2003).
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.publisher_depth,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
        self._pubs = {name: self.create_publisher(Image if name.endswith("image") else CameraInfo,
                                                  f"~/{name}", pub_qos)
                      for name in ("ego/image", "ego/camera_info")}
        if cfg.publish_prior:
            self._pubs["ego_prior/image"] = self.create_publisher(Image, "~/ego_prior/image",
                                                                  pub_qos)
            self._pubs["ego_prior/camera_info"] = self.create_publisher(
                CameraInfo, "~/ego_prior/camera_info", pub_qos)
        self._quality_pub = self.create_publisher(DiagnosticArray, "~/clip_quality", pub_qos)
        self._quality_warn = (QualityFilter(cfg.clip_quality_warn, known_keys=QUALITY_KEYS)
                              if cfg.clip_quality_warn else None)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # 2. Subscriptions: sensor-data QoS (REP 2003) by default, which matches every
        # publisher; 'reliable' for lossless input from reliable publishers (between processes
        # best effort lost over half of the 1 MB frames here, docs/ros.md). BEST_AVAILABLE is
        # resolved once, from the publishers present when the subscription is created.
        reliability = {"sensor_data": ReliabilityPolicy.BEST_EFFORT,
                       "reliable": ReliabilityPolicy.RELIABLE,
                       "best_available": ReliabilityPolicy.BEST_AVAILABLE}[cfg.subscription_qos]
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.subscription_depth,
                             reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        p = self.pipeline
        image_type = Image if cfg.image_transport == "raw" else CompressedImage
        self.create_subscription(image_type, cfg.exo_topic, self._cb(p.on_exo_image), sub_qos)
        self.create_subscription(CameraInfo, "exo/camera_info", self._cb(p.on_camera_info),
                                 sub_qos)
        if cfg.ego_pose_source == "topic":
            ego_type = PoseStamped if cfg.ego_pose_type == "pose" else Odometry
            self.create_subscription(ego_type, "ego/pose", self._cb(p.on_ego_pose), sub_qos)
        if cfg.exo_pose_source == "topic":
            self.create_subscription(PoseStamped, "exo/pose", self._cb(p.on_exo_pose), sub_qos)
        if cfg.depth_source == "topic":
            self.create_subscription(Image, "exo/depth", self._cb(p.on_depth), sub_qos)
        if cfg.use_mask:
            self.create_subscription(Image, "exo/mask", self._cb(p.on_mask), sub_qos)
        # The prompt: reliable KEEP_LAST 1, twice. A transient-local subscription receives a
        # latched prompt published before this node started, but (DDS durability rule, seen
        # with rclpy here) matches no volatile publisher; the volatile one takes those. A
        # latched publisher matches both: _on_prompt drops the second copy.
        self._prompt_seq: dict[bytes, int] = {}
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
        for durability in (DurabilityPolicy.TRANSIENT_LOCAL, DurabilityPolicy.VOLATILE):
            self.create_subscription(
                String, "prompt", self._on_prompt,
                QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                           reliability=ReliabilityPolicy.RELIABLE, durability=durability),
                event_callbacks=quiet if durability == DurabilityPolicy.TRANSIENT_LOCAL
                else None)

        # 3. Worker and diagnostics.
        self._worker = threading.Thread(target=self._work, name="egox-worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self.publish_diagnostics)
        missing = tf2_ros_missing()
        if missing:
            self.get_logger().info(f"tf2_ros is not installed ({missing}; it comes with a ROS 2 "
                                   "workspace, no wheel exists): camera poses come from topics "
                                   "and parameters, not from TF")
        self.get_logger().info(
            f"egox ready: backend={self.generator.name}, clip {cfg.clip_length} frames at "
            f"{cfg.fps} fps, exo input {self.resolve_topic_name(cfg.exo_topic)}")

    def _tf_lookup(self, cfg: EgoxConfig) -> Tf2Lookup | None:
        """tf2_ros' buffer and listener when the config reads camera poses from TF; a
        ConfigError for such a config where tf2_ros is not installed."""
        if not cfg.tf_frames:
            return None
        missing = tf2_ros_missing()
        if missing:
            key = "ego_pose_source" if "ego_pose" in cfg.tf_frames else "exo_pose_source"
            raise ConfigError(f"reading camera poses from TF needs tf2_ros ({missing}): source "
                              "a ROS 2 workspace with it (apt install ros-<distro>-tf2-ros; "
                              "no wheel exists), or use 'topic' (`egox convert` reads TF from "
                              "bags without it)", key=key, value="tf")
        return Tf2Lookup(self)

    # ---- callbacks: decode, buffer, enqueue; never inference -------------------------------
    def _cb(self, handler):
        def callback(msg: Any) -> None:
            received = time.monotonic()         # latency counts this message's decoding too
            clips = handler(msg)
            if clips:
                for clip in clips:
                    clip.meta["egox_enqueued"] = time.monotonic()
                    self._enqueue(clip, received)
        return callback

    def _on_prompt(self, msg: String, info: dict[str, Any]) -> None:
        """A prompt from either subscription; a publisher's message already taken through the
        other one (same publisher, sequence number not newer) is skipped."""
        gid, seq = info.get("publisher_gid"), info.get("publication_sequence_number")
        if gid is not None and seq is not None:
            key = bytes(gid["data"]) if isinstance(gid, dict) else bytes(gid)
            if seq <= self._prompt_seq.get(key, 0):
                return
            self._prompt_seq[key] = seq
        self.pipeline.on_prompt(msg)

    def _enqueue(self, clip: Clip, received: float) -> None:
        with self._lock:
            self.counters["clips_complete"] += 1
        if self.queue.put((clip, received)) is not None:
            self._on_bad_input("queue_overflow",
                               f"clip queue full ({self.queue.maxsize}); policy "
                               f"{self.queue.policy} dropped a clip", None)

    def _on_bad_input(self, cause: str, message: str, first: bool | None) -> None:
        if first is None:                       # not counted by the pipeline
            with self._lock:
                self.counters[cause] += 1
            first = self.counters[cause] == 1
        if first:
            self.get_logger().warning(f"{message} [{cause}; further ones are only counted in "
                                      "/diagnostics]")

    # ---- worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            clip, received = item
            try:
                t0 = time.monotonic()
                enqueued = clip.meta.get("egox_enqueued", received)
                clip = self.stream.with_context(clip)     # the shared frames' output
                output = self.generator.generate(clip, callback=self._step)
                t1 = time.monotonic()
                start = self.stream.record(clip, output)  # frames before: published already
                messages = output_messages(self.factory, output, clip, self.config, start)
                first = True
                for topic, msg in messages:
                    if self._stop.is_set():
                        raise _Abandon
                    self._pubs[topic].publish(msg)
                    if first:
                        now = time.monotonic()
                        with self._lock:
                            self.latencies_ms.append((now - received) * 1e3)
                            self.backend_ms.append((t1 - t0) * 1e3)
                            self.stage_ms = {"assemble": (enqueued - received) * 1e3,
                                             "queue": (t0 - enqueued) * 1e3,
                                             "backend": (t1 - t0) * 1e3,
                                             "first_publish": (now - t1) * 1e3}
                        first = False
                self._quality_pub.publish(self.factory.clip_quality(
                    clip_quality(output, clip.stamps_ns),
                    self.factory.header(int(clip.stamps_ns[0]), self.config.ego_frame_id),
                    f"{self.get_name()}: clip quality", self._quality_warn))
                with self._lock:
                    self.counters["clips_published"] += 1
                    self.counters["frames_published"] += len(clip.stamps_ns) - start
            except _Abandon:
                with self._lock:
                    self.counters["clips_abandoned"] += 1
            except Exception as err:  # noqa: BLE001 - a failed clip must not kill the worker
                with self._lock:
                    self.counters["generator_error"] += 1
                    self.last_error = f"{type(err).__name__}: {err}"
                self.get_logger().error(f"generation failed, clip dropped: {self.last_error}")
            finally:
                # Nothing of a clip outlives it while the worker waits for the next one
                # (about 230 MB at the default sizes: frames, prior, output, messages).
                item = clip = output = messages = None

    def _step(self, step: int, num_steps: int) -> None:
        if self._stop.is_set():
            raise _Abandon

    def _wall_ns(self) -> int | None:
        """The node's clock in ns, or None while it runs on sim time (no reference then)."""
        clock = self.get_clock()
        if getattr(clock, "ros_time_is_active", False):
            return None
        return clock.now().nanoseconds

    # ---- diagnostics -----------------------------------------------------------------------
    def drop_totals(self) -> Counter[str]:
        """Every drop (and restart) since start, by cause, under the keys of `stats()`:
        bad inputs and stamp checks, the matcher's and the clip buffer's drops, queue
        overflows and failed generations."""
        with self._lock:
            drops: Counter[str] = Counter(dict(self.pipeline.bad_inputs))
            drops.update({f"matcher_{k}": v for k, v in self.pipeline.matcher.dropped.items()})
            buffer = self.pipeline.buffer.counters
            drops.update({f"buffer_{k}": buffer[k]
                          for k in ("gap_discarded", "restart_discarded")})
            drops.update({k: self.counters[k] for k in ("queue_overflow", "generator_error")})
        return +drops

    def stats(self) -> dict[str, Any]:
        """Counters for tests and diagnostics (bad inputs, drops, clips, latencies)."""
        with self._lock:
            stats: dict[str, Any] = dict(self.pipeline.bad_inputs)
            stats.update(self.counters)
            stats.update({f"matcher_{k}": v for k, v in self.pipeline.matcher.dropped.items()})
            stats.update({f"buffer_{k}": v for k, v in self.pipeline.buffer.counters.items()})
            stats["dropped_clips"] = self.queue.dropped
            stats["queue_depth"] = len(self.queue)
            stats["matcher_pending"] = self.pipeline.matcher.pending
            stats["frames_in"] = self.pipeline.frames_in
            perception = getattr(self.generator, "perception", None)
            if perception is not None:          # models, licences, D_v's weaker-choice note
                stats.update({f"perception_{k}": v for k, v in perception.summary().items()})
            stats["last_latency_ms"] = self.latencies_ms[-1] if self.latencies_ms else None
            stats["last_backend_ms"] = self.backend_ms[-1] if self.backend_ms else None
            stats.update({f"last_{k}_ms": round(v, 2) for k, v in self.stage_ms.items()
                          if k != "backend"})
            stats["last_error"] = self.last_error
        backend_status = getattr(self.generator, "status", None)     # e.g. backend 'remote'
        if callable(backend_status):
            stats.update({f"backend_{k}": v for k, v in backend_status().items()})
        return stats

    def recent_drops(self, now: float | None = None) -> Counter[str]:
        """Drops by cause within the last `diagnostics_window_s` (monotonic seconds `now`),
        from the totals recorded at each diagnostics period (the window's resolution)."""
        now = time.monotonic() if now is None else now
        totals = self.drop_totals()
        history, start = self._drop_history, now - self.config.diagnostics_window_s
        history.append((now, totals))
        while len(history) > 1 and history[1][0] <= start:
            history.popleft()                 # keep the newest snapshot at or before start
        base = history[0][1] if history[0][0] <= start else Counter()
        return totals - base

    def publish_diagnostics(self) -> None:
        """One DiagnosticStatus "egox: pipeline": ERROR while a generation failed within
        the last `diagnostics_window_s`, WARN while anything was dropped (or the input
        restarted) within it, OK otherwise; the message names the causes; the values hold
        backend, queue, every counter since start, latency and the last error."""
        stats = self.stats()
        recent = self.recent_drops()
        window = f"{self.config.diagnostics_window_s:g} s"
        status = DiagnosticStatus(name=f"{self.get_name()}: pipeline",
                                  hardware_id=self.get_fully_qualified_name())
        drops = ", ".join(f"{cause} {n}" for cause, n in recent.most_common()
                          if cause != "generator_error")
        if recent["generator_error"]:
            status.level = DiagnosticStatus.ERROR
            status.message = (f"{recent['generator_error']} generation(s) failed in the last "
                              f"{window}: {stats['last_error']}"
                              + (f"; dropped: {drops}" if drops else ""))
        elif drops:
            status.level = DiagnosticStatus.WARN
            status.message = f"dropped in the last {window}: {drops}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        if stats.get("backend_server") == "down" and status.level == DiagnosticStatus.OK:
            status.level = DiagnosticStatus.WARN
            status.message = f"generator server down: {stats.get('backend_last_error', '')}"
        status.values = [KeyValue(key="backend", value=self.generator.name),
                         KeyValue(key="window_s", value=f"{self.config.diagnostics_window_s:g}"),
                         KeyValue(key="dropped_in_window",
                                  value=", ".join(f"{c} {n}" for c, n in recent.most_common()))
                         ] + [KeyValue(key=str(k), value="" if v is None else str(v))
                              for k, v in stats.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)
        self.last_diagnostics = status
        self._trim_when_idle(stats)

    def _trim_when_idle(self, stats: dict[str, Any]) -> None:
        """Once per quiet spell (no input and no output for a diagnostics period, queue
        empty), give the memory freed since back to the OS."""
        activity = (stats["frames_in"], stats.get("clips_published", 0),
                    sum(self.pipeline.bad_inputs.values()))
        if activity != self._activity:
            self._activity, self._idle_trimmed = activity, False
        elif not self._idle_trimmed and stats["queue_depth"] == 0:
            self._idle_trimmed = True
            release_free_memory()

    # ---- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout: float = 3.0) -> int:
        """Stop the worker (the clip in flight is abandoned at its next step); return the
        number of queued clips abandoned. Never blocks longer than `timeout` seconds."""
        self._stop.set()
        if self.queue is None or self._worker is None:       # __init__ failed half-way
            return 0
        abandoned = self.queue.close()
        with self._lock:
            self.counters["clips_abandoned"] += len(abandoned)
        self._worker.join(timeout)
        if self._worker.is_alive():
            self.get_logger().warning("worker still busy in the backend at shutdown; "
                                      "leaving it (daemon thread)")
        return len(abandoned)

    def destroy_node(self) -> None:
        """Shut the worker down, then destroy the node."""
        self.shutdown()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """`egox_node` / `ros2 run egox_ros egox_node`: build the node and spin until SIGINT."""
    spin_node(EgoxNode, "egox", args)


if __name__ == "__main__":
    main()
