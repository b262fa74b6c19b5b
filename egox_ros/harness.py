"""Nodes in this process on a private rclpy context, spun by one executor thread.

The demo's ROS stage, the latency benchmark and the ROS tests all run their nodes this way:

    with RosHarness() as harness:
        node = harness.add(EgoxNode(config=config, context=harness.context))
        sink = harness.create_node("sink")
        harness.wait_until(lambda: sink.count_publishers("/egox/ego/image") >= 1, 20.0,
                           what="discovery of the egox node")

The nodes talk over real DDS (their own context, so other contexts in the process, or other
processes, are peers). Call `local_ros_env()` (egox_ros.dds) before the first harness when
discovery must stay on this machine.
"""
from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Callable, TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from egox_ros.spin import init_error

__all__ = ["RosHarness", "SpinError", "wait_until"]

NodeT = TypeVar("NodeT", bound=Node)


class SpinError(RuntimeError):
    """The harness's executor thread stopped on an exception (a callback raised)."""


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, *,
               what: str | Callable[[], str] | None = None,
               error: Callable[[str], Exception] = TimeoutError,
               poll_s: float = 0.01) -> bool:
    """Poll `predicate` (without spinning: another thread spins) until it is true.

    Returns True as soon as it is. After `timeout` seconds it is checked once more; if it is
    still false, returns False when `what` is None, otherwise raises
    `error("timed out after T s: WHAT")`. `what` may be a callable, evaluated only then
    (e.g. to report counters as they are at the time out, not when the wait began).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    if predicate():
        return True
    if what is None:
        return False
    text = what() if callable(what) else what
    shown = f"{timeout:g}" if timeout < 100 else f"{timeout:.0f}"
    raise error(f"timed out after {shown} s: {text}")


class RosHarness:
    """A private rclpy context whose executor spins its nodes in a background thread.

    `add(node)` hands a node to the executor (the thread starts with the first one);
    `close()` (also on leaving a `with` block) stops the executor, destroys the nodes in the
    order they were added (their own destroy_node drains or closes what they hold) and shuts
    the context down. Nodes must be created with `context=harness.context`.
    """

    def __init__(self, *, thread_name: str = "egox-ros-spin") -> None:
        """Initialise the context (ConfigError naming the cause when ROS cannot start, e.g.
        a ROS_DOMAIN_ID that is not a number) and the executor; nothing spins yet."""
        self.context = rclpy.Context()
        try:
            rclpy.init(context=self.context)
        except _rclpy.RCLError as err:            # e.g. ROS_DOMAIN_ID=abc: a user's mistake
            raise init_error(err) from err
        # Single-threaded on purpose: rclpy's MultiThreadedExecutor let the egox node fall
        # 250-600 ms behind a 30 fps input on a 2-core machine (thread pool + GIL), the
        # single-threaded one keeps up (docs/ros.md, `egox bench ros`); the node's worker
        # thread runs the generator meanwhile, so callbacks stay short.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self.spin_error: BaseException | None = None
        self._thread = threading.Thread(target=self._spin, name=thread_name, daemon=True)
        self._closed = False

    def __enter__(self) -> RosHarness:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass                                   # the context was shut down elsewhere
        except BaseException as err:
            if isinstance(err, _rclpy.RCLError) and not self.context.ok():
                return                             # SIGINT shut it down under the wait
            self.spin_error = err                  # a callback raised: keep it for waiters
            raise                                  # and let threading print its traceback

    def add(self, node: NodeT) -> NodeT:
        """Spin `node` (created with `context=self.context`) from now on; returns it."""
        if self._closed:
            raise RuntimeError("RosHarness.add() after close()")
        self.nodes.append(node)
        self.executor.add_node(node)
        if self._thread.ident is None:                # not started yet
            self._thread.start()
        return node

    def create_node(self, name: str, **kwargs: Any) -> Node:
        """A plain rclpy node on this context (e.g. a test's publisher or sink), added."""
        return self.add(rclpy.create_node(name, context=self.context, **kwargs))

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, *,
                   what: str | Callable[[], str] | None = None,
                   error: Callable[[str], Exception] = TimeoutError) -> bool:
        """`wait_until` (module function) that also stops at once with SpinError when the
        executor thread died, instead of waiting out `timeout` for callbacks that will
        never run."""
        def ready() -> Any:
            if self.spin_error is not None:
                raise SpinError(f"the executor thread stopped: {self.spin_error!r}"
                                ) from self.spin_error
            return predicate()

        return wait_until(ready, timeout, what=what, error=error)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the executor (waiting up to `timeout_s` for a running callback), destroy the
        nodes, shut the context down. Idempotent; every step runs even if one raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self.executor.shutdown(timeout_sec=timeout_s)
            if self._thread.ident is not None:
                self._thread.join(timeout_s)
        finally:
            try:
                _destroy_all(self.nodes)
            finally:
                self.context.try_shutdown()


def _destroy_all(nodes: list[Node]) -> None:
    """destroy_node() on each of `nodes`; the first exception is raised after all ran."""
    first: BaseException | None = None
    for node in nodes:
        try:
            node.destroy_node()
        except BaseException as err:
            first = first or err
    if first is not None:
        raise first
