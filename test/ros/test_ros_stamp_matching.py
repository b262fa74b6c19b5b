"""ROS-free timing logic: approximate-time matching, clip cutting/resampling, bounded queue."""
import threading
import time

import pytest

from egox_ros.clip_buffer import ClipBuffer, ClipSpec
from egox_ros.errors import MessageError
from egox_ros.stamp_matching import StampMatcher
from egox_ros.work_queue import BoundedQueue

MS = 1_000_000


def test_pivot_gets_the_nearest_message_within_tolerance():
    m = StampMatcher(["pose"], tolerance_ns=5 * MS, max_wait_ns=1000 * MS)
    for t in (0, 7, 9, 14):                       # pose stamps in ms
        assert m.add("pose", t * MS, t) == []
    out = m.add("exo", 10 * MS, "img")            # 9 is nearest (1 ms), 7 and 14 are further
    assert [(f.stamp_ns, f.pivot, f.others["pose"], f.offsets_ns["pose"]) for f in out] == \
        [(10 * MS, "img", 9, -1 * MS)]


def test_pivot_waits_until_a_later_message_can_no_longer_be_closer():
    m = StampMatcher(["pose"], tolerance_ns=5 * MS, max_wait_ns=1000 * MS)
    m.add("pose", 8 * MS, "early")
    assert m.add("exo", 10 * MS, "img") == []     # a pose at 10..12 may still come
    assert m.pending == 1
    out = m.add("pose", 11 * MS, "late")          # 11 is nearer than 8 and >= pivot: final
    assert out[0].others["pose"] == "late"


def test_unmatched_pivot_is_dropped_and_counted():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=1000 * MS)
    m.add("exo", 10 * MS, "img")
    assert m.add("pose", 20 * MS, "far") == []    # beyond tolerance and after the pivot
    assert m.dropped["unmatched_pose"] == 1 and m.pending == 0


def test_pivot_waiting_too_long_times_out():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS)
    m.add("exo", 0, "a")
    m.add("exo", 40 * MS, "b")
    assert m.dropped["match_timeout"] == 0
    m.add("exo", 60 * MS, "c")                    # "a" has waited 60 ms of stamp time
    assert m.dropped["match_timeout"] == 1 and m.pending == 2


def test_out_of_order_and_duplicate_stamps_are_rejected_per_stream():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS)
    m.add("pose", 10 * MS, 1)
    with pytest.raises(MessageError, match="repeats") as err:
        m.add("pose", 10 * MS, 2)
    assert err.value.cause == "duplicate_stamp"
    with pytest.raises(MessageError, match="older than the previous") as err:
        m.add("pose", 5 * MS, 3)
    assert err.value.cause == "out_of_order_stamp"
    m.add("exo", 5 * MS, "img")                   # other streams are independent


def test_flush_matches_what_it_can():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=1000 * MS)
    m.add("pose", 9 * MS, "p")
    m.add("exo", 10 * MS, "img")
    m.add("exo", 30 * MS, "img2")
    out = m.flush()
    assert [f.pivot for f in out] == ["img"] and m.dropped["unmatched_pose"] == 1


def _feed(buffer, stamps):
    clips = []
    for i, s in enumerate(stamps):
        done = buffer.push(s, i)
        if done:
            clips.append(done[1])
    return clips


def test_clip_length_stride_and_overlap():
    period = round(1e9 / 30)
    stamps = [i * period for i in range(13)]
    assert _feed(ClipBuffer(ClipSpec(5, 5, 30.0)), stamps) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert _feed(ClipBuffer(ClipSpec(5, 3, 30.0)), stamps) == \
        [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [6, 7, 8, 9, 10]]


def test_faster_source_is_resampled_to_fps():
    buffer = ClipBuffer(ClipSpec(4, 4, 30.0))
    stamps = [round(i * 1e9 / 60) for i in range(16)]      # 60 Hz with jitter-free stamps
    assert _feed(buffer, stamps) == [[0, 2, 4, 6], [8, 10, 12, 14]]
    assert buffer.counters["resampled"] == 8


def test_jittery_source_at_fps_keeps_every_frame():
    period = round(1e9 / 30)
    jitter = [0, 3, -4, 2, -3, 4, -2, 1]
    stamps = [i * period + j * MS for i, j in enumerate(jitter)]
    assert _feed(ClipBuffer(ClipSpec(8, 8, 30.0)), stamps) == [list(range(8))]


def test_gap_restarts_the_clip():
    period = round(1e9 / 30)
    buffer = ClipBuffer(ClipSpec(4, 4, 30.0))
    stamps = [0, period, 2 * period, 10 * period, 11 * period, 12 * period, 13 * period]
    assert _feed(buffer, stamps) == [[3, 4, 5, 6]]
    assert buffer.counters["gap_reset"] == 1 and buffer.counters["gap_discarded"] == 3


def test_clip_spec_validation():
    with pytest.raises(ValueError, match="stride must be in"):
        ClipSpec(5, 6)
    with pytest.raises(ValueError, match="fps must be positive"):
        ClipSpec(5, 5, 0.0)


@pytest.mark.parametrize("policy,kept", [("drop_oldest", [2, 3]), ("drop_newest", [1, 2])])
def test_bounded_queue_overflow_policies(policy, kept):
    q = BoundedQueue(2, policy)
    dropped = [q.put(i) for i in (1, 2, 3)]
    assert dropped == [None, None, 1 if policy == "drop_oldest" else 3]
    assert q.dropped == 1
    assert [q.get(0), q.get(0)] == kept and q.get(0) is None


def test_bounded_queue_close_wakes_waiters_and_returns_abandoned():
    q = BoundedQueue(3)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    t.start()
    time.sleep(0.05)
    assert q.close() == []
    t.join(1.0)
    assert not t.is_alive() and got == [None]
    q2 = BoundedQueue(3)
    q2.put("a")
    q2.put("b")
    assert q2.close() == ["a", "b"] and q2.put("c") == "c"
    with pytest.raises(ValueError, match="overflow policy"):
        BoundedQueue(1, "block")
