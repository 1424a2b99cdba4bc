"""``ros/sync.py``: the node pairs each image with the depth image of the nearest stamp (``depth_max_dt``), waiting
briefly for one still in flight while the depth stream is live, and never uses another moment's depth."""
from __future__ import annotations

import threading
import time
import types

from interactvlm_ros.ros.sync import StampedBuffer, stamp_ns

MS = 1_000_000


def test_stamp_ns_of_a_header():
    h = types.SimpleNamespace(stamp=types.SimpleNamespace(sec=12, nanosec=345))
    assert stamp_ns(h) == 12_000_000_345


def test_nearest_within_tolerance_and_offset_sign():
    b = StampedBuffer(8)
    assert b.nearest(1000 * MS, 50 * MS) == (None, None)  # the stream has sent nothing
    for t, v in ((900, "a"), (967, "b"), (1033, "c")):
        b.put(t * MS, v)
    assert b.nearest(1000 * MS, 50 * MS) == ("b", -33 * MS)  # nearest of two within tolerance
    assert b.nearest(1030 * MS, 50 * MS) == ("c", 3 * MS)
    assert b.nearest(1200 * MS, 50 * MS) == (None, -167 * MS)  # none that close: the offset of the nearest
    assert b.nearest(600 * MS, 50 * MS) == (None, 300 * MS)


def test_only_the_newest_items_are_kept():
    b = StampedBuffer(3)
    for t in range(10):
        b.put(t * 100 * MS, t)
    assert len(b) == 3
    assert b.nearest(0, 50 * MS) == (None, 700 * MS)  # 0..6 evicted
    assert b.nearest(700 * MS, 0)[0] == 7


def test_waits_for_a_partner_in_flight_while_the_stream_is_live():
    b = StampedBuffer(8)
    b.put(967 * MS, "previous")
    threading.Timer(0.1, b.put, args=(1000 * MS, "this frame's")).start()
    t0 = time.monotonic()
    value, offset = b.nearest(1000 * MS, 10 * MS, wait_s=5.0)
    waited = time.monotonic() - t0
    assert (value, offset) == ("this frame's", 0)
    assert 0.05 < waited < 4.0, waited  # returned when it came


def test_no_wait_when_the_stream_stopped_or_a_newer_item_is_there():
    b = StampedBuffer(8)
    b.put(100 * MS, "old")  # 1.9 s before the image: the depth camera stopped
    t0 = time.monotonic()
    assert b.nearest(2000 * MS, 50 * MS, wait_s=5.0) == (None, -1900 * MS)
    b.put(2100 * MS, "newer")  # newer than the image: a later one cannot come closer
    assert b.nearest(2000 * MS, 50 * MS, wait_s=5.0) == (None, 100 * MS)
    assert time.monotonic() - t0 < 1.0


def test_a_live_stream_without_a_partner_costs_at_most_the_wait():
    b = StampedBuffer(8)
    b.put(900 * MS, "late stream")
    t0 = time.monotonic()
    assert b.nearest(1000 * MS, 50 * MS, wait_s=0.2) == (None, -100 * MS)
    assert 0.19 < time.monotonic() - t0 < 2.0


def test_equal_stamps_take_the_newest_item():
    """Several items as near (a driver or segmenter that leaves header.stamp at zero, or repeats a stamp): the newest
    is paired. min() over the buffer used to return its oldest, the depth / mask of 8 frames ago, counted as matched."""
    b = StampedBuffer(8)
    for v in range(8):
        b.put(0, v)  # unstamped: all zero
    assert b.nearest(0, 50 * MS) == (7, 0)
    b.put(1000 * MS, "first")
    b.put(1000 * MS, "second")  # the same stamp again (a driver repeating its header)
    assert b.nearest(1000 * MS, 50 * MS) == ("second", 0)
