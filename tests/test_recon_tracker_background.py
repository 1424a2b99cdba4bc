"""Tracker(background=True): a cold fit runs in its own thread while update() answers "cold_start_pending" at once;
the finished fit is handed over once with its frame's tag, the next frame warm-starts from it; a degraded warm fit
starts another; reset() cancels a running one, close() stops the thread.
The reconstructor is a double whose cold fits wait for the test (the threading logic, deterministically; the real
fit in the background is exercised by tests/test_node_reconstruct.py)."""
from __future__ import annotations

import threading
import time

import numpy as np

from interactvlm_ros.recon import Reconstruction, Tracker
from interactvlm_ros.recon.body_fit import BodyState, check_cancel


class _Recon:
    def __init__(self):
        self.release = threading.Event()
        self.cancel = threading.Event()  # as Reconstructor.cancel: the fits check it every iteration
        self.calls: list[str] = []
        self.reproj = 0.01  # body 2-D error of the fits it returns (> 0.05: a degraded warm fit)

    def fit(self, image, observation, human_contact=None, init=None, **kw):
        self.calls.append("cold" if init is None else "warm")
        if init is None:
            for _ in range(1000):  # "iterations" until released, cancelled at the next one
                check_cancel(self.cancel, "cold fit")
                if self.release.wait(0.01):
                    break
            else:
                raise AssertionError("test did not release the cold fit")
        st = BodyState(np.zeros((16, 3)), np.eye(3), np.array([0.0, 0.0, 3.0]), np.full(6, 0.5))
        return Reconstruction("ok", human_vertices_cam=np.zeros((4, 3)), object_pose=np.eye(4), body_state=st,
                              metrics={"body_reproj_rel": self.reproj})


def _until(cond, timeout=5.0):
    t = time.monotonic() + timeout
    while not cond() and time.monotonic() < t:
        time.sleep(0.005)
    return cond()


def _update(tr, tag=None):
    return tr.update(np.zeros((4, 4, 3), np.uint8), object(), np.zeros(4), tag=tag)


def test_cold_fit_runs_in_the_background_then_frames_warm_start():
    rc = _Recon()
    tr = Tracker(rc, background=True)
    r0 = _update(tr, tag="frame 0")
    assert r0.status == "cold_start_pending" and r0.object_pose is None and tr.cold_running
    r1 = _update(tr, tag="frame 1")  # while it runs: answered at once, no second fit
    assert r1.status == "cold_start_pending" and "running in the background" in r1.message
    assert _until(lambda: rc.calls == ["cold"]) and tr.take_completed() is None  # the thread has picked it up
    rc.release.set()
    assert tr.wait(10.0) and not tr.cold_running
    tag, cold = tr.take_completed()  # the cold fit, once, with its own frame's tag
    assert tag == "frame 0" and cold.ok and not cold.metrics["warm_start"] and tr.take_completed() is None
    r2 = _update(tr, tag="frame 2")
    assert r2.status == "ok" and r2.metrics["warm_start"] and rc.calls == ["cold", "warm"]
    assert tr.cold_fits == 1 and tr.resets == 0 and tr.take_completed() is None
    tr.close()


def test_degraded_warm_fit_starts_a_background_cold_fit():
    rc = _Recon()
    rc.release.set()
    tr = Tracker(rc, background=True)
    _update(tr)
    tr.wait(10.0)
    rc.release.clear()
    rc.reproj = 0.2  # the warm fit degrades
    r = _update(tr)
    assert r.status == "cold_start_pending" and r.metrics["tracker_reset"] and tr.resets == 1
    assert _until(lambda: rc.calls == ["cold", "warm", "cold"]) and tr.cold_running
    rc.reproj = 0.01
    rc.release.set()
    tr.wait(10.0)
    assert _update(tr).status == "ok" and rc.calls[-1] == "warm"


def test_reset_cancels_a_running_cold_fit_and_close_stops_the_thread():
    rc = _Recon()
    tr = Tracker(rc, background=True)
    _update(tr)
    assert _until(lambda: rc.calls == ["cold"])
    tr.reset()  # e.g. the object or the camera changed while it ran: cancelled at its next iteration
    assert tr.wait(5.0)  # without the release: it was cancelled
    assert tr.last is None and tr.take_completed() is None and not rc.cancel.is_set()
    assert _update(tr).status == "cold_start_pending" and _until(lambda: rc.calls == ["cold", "cold"])  # a new one
    tr.close(timeout=5.0)  # shutdown while it runs: cancelled, the thread ends
    assert not tr._thread.is_alive() and not tr.cold_running and tr.take_completed() is None
    assert _update(tr).status == "bad_input"


def test_inline_tracker_fits_cold_in_the_callers_thread():
    rc = _Recon()
    rc.release.set()
    tr = Tracker(rc)
    r = _update(tr)
    assert r.status == "ok" and not r.metrics["warm_start"] and not tr.cold_running
    assert _update(tr).metrics["warm_start"] and rc.calls == ["cold", "warm"]
