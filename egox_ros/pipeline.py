"""The message pipeline shared by the node and `egox convert`: messages in, `Clip`s out.

rclpy-free: it reads messages by field name, so rclpy messages (live node) and rosbags
messages (offline conversion) run through the same code. Bad input raises nothing: it is
counted in `bad_inputs` under a short cause and reported once per cause through `on_bad_input`.

Per exo frame: decode -> undistort with the exo CameraInfo's model -> resize to
exo_width x exo_height (K follows) -> match poses / depth / masks by stamp (poses from TF:
looked up at the matched exo stamp) -> clip buffer.
With depth_source 'estimate' clips carry no depth: the generator built by the node's
`make_backend` estimates it on the worker (egox_model.perception), never in a callback.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from egox_model.clip import Clip
from egox_model.errors import InputError
from egox_model.geometry.camera import CameraModel, Intrinsics
from egox_model.geometry.pose import pose_to_c2w
from egox_ros.clip_buffer import ClipBuffer, ClipSpec
from egox_ros.errors import MessageError, TfError
from egox_ros.image_conversion import (compressed_to_numpy, depth_to_metres, image_to_mask,
                                       image_to_rgb)
from egox_ros.messages import MessageFactory, pose_msg_to_c2w, stamp_ns
from egox_ros.params import EgoxConfig
from egox_ros.stamp_matching import MatchedFrame, StampMatcher
from egox_ros.tf_tree import TransformLookup

__all__ = ["ExoPipeline", "output_messages"]

BadInputHook = Callable[[str, str, bool], None]   # (cause, message, first time for this cause)


class ExoPipeline:
    """Turns exo/ego messages into complete `Clip`s according to an `EgoxConfig`."""

    #: Causes logged every time, not only the first time (events a user must see each time).
    ALWAYS_LOGGED = frozenset({"stream_restarted"})

    def __init__(self, config: EgoxConfig, on_bad_input: BadInputHook | None = None, *,
                 clock_ns: Callable[[], int] | None = None,
                 reference_ns: Callable[[], int | None] | None = None,
                 tf: TransformLookup | None = None) -> None:
        """`clock_ns`: monotonic clock for giving frames up after max_wait_s (the node);
        None measures the wait in stamp time (offline conversion). `reference_ns`: the
        node's clock when it is not sim time, for implausible stamps (None: not used).
        `tf`: the transforms the poses of `config.tf_frames` are looked up in (required
        when the config reads poses from TF)."""
        self.config = config
        self.bad_inputs: Counter[str] = Counter()
        self._on_bad_input = on_bad_input
        if config.tf_frames and tf is None:
            raise ValueError(f"the config reads {sorted(config.tf_frames)} from TF: pass tf= "
                             "(a TfBuffer, or the node's tf2 buffer)")
        self.tf = tf
        self._clock = clock_ns
        self._tf_waiting: deque[tuple[MatchedFrame, int | None]] = deque()
        streams = ["ego_pose"] if config.ego_pose_source == "topic" else []
        if config.exo_pose_source == "topic":
            streams.append("exo_pose")
        if config.depth_source == "topic":
            streams.append("depth")
        if config.use_mask:
            streams.append("mask")
        self.matcher = StampMatcher(streams, pivot="exo",
                                    tolerance_ns=int(config.stamp_tolerance_s * 1e9),
                                    max_wait_ns=int(config.max_wait_s * 1e9),
                                    max_jump_ns=int(config.max_stamp_jump_s * 1e9),
                                    restart_count=config.stamp_restart_frames,
                                    clock_ns=clock_ns, reference_ns=reference_ns,
                                    report=self.report)
        self.buffer = ClipBuffer(ClipSpec(config.clip_length, config.clip_stride, config.fps,
                                          config.max_gap_s))
        self.ego_K = Intrinsics(config.ego_fx, config.ego_fy, config.ego_cx, config.ego_cy,
                                config.ego_width, config.ego_height)
        self.ego_offset = pose_to_c2w(np.array(config.ego_camera_offset[:3]),
                                      np.array(config.ego_camera_offset[3:]))
        self.static_exo_c2w = pose_to_c2w(np.array(config.exo_pose[:3]),
                                          np.array(config.exo_pose[3:]))
        self.prompt = config.prompt
        self.camera: CameraModel | None = None
        self.exo_K: Intrinsics | None = None      # of the frames in clips (rectified, resized)
        self._camera_key: tuple | None = None
        self.frames_in = 0
        # Images (exo, depth, mask) held until the first CameraInfo: a clip's worth, since
        # between processes a lost CameraInfo can take a second or two to be repaired.
        self.max_held_before_info = max(16, 3 * config.clip_length)
        self._clip_arrays: dict[str, np.ndarray] | None = None
        self._carry: dict[str, np.ndarray] | None = None
        self._before_info: deque[tuple[Callable[[Any], list[Clip]], Any]] = deque()

    # ---- bad input bookkeeping -------------------------------------------------------------
    def report(self, cause: str, message: str) -> None:
        """Count one bad input and tell the hook (first=True the first time per cause, and
        every time for ALWAYS_LOGGED causes)."""
        self.bad_inputs[cause] += 1
        if self._on_bad_input is not None:
            self._on_bad_input(cause, message,
                               self.bad_inputs[cause] == 1 or cause in self.ALWAYS_LOGGED)

    def _guard(self, fn: Callable[[], list[Clip] | None]) -> list[Clip]:
        try:
            return fn() or []
        except MessageError as err:
            self.report(err.cause, str(err))
        except InputError as err:
            self.report("invalid_input", str(err))
        return []

    # ---- inputs ----------------------------------------------------------------------------
    def on_camera_info(self, msg: Any) -> list[Clip]:
        """Exo CameraInfo: (re)build the camera model when it changes; the first one also
        releases the images that arrived before it."""
        self._guard(lambda: self._camera_info(msg))
        clips: list[Clip] = []
        while self.camera is not None and self._before_info:
            handler, early = self._before_info.popleft()
            clips += self._guard(lambda: handler(early))
        return clips

    def on_exo_image(self, msg: Any) -> list[Clip]:
        """Exo Image or CompressedImage (per image_transport); returns completed clips."""
        return self._guard(lambda: self._needs_camera(self._exo_image, msg))

    def on_depth(self, msg: Any) -> list[Clip]:
        """Exo depth image, registered to the exo camera (same size and model)."""
        return self._guard(lambda: self._needs_camera(self._depth, msg))

    def on_mask(self, msg: Any) -> list[Clip]:
        """Dynamic-object mask (mono8), registered to the exo camera."""
        return self._guard(lambda: self._needs_camera(self._mask, msg))

    def on_ego_pose(self, msg: Any) -> list[Clip]:
        """Ego PoseStamped / Odometry; the ego camera = pose * ego_camera_offset."""
        return self._guard(lambda: self._add("ego_pose", stamp_ns(msg.header),
                                             pose_msg_to_c2w(msg) @ self.ego_offset))

    def on_exo_pose(self, msg: Any) -> list[Clip]:
        """Exo camera PoseStamped (optical frame in the world)."""
        return self._guard(lambda: self._add("exo_pose", stamp_ns(msg.header),
                                             pose_msg_to_c2w(msg)))

    def on_prompt(self, msg: Any) -> None:
        """std_msgs/String: the prompt of clips completed from now on."""
        self.prompt = str(msg.data)

    def flush(self) -> list[Clip]:
        """End of input (bag conversion): match the remaining frames; partial clips are dropped."""
        return self._guard(lambda: self._to_clips(self.matcher.flush(), final=True))

    # ---- internals -------------------------------------------------------------------------
    def _needs_camera(self, handler: Callable[[Any], list[Clip]], msg: Any) -> list[Clip]:
        """Run `handler` now, or hold the message until the first CameraInfo (topics are not
        ordered against each other); the oldest held message is dropped beyond the limit."""
        if self.camera is not None:
            return handler(msg)
        self._before_info.append((handler, msg))
        if len(self._before_info) > self.max_held_before_info:
            self._before_info.popleft()
            raise MessageError("missing_camera_info",
                               "no exo CameraInfo received yet: images are dropped until one "
                               "arrives on exo/camera_info")
        return []

    def _depth(self, msg: Any) -> list[Clip]:
        return self._add("depth", stamp_ns(msg.header),
                         self._rectify(depth_to_metres(msg), nearest=True))

    def _mask(self, msg: Any) -> list[Clip]:
        mask = image_to_mask(msg).view(np.uint8)
        return self._add("mask", stamp_ns(msg.header),
                         self._rectify(mask, nearest=True).astype(bool))

    def _camera_info(self, msg: Any) -> None:
        key = (int(msg.width), int(msg.height), tuple(msg.k), tuple(msg.d), tuple(msg.p),
               str(msg.distortion_model))
        if key == self._camera_key:
            return
        try:
            camera = CameraModel.from_camera_info(width=key[0], height=key[1], K=msg.k, D=msg.d,
                                                  P=msg.p, distortion_model=key[5])
        except InputError as err:
            raise MessageError("bad_camera_info", f"exo CameraInfo rejected: {err}") from err
        if self._camera_key is not None and len(self.buffer):
            self.report("camera_info_changed", "exo CameraInfo changed: restarting the clip")
            self.buffer.reset()
        rect = camera.rectified
        cfg = self.config
        exo_K = rect if cfg.exo_width == 0 else rect.resized(cfg.exo_width, cfg.exo_height)
        try:
            cfg.check_clip_shapes(cfg.clip_length, (exo_K.height, exo_K.width),
                                  (cfg.ego_height, cfg.ego_width))
        except InputError as err:
            raise MessageError("exo_size_unusable",
                               f"exo frames would be {exo_K.width}x{exo_K.height} (exo_width = "
                               f"exo_height = 0 keeps the camera's size) but backend "
                               f"{cfg.backend!r} cannot take them: {err}; set exo_width and "
                               "exo_height") from err
        self.camera, self._camera_key, self.exo_K = camera, key, exo_K

    def _rectify(self, image: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        camera = self.camera
        if camera is None:
            raise MessageError("missing_camera_info",
                               "no exo CameraInfo received yet: exo frames are dropped until "
                               "one arrives on exo/camera_info")
        k = camera.intrinsics
        if image.shape[:2] != (k.height, k.width):
            raise MessageError("size_mismatch",
                               f"image is {image.shape[1]}x{image.shape[0]} but the exo "
                               f"CameraInfo says {k.width}x{k.height}")
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        image = camera.undistort(image, interp)
        K = self.exo_K
        if (K.width, K.height) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, (K.width, K.height),
                               interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
        return image

    def _exo_image(self, msg: Any) -> list[Clip]:
        if self.config.image_transport == "compressed":
            rgb = compressed_to_numpy(msg)
            if rgb.ndim != 3:
                raise MessageError("unknown_encoding", "compressed exo image is not colour")
        else:
            rgb = image_to_rgb(msg)
        self.frames_in += 1
        return self._add("exo", stamp_ns(msg.header), self._rectify(rgb))

    def _add(self, stream: str, stamp: int, value: Any) -> list[Clip]:
        return self._to_clips(self.matcher.add(stream, stamp, value))

    def _to_clips(self, frames: list[MatchedFrame], *, final: bool = False) -> list[Clip]:
        if self.tf is not None:
            frames = self._with_tf_poses(frames, final=final)
        clips = []
        for frame in frames:
            gaps = self.buffer.counters["gap_reset"]
            done = self.buffer.push(frame.stamp_ns, frame)
            if self.buffer.counters["gap_reset"] > gaps:
                self.report("frame_gap",
                            f"exo frames missing before stamp {frame.stamp_ns} ns: the partial "
                            "clip was restarted (lossy transport? between processes use "
                            "subscription_qos 'reliable' with a reliable publisher, and a deeper "
                            "subscription_depth)")
            if self.buffer.last_index is None:
                continue                                  # resampled away
            self._store(self.buffer.last_index, frame)
            if done is not None:
                clips.append(self._make_clip(done[0]))
        return clips

    def _with_tf_poses(self, frames: list[MatchedFrame], *, final: bool) -> list[MatchedFrame]:
        """The matched frames whose camera poses TF gives at their stamps, in order, with
        the poses in `others` (ego: the TF pose * ego_camera_offset). With a clock (the
        node), a frame TF may still give (transforms not received yet) waits, and the frames
        after it, up to max_wait_s ("tf_timeout" after); otherwise a frame TF cannot give is
        dropped under the error's cause ("tf_no_path", "tf_extrapolation")."""
        now = self._clock() if self._clock is not None else None
        self._tf_waiting.extend((frame, now) for frame in frames)
        world, ready = self.config.tf.world_frame, []
        while self._tf_waiting:
            frame, arrival = self._tf_waiting[0]
            try:
                for stream, frame_id in self.config.tf_frames.items():
                    c2w = self.tf.lookup(world, frame_id, frame.stamp_ns)
                    frame.others[stream] = c2w @ self.ego_offset if stream == "ego_pose" else c2w
            except TfError as err:
                if err.may_resolve and now is not None and not final:
                    if now - arrival <= self.matcher.max_wait_ns:
                        break
                    self.report("tf_timeout", f"exo frame at {frame.stamp_ns} ns dropped after "
                                f"waiting max_wait_s={self.config.max_wait_s:g} s for TF: {err}")
                else:
                    self.report(err.cause, f"exo frame at {frame.stamp_ns} ns dropped: {err}")
            else:
                ready.append(frame)
            self._tf_waiting.popleft()
        return ready

    def _frame_arrays(self, frame: MatchedFrame) -> dict[str, np.ndarray]:
        cfg = self.config
        arrays = {"exo_rgb": frame.pivot, "ego_c2w": frame.others["ego_pose"]}
        if cfg.exo_pose_source != "parameter":                    # topic or TF
            arrays["exo_c2w"] = frame.others["exo_pose"]
        if cfg.depth_source == "topic":
            arrays["exo_depth_m"] = frame.others["depth"]
        if cfg.use_mask:
            arrays["dynamic_mask"] = frame.others["mask"]
        return arrays

    def _store(self, index: int, frame: MatchedFrame) -> None:
        """Copy one frame into the clip's arrays as it arrives, so completing a clip costs
        one frame's copy, not a stack of the whole clip (the node's latency budget)."""
        arrays = self._frame_arrays(frame)
        carry, self._carry = self._carry, None
        length = self.config.clip_length
        fits = self._clip_arrays is not None and all(
            self._clip_arrays[k].shape[1:] == v.shape for k, v in arrays.items())
        if index == 0 or not fits:
            self._clip_arrays = {k: np.empty((length, *np.shape(v)), np.asarray(v).dtype)
                                 for k, v in arrays.items()}
            if carry is not None and index > 0:           # overlap with the previous clip
                for k, old in carry.items():
                    self._clip_arrays[k][:index] = old[length - index:]
        for k, v in arrays.items():
            self._clip_arrays[k][index] = v

    def _make_clip(self, stamps: list[int]) -> Clip:
        cfg = self.config
        arrays, self._clip_arrays = self._clip_arrays, None
        if cfg.clip_stride < cfg.clip_length:
            self._carry = arrays                          # copied when the next frame comes
        F = len(stamps)
        exo_c2w = arrays.get("exo_c2w")
        if exo_c2w is None:
            exo_c2w = np.repeat(self.static_exo_c2w[None], F, 0)
        return Clip(exo_rgb=arrays["exo_rgb"], exo_K=self.exo_K, exo_c2w=exo_c2w,
                    ego_K=self.ego_K, ego_c2w=arrays["ego_c2w"],
                    stamps_ns=np.asarray(stamps, dtype=np.int64),
                    exo_depth_m=arrays.get("exo_depth_m"),
                    dynamic_mask=arrays.get("dynamic_mask"), prompt=self.prompt, fps=cfg.fps)


def output_messages(factory: MessageFactory, output: Any, clip: Clip, config: EgoxConfig,
                    start: int = 0) -> Iterator[tuple[str, Any]]:
    """(relative topic, message) pairs for frames [start:] of one generated clip (the ones
    before were output by the overlapping clip before it: `ClipStream.record`), frame by
    frame, built lazily so the first frame can go out before the last is converted.

    Topics: ego/image, ego/camera_info and (publish_prior) ego_prior/image,
    ego_prior/camera_info. Every message carries its source exo frame's stamp and the ego
    optical frame id.
    """
    stamps = clip.stamps_ns
    ego = np.asarray(output.ego_rgb)
    prior = np.asarray(output.prior.rgb) if config.publish_prior else None
    h, w = ego.shape[1:3]
    K = clip.ego_K if (clip.ego_K.width, clip.ego_K.height) == (w, h) else \
        clip.ego_K.resized(w, h)
    for i in range(start, len(stamps)):
        header = factory.header(int(stamps[i]), config.ego_frame_id)
        yield "ego/image", factory.image(ego[i], "rgb8", header)
        yield "ego/camera_info", factory.camera_info(K, header)
        if prior is not None:
            yield "ego_prior/image", factory.image(prior[i], "rgb8", header)
            yield "ego_prior/camera_info", factory.camera_info(K, header)
