"""Pairing another stream with the images by header stamp (the node's depth and object mask).

``StampedBuffer`` keeps the newest few stamped items of a stream; ``nearest`` gives the one whose stamp is closest to
an image's, within a tolerance, and may wait briefly for one still in flight. Written here rather than taken from
``message_filters``: its ``ApproximateTimeSynchronizer`` drops an image that has no partner, while the node must answer
every image with contact (a frame without a matching depth is fitted without depth, and counted), and it is not on
PyPI (the node's pip path has no ``message_filters``).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any


def stamp_ns(header) -> int:
    """A ``std_msgs/Header``'s stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class StampedBuffer:
    """The newest ``size`` items of a stream with their stamps (ns); thread-safe (``put`` from the executor,
    ``nearest`` from the worker)."""

    def __init__(self, size: int = 8):
        self._items: collections.deque = collections.deque(maxlen=int(size))
        self._cv = threading.Condition()

    def put(self, stamp: int, value: Any) -> None:
        with self._cv:
            self._items.append((int(stamp), value))
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)

    def nearest(self, stamp: int, tolerance_ns: int, wait_s: float = 0.0,
                live_ns: int = 1_000_000_000) -> tuple[Any, int | None]:
        """``(value, offset_ns)`` of the item nearest ``stamp`` when ``|offset| <= tolerance_ns`` (offset = its stamp
        minus ``stamp``). While there is none and every item is older than ``stamp`` but the newest less than
        ``live_ns`` older (the stream is live: an image's partner is usually a few ms behind it), waits up to
        ``wait_s`` for newer ones; a stream that has stopped costs no wait. ``(None, offset of the nearest)`` when
        none matched; ``(None, None)`` when the stream has sent nothing."""
        deadline = time.monotonic() + max(0.0, float(wait_s))
        with self._cv:
            while True:
                # items of one stamp (an unstamped stream: every stamp 0; a repeated stamp): the newest, not the oldest
                best = min(reversed(self._items), key=lambda it: (abs(it[0] - stamp), it[0] - stamp), default=None)
                if best is None:
                    return None, None
                offset = best[0] - stamp
                if abs(offset) <= tolerance_ns:
                    return best[1], offset
                left = deadline - time.monotonic()
                newest = max(it[0] for it in self._items)
                if newest >= stamp or newest < stamp - live_ns or left <= 0:  # a newer one would be farther / none
                    return None, offset
                self._cv.wait(left)
