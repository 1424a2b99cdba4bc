"""Tracker(background=True): a cold fit runs in its own thread while update() answers "cold_start_pending" at once;
the finished fit is handed over once with its frame's tag (a fit that raised as 'failed'), the next frame warm-starts
from it; a degraded warm fit starts another (an ok one is returned meanwhile); reset() cancels a running one and drops
a finished one not yet taken, close() stops the thread; request_cancel() stops an inline fit too; warm_start marks ok
warm frames in both modes.
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
        self.reproj = 0.01  # body 2-D error of the fits it returns (> 0.05: a degraded warm fit; > 0.1: diverged)
        self.error: Exception | None = None  # raised by the cold fits (a bug)
        self.warm_status = "ok"  # status of the warm fits (e.g. object_not_visible)

    def unfittable(self, image, observation, K=None, depth=None):  # as Reconstructor's: None = a fit would run
        return Reconstruction("bad_depth", "as asked") if depth is not None and not np.isfinite(depth).any() else None

    def fit(self, image, observation, human_contact=None, init=None, **kw):
        self.calls.append("cold" if init is None else "warm")
        if self.error is not None and init is None:
            raise self.error
        if init is not None and self.warm_status != "ok":
            return Reconstruction(self.warm_status, "as asked")
        if init is None:
            for _ in range(1000):  # "iterations" until released, cancelled at the next one
                check_cancel(self.cancel, "cold fit")
                if self.release.wait(0.01):
                    break
            else:
                raise AssertionError("test did not release the cold fit")
        if self.reproj > 0.1:  # as Reconstructor(max_reproj_rel=0.1): no pose
            return Reconstruction("diverged", "body fit diverged", metrics={"body_reproj_rel": self.reproj})
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


def test_reset_drops_a_finished_cold_fit_not_yet_taken():
    """A cold fit that finished between two frames belongs to the track a reset (new object, ~/reset_tracking,
    teardown) forgets: it is not handed over with the next frame (it was, as that frame's late result)."""
    rc = _Recon()
    rc.release.set()
    tr = Tracker(rc, background=True)
    _update(tr, tag="ball frame")
    assert tr.wait(10.0)
    tr.reset()
    assert tr.take_completed() is None and tr.last is None
    assert _update(tr, tag="cup frame").status == "cold_start_pending"  # a new track: a new cold fit
    tr.close()


def test_a_background_cold_fit_that_raises_is_handed_over_failed_with_its_traceback(caplog):
    """A bug inside the background cold fit: its frame gets a 'failed' late result (as the inline path's status) and
    the log has the traceback; the next frame starts another cold fit (it was 'cold_start_pending' forever)."""
    rc = _Recon()
    rc.error = KeyError("missing_key")
    tr = Tracker(rc, background=True)
    with caplog.at_level("WARNING", logger="interactvlm_ros.recon.reconstructor"):
        assert _update(tr, tag="frame 0").status == "cold_start_pending"
        assert tr.wait(10.0)
    tag, rec = tr.take_completed()
    assert tag == "frame 0" and rec.status == "failed" and "KeyError" in rec.message and "missing_key" in rec.message
    assert rec.object_pose is None and not rec.metrics["warm_start"] and tr.last is None
    failed = [r for r in caplog.records if "background cold fit failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None and failed[0].exc_info[0] is KeyError
    assert _update(tr, tag="frame 1").status == "cold_start_pending" and tr.wait(10.0)
    assert tr.take_completed()[0] == "frame 1" and tr.cold_fits == 2
    tr.close()


def test_warm_start_marks_ok_warm_frames_only_in_both_modes():
    """metrics["warm_start"] (the node's reconstruction/warm): an ok frame fitted warm; a failed warm frame is not
    counted (inline counted it, background did not)."""
    for background in (False, True):
        rc = _Recon()
        rc.release.set()
        tr = Tracker(rc, background=background)
        first = _update(tr)
        tr.wait(10.0)
        assert not first.metrics["warm_start"]
        assert _update(tr).metrics["warm_start"] is True  # ok, warm
        rc.warm_status = "object_not_visible"
        r = _update(tr)
        assert r.status == "object_not_visible" and r.metrics["warm_start"] is False, background
        tr.close()


def test_an_ok_warm_fit_above_the_reset_limit_is_returned_while_its_cold_refit_runs():
    """Body 2-D error 7 %: ok (< 10 %) but above reset_reproj_rel (5 %). Inline returned that frame ok (after its cold
    re-fit), background answered it 'cold_start_pending': now it gets its ok warm result, marked as having started a
    cold re-fit, which only restarts the track (not handed over: its frame has its pose)."""
    rc = _Recon()
    rc.release.set()
    tr = Tracker(rc, background=True)
    _update(tr, tag="frame 0")
    assert tr.wait(10.0) and tr.take_completed()[0] == "frame 0"
    rc.release.clear()
    rc.reproj = 0.07
    r = _update(tr, tag="frame 1")
    assert r.status == "ok" and r.object_pose is not None and r.metrics["body_reproj_rel"] == 0.07
    assert r.metrics["warm_start"] and r.metrics["tracker_reset"] and r.metrics["cold_start_running"]
    assert tr.resets == 1 and _until(lambda: rc.calls == ["cold", "warm", "cold"]) and tr.cold_running
    assert _update(tr, tag="frame 2").status == "cold_start_pending"  # while the re-fit runs
    rc.reproj = 0.01
    rc.release.set()
    assert tr.wait(10.0) and tr.take_completed() is None and tr.last is not None
    r = _update(tr, tag="frame 3")
    assert r.status == "ok" and r.metrics["warm_start"] and rc.calls[-1] == "warm"
    tr.close()


def test_request_cancel_stops_an_inline_fit_in_another_thread():
    """ContactEstimator.reset_tracking's first step, outside its lock: an inline cold fit running in another thread's
    update() stops at its next iteration and its frame reports 'cancelled'; reset(cancelled=True) clears the request,
    so the next fit runs."""
    rc = _Recon()
    tr = Tracker(rc)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", _update(tr)))
    th.start()
    assert _until(lambda: rc.calls == ["cold"])
    tr.request_cancel()
    th.join(5.0)
    assert not th.is_alive(), "the inline fit was not cancelled"
    assert out["r"].status == "cancelled" and "cancelled" in out["r"].message and out["r"].object_pose is None
    assert not out["r"].metrics["warm_start"] and tr.last is None
    tr.reset()  # a reset that does not answer the request (e.g. a new object): the request stays
    assert rc.cancel.is_set() and _update(tr).status == "cancelled"
    tr.reset(cancelled=True)
    assert not rc.cancel.is_set()
    rc.release.set()
    assert _update(tr).status == "ok"


def test_a_frame_no_fit_can_use_is_answered_at_once_without_a_background_fit():
    """A frame whose depth is unusable (or K, or no person) was answered cold_start_pending, its background cold fit
    ended bad_depth in ms and was handed over with the next frame — which started another one: every frame one thread
    job and a late answer. Now the frame is answered at once (Reconstructor.unfittable) and no cold fit starts; a
    usable frame still starts one."""
    rc = _Recon()
    tr = Tracker(rc, background=True)
    img = np.zeros((4, 4, 3), np.uint8)
    for _ in range(3):
        r = tr.update(img, object(), np.zeros(4), depth=np.full((4, 4), np.nan, np.float32))
        assert r.status == "bad_depth" and r.metrics["warm_start"] is False
    assert tr.cold_fits == 0 and rc.calls == [] and not tr.cold_running
    assert tr.update(img, object(), np.zeros(4), depth=np.ones((4, 4), np.float32)).status == "cold_start_pending"
    rc.release.set()
    assert tr.wait(5.0) and tr.cold_fits == 1
    tr.close()


def test_reconstructor_unfittable_names_the_frames_a_fit_refuses():
    """The real check: what fit() returns at once for K, depth and the person (the same code)."""
    from types import SimpleNamespace

    from interactvlm_ros.recon import Reconstructor

    rc = Reconstructor()
    img = np.zeros((48, 64, 3), np.uint8)
    kp = np.zeros((33, 3))
    kp[:, :2], kp[:, 2] = (10.0, 10.0), 1.0
    person = SimpleNamespace(found=True, keypoints_2d=kp)
    assert rc.unfittable(img, person) is None
    assert rc.unfittable(img, person, depth=np.full((48, 64), np.nan, np.float32)).status == "bad_depth"
    assert rc.unfittable(img, person, K=np.zeros((3, 3))).status == "bad_intrinsics"
    assert rc.unfittable(img, SimpleNamespace(found=False)).status == "no_person"
    assert rc.unfittable(np.zeros((4, 4)), person).status == "bad_input"
    # a K for twice the resolution (cx, cy at the image's corner) is legal (a crop) but named
    assert not [f for f in rc.fallbacks if "another resolution" in f]
    assert rc.unfittable(img, person, K=np.array([[80.0, 0, 64], [0, 80, 48], [0, 0, 1]])) is None
    assert [f for f in rc.fallbacks if "another resolution" in f]
