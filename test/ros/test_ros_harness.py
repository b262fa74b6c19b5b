"""egox_ros.harness: the in-process executor of the demo, the benchmark and the tests."""
import threading
import time

import pytest
from std_msgs.msg import String

from ros_fixtures import RosHarness, unique_ns, wait_until  # noqa: I100

from egox_model.errors import ConfigError
from egox_ros.harness import SpinError


def test_wait_until_returns_a_bool_or_raises_naming_what():
    assert wait_until(lambda: True, 0.0) is True
    assert wait_until(lambda: False, 0.05) is False
    flag = threading.Timer(0.05, lambda: None)
    flag.start()
    assert wait_until(lambda: not flag.is_alive(), 2.0)
    with pytest.raises(TimeoutError, match="^timed out after 0.1 s: the answer$"):
        wait_until(lambda: False, 0.1, what="the answer")
    counter = {"n": 0}

    def count():
        counter["n"] += 1
        return False

    # `what` as a callable is evaluated at the time out, not when the wait begins.
    with pytest.raises(KeyError, match="after 0.05 s: polled [1-9]"):
        wait_until(count, 0.05, what=lambda: f"polled {counter['n']} times", error=KeyError)


def test_nodes_talk_and_close_destroys_everything():
    topic = unique_ns() + "/chatter"
    got = []
    with RosHarness() as harness:
        pub_node = harness.create_node("talker")
        sub_node = harness.create_node("listener")
        assert harness.nodes == [pub_node, sub_node]
        pub = pub_node.create_publisher(String, topic, 10)
        sub_node.create_subscription(String, topic, lambda m: got.append(m.data), 10)
        assert harness.wait_until(lambda: pub.get_subscription_count() == 1, 10,
                                  what="discovery")
        pub.publish(String(data="hello"))
        assert harness.wait_until(lambda: got == ["hello"], 5, what=lambda: f"got {got}")
    assert not harness.context.ok()
    assert not harness._thread.is_alive()
    harness.close()                                     # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        harness.add(pub_node)


def test_a_dead_executor_thread_fails_waits_at_once(monkeypatch):
    """A callback that raises stops the executor thread; a harness wait then fails at once
    naming the error, instead of waiting out its timeout for callbacks that never run."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)   # expected traceback
    with RosHarness() as harness:
        node = harness.create_node("boom")

        def explode():
            raise ValueError("callback failed")

        node.create_timer(0.01, explode)
        start = time.monotonic()
        with pytest.raises(SpinError, match="callback failed"):
            harness.wait_until(lambda: False, 30, what="never")
        assert time.monotonic() - start < 5
        assert isinstance(harness.spin_error, ValueError)


def test_ros_that_cannot_start_is_a_config_error(monkeypatch):
    """A broken ROS environment is the user's to fix: a ConfigError (one line at every
    entry point), not rclpy's RCLError with C file locations."""
    monkeypatch.setenv("ROS_DOMAIN_ID", "abc")
    with pytest.raises(ConfigError, match="^cannot start ROS: ROS_DOMAIN_ID is not an "
                                          "integral number$"):
        RosHarness()


def test_latency_benchmark_runs_on_the_harness():
    """`egox bench ros`'s latency part (one of the harness's users) at a tiny size."""
    from egox_ros.bench import bench_latency

    result = bench_latency("prior", frames=5, exo_size=(48, 80), ego_size=(32, 32), clips=2)
    assert result["clips"] == 2 and len(result["node_latency_ms"]) == 2
    assert len(result["end_to_end_ms"]) == 2
    # The first ego frame of a clip leaves after the backend ran on the complete clip.
    for end_to_end, backend in zip(result["end_to_end_ms"], result["backend_ms_per_clip"]):
        assert end_to_end > backend > 0
