"""ROS-free timing logic: approximate-time matching, clip cutting/resampling, bounded queue."""
import threading
import time

import pytest

from egox_ros.clip_buffer import ClipBuffer, ClipSpec
from egox_ros.stamp_matching import StampGuard, StampMatcher
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
    # Without a clock the wait is measured in pivot stamps (offline conversion).
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS)
    m.add("exo", 0, "a")
    m.add("exo", 40 * MS, "b")
    assert m.dropped["match_timeout"] == 0
    m.add("exo", 60 * MS, "c")                    # "a" has waited 60 ms of stamp time
    assert m.dropped["match_timeout"] == 1 and m.pending == 2


def test_with_a_clock_the_wait_is_wall_time_and_a_burst_is_matched_by_watermark():
    now = [0]
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS,
                     clock_ns=lambda: now[0])
    # A burst: 100 frames (3.3 s of stamps) of the pivot arrive before any pose.
    for i in range(100):
        assert m.add("exo", i * 33 * MS, i) == []
    assert m.pending == 100 and not m.dropped
    out = []
    for i in range(100):
        out += m.add("pose", i * 33 * MS, -i)
        assert [f.pivot for f in out] == list(range(i + 1))   # matched once the pose passed
    assert not m.dropped and m.pending == 0
    # Given up only after max_wait of wall time.
    m.add("exo", 4000 * MS, "late")
    now[0] = 50 * MS
    m.add("exo", 4033 * MS, "later")
    assert m.pending == 2 and not m.dropped
    now[0] = 51 * MS
    m.add("exo", 4066 * MS, "latest")             # "late" waited 51 ms, "later" 1 ms
    assert m.dropped["match_timeout"] == 1 and m.pending == 2


def test_out_of_order_and_duplicate_stamps_are_rejected_per_stream():
    reports = []
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS,
                     report=lambda cause, msg: reports.append((cause, msg)))
    m.add("pose", 10 * MS, 1)
    m.add("pose", 10 * MS, 2)
    assert reports[-1][0] == "duplicate_stamp" and "repeats" in reports[-1][1]
    m.add("pose", 5 * MS, 3)                      # held: a restart or a stray message?
    assert m.held() == 1 and len(reports) == 1
    m.add("pose", 12 * MS, 4)                     # the stream went on: the stray one is dropped
    assert reports[-1][0] == "out_of_order_stamp" and "older than the previous" in reports[-1][1]
    assert m.rejected == {"duplicate_stamp": 1, "out_of_order_stamp": 1} and m.held() == 0
    assert m.add("exo", 5 * MS, "img") == []      # other streams are independent
    assert m.restarts == {}


def _stream(m, stamps_ms, offset=0):
    """Pose then pivot of each stamp, like a player; returns the matched pivots."""
    out = []
    for t in stamps_ms:
        m.add("pose", t * MS, f"p{t + offset}")
        out += m.add("exo", t * MS, f"i{t + offset}")
    return out


def test_one_far_future_frame_is_rejected_and_the_stream_goes_on():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS,
                     max_jump_ns=10**10, restart_count=3)
    stamps = [i * 33 for i in range(10)]
    day = 86_400_000
    out = _stream(m, stamps[:5]) + _stream(m, [stamps[4] + day]) + _stream(m, stamps[5:])
    assert [f.stamp_ns // MS for f in out] == stamps
    assert all(f.others["pose"] == f"p{f.stamp_ns // MS}" for f in out)
    assert m.rejected == {"stamp_implausible": 2} and not m.dropped and not m.restarts


@pytest.mark.parametrize("restart_count", [1, 3, 5])
def test_the_same_stamps_played_twice_restart_the_stream(restart_count):
    events = []
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=50 * MS,
                     restart_count=restart_count, report=lambda c, _: events.append(c))
    stamps = [i * 33 for i in range(8)]
    first = _stream(m, stamps)
    second = _stream(m, stamps, offset=1000)      # same stamps, new values (a bag loop)
    assert [f.pivot for f in first] == [f"i{t}" for t in stamps]
    assert [f.pivot for f in second] == [f"i{t + 1000}" for t in stamps]
    assert [f.others["pose"] for f in second] == [f"p{t + 1000}" for t in stamps]
    assert events == ["stream_restarted"] and not m.rejected and not m.dropped
    assert m.restarts == {"exo": 1, "pose": 1}


def test_a_restart_seen_first_on_the_pivot_keeps_the_new_poses():
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=10**9, restart_count=2)
    stamps = [i * 33 for i in range(6)]
    _stream(m, stamps)
    out = []
    for t in stamps:                              # the pivot first this time
        out += m.add("exo", t * MS, f"i{t}b")
    for t in stamps:
        out += m.add("pose", t * MS, f"p{t}b")
    assert [(f.pivot, f.others["pose"]) for f in out] == [(f"i{t}b", f"p{t}b") for t in stamps]
    assert m.restarts == {"exo": 1} and not m.rejected and not m.dropped


def test_suspects_must_form_one_increasing_run_to_restart():
    reports = []
    guard = StampGuard(max_jump_ns=100 * MS, restart_count=3,
                       report=lambda c, _: reports.append(c))
    assert guard.check("s", 1000 * MS, "a") == ([(1000 * MS, "a")], False)
    for t in (10, 5, 300, 301):                   # 5 < 10, and 300 is too far after 5
        assert guard.check("s", t * MS, t) == ([], False)
    assert reports == ["out_of_order_stamp", "out_of_order_stamp"] and guard.held("s") == 2
    assert guard.check("s", 302 * MS, 302) == ([(300 * MS, 300), (301 * MS, 301),
                                                (302 * MS, 302)], True)
    assert guard.last("s") == 302 * MS and guard.held("s") == 0


def test_reference_clock_accepts_a_resumed_camera_and_rejects_a_future_first_stamp():
    now = [100 * 10**9]
    reports = []
    m = StampMatcher(["pose"], tolerance_ns=2 * MS, max_wait_ns=10**9, max_jump_ns=10**9,
                     restart_count=3, reference_ns=lambda: now[0],
                     report=lambda c, _: reports.append(c))
    m.add("pose", now[0] + 86_400 * 10**9, "from tomorrow")    # first stamp, a day ahead
    m.add("pose", now[0], "ok")
    assert reports == ["stamp_implausible"]
    now[0] += 600 * 10**9                         # paused 10 minutes, then resumed: in step
    m.add("pose", now[0], "resumed")              # with the clock, so accepted at once
    assert m.guard.last("pose") == now[0] and reports == ["stamp_implausible"]


def test_guard_validation():
    with pytest.raises(ValueError, match="restart_count"):
        StampGuard(max_jump_ns=1, restart_count=0, report=print)
    with pytest.raises(ValueError, match="max_jump_ns"):
        StampGuard(max_jump_ns=0, restart_count=1, report=print)


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


def test_stamps_going_back_restart_the_clip():
    period = round(1e9 / 30)
    buffer = ClipBuffer(ClipSpec(4, 4, 30.0))
    stamps = [0, period, 2 * period, 0, period, 2 * period, 3 * period]
    assert _feed(buffer, stamps) == [[3, 4, 5, 6]]
    assert buffer.counters["restart_discarded"] == 3 and not buffer.counters["resampled"]


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
