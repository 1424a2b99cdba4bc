"""ContactEstimator's tracking state over a long run: reset_tracking() cancels an inline cold fit instead of waiting
for it, a finished background fit does not outlive a reset, a reconstruction that raises is a 'failed' result, and
the named fallbacks stay bounded however many labels a node is fed. A localizer double (zero logits) stands in for the
model; the reconstructor's fit is replaced where the test is about its timing."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from interactvlm_ros.pipeline import ContactEstimator, Fallbacks

pytest.importorskip("anny")

IMAGE = np.zeros((120, 160, 3), np.uint8)


class _Localizer:
    name = backend = "double"
    asset_size = 64
    predicts_object = predicts_human = True

    def __init__(self):
        self.fallbacks = Fallbacks()

    def predict(self, image, label, human_assets, object_assets, observation=None):
        hl = np.zeros((len(human_assets.renders), 16, 16), np.float32)
        ol = np.zeros((len(object_assets.renders), 16, 16), np.float32)
        return SimpleNamespace(human_logits=hl, object_logits=ol, text="", timings={}, extras={})


def _estimator(**kw) -> ContactEstimator:
    return ContactEstimator(localizer=_Localizer(), perception="none", asset_size=64, reconstruct=True, **kw)


def test_reset_tracking_cancels_an_inline_cold_fit_instead_of_waiting_for_it():
    """reconstruct_cold_start=inline: reset_tracking() (the node's teardown of a given estimator) waited for the whole
    cold fit — estimate() holds the lock for it — and cancelled nothing. Now the fit stops at its next iteration, its
    frame reports 'cancelled', and the next frame's fit runs (the cancel request is cleared)."""
    from interactvlm_ros.recon import Reconstruction
    from interactvlm_ros.recon.body_fit import check_cancel

    est = _estimator(perception_mode="video", reconstruct_cold_start="inline")
    started = threading.Event()

    def fit(image, observation, human_contact=None, init=None, **kw):  # 3 s, checking cancel as the real fits do
        started.set()
        for _ in range(300):
            check_cancel(est.reconstructor.cancel, "body fit")
            time.sleep(0.01)
        return Reconstruction("ok", "done")

    est.reconstructor.fit = fit
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", est.estimate(IMAGE, "ball")))
    th.start()
    assert started.wait(30.0)
    t = time.monotonic()
    est.reset_tracking()
    waited = time.monotonic() - t
    th.join(10.0)
    assert waited < 1.0, f"reset_tracking() waited {waited:.2f} s for the 3 s fit"
    rec = out["r"].reconstruction
    assert rec.status == "cancelled" and "cancelled" in rec.message and rec.object_pose is None
    assert out["r"].status == "ok" and out["r"].human_contact is not None  # the contact result is kept
    assert not est.reconstructor.cancel.is_set()
    est.reconstructor.fit = lambda *a, **k: Reconstruction("ok", "next")
    nxt = est.estimate(IMAGE, "ball").reconstruction
    assert nxt.status == "ok" and nxt.message == "next" and not nxt.metrics["warm_start"]
    est.close()


def test_reset_tracking_drops_a_background_fit_that_finished_before_it():
    """A background cold fit of the ball that finished between frames was handed over after reset_tracking() with
    the next frame (of the cup) as its late result; now the reset drops it."""
    from interactvlm_ros.recon import Reconstruction

    est = _estimator(perception_mode="video", reconstruct_cold_start="background")
    est.reconstructor.fit = lambda image, obs, cr, init=None, **kw: Reconstruction("ok", f"fit of {cr.object_label}")
    est.reconstructor.unfittable = lambda *a, **kw: None  # the double fits frames without a person too
    assert est.estimate(IMAGE, "ball", frame_tag="ball frame").reconstruction.status == "cold_start_pending"
    assert est.tracker.wait(10.0)
    est.reset_tracking()
    r = est.estimate(IMAGE, "cup", frame_tag="cup frame")
    assert r.late_reconstruction is None and r.reconstruction.status == "cold_start_pending"
    assert est.tracker.wait(10.0)
    tag, late = est.estimate(IMAGE, "cup", frame_tag="next").late_reconstruction
    assert tag == "cup frame" and late.message == "fit of cup"
    est.close()


def test_an_inline_reconstruction_that_raises_is_a_failed_result():
    """The inline path names a reconstruction that raised as status 'failed' (the background path hands over the
    same status), keeps the contact result and says why in its message."""
    est = _estimator(perception_mode="video", reconstruct_cold_start="inline")

    def fit(*a, **k):
        return {}["missing_key"]

    est.reconstructor.fit = fit
    r = est.estimate(IMAGE, "ball")
    assert r.status == "ok" and r.human_contact is not None
    assert r.reconstruction.status == "failed" and r.reconstruction.object_pose is None
    assert r.message == r.reconstruction.message == "reconstruction failed: KeyError: 'missing_key'"
    est.close()


def test_fallbacks_keep_every_kind_and_the_latest_labels():
    fb = Fallbacks()
    assert fb.note("no camera intrinsics") and not fb.note("no camera intrinsics")
    for i in range(20):
        assert fb.note(f"object label 'thing {i}' unknown", label=True)
    assert fb.note("perception unavailable")
    assert not fb.note("object label 'thing 19' unknown", label=True)  # listed: no repeat
    kept = Fallbacks.LABEL_KEPT
    assert fb[0] == "no camera intrinsics" and "perception unavailable" in fb and len(fb) == 2 + kept + 1
    assert [f for f in fb if "thing" in f] == [f"object label 'thing {i}' unknown" for i in range(20 - kept, 20)]
    assert fb[-1] == f"… {20 - kept} earlier label fallbacks not listed (each was logged when taken)"
    assert isinstance(fb, list) and all(isinstance(f, str) for f in fb)
    fb.clear()
    assert fb == [] and fb.note("x", label=True) and fb == ["x"]


def test_fallbacks_stay_bounded_with_many_unknown_labels():
    """Each unknown label added an entry to the estimator's fallbacks ('unknown to the library') and the
    reconstructor's ('object size unknown'), for ever; now each keeps the latest labels and a count. The fits are real
    (no person observed: 'no_person', after the object size and intrinsics are taken)."""
    est = _estimator(perception_mode="photo")
    for i in range(30):
        r = est.estimate(IMAGE, f"gadget number {i}")
        assert r.reconstruction.status == "no_person"
    for part in (est, est.reconstructor):
        assert len(part.fallbacks) <= 2 + Fallbacks.LABEL_KEPT, part.fallbacks
        assert "'gadget number 29'" in part.fallbacks[-2]
        assert part.fallbacks[-1].startswith(f"… {30 - Fallbacks.LABEL_KEPT} earlier label fallbacks")
    assert any(f.startswith("no camera intrinsics") for f in est.reconstructor.fallbacks)  # taken once, kept
    names = est.all_fallbacks()
    assert all(isinstance(f, str) for f in names) and len(names) <= 2 * (2 + Fallbacks.LABEL_KEPT)
    est.close()


def test_fallbacks_stay_bounded_with_a_moving_principal_point():
    """A K whose principal point is far from the image centre is a named fallback; its text held the point, so a
    crop that moves (camera_info roi: a new cx every frame) listed one more entry per frame in the reconstructor's
    fallbacks (and the node's /diagnostics), for ever. Now it is named once per image size."""
    est = _estimator(perception_mode="photo")
    for i in range(25):
        K = np.array([[150.0, 0.0, 5.0 + i], [0.0, 150.0, 60.0], [0.0, 0.0, 1.0]])  # cx 5..29 of a 160 px wide image
        assert est.estimate(IMAGE, "ball", K=K).reconstruction.status == "no_person"
    off = [f for f in est.all_fallbacks() if "principal point" in f]
    assert len(off) == 1 and "160x120" in off[0], off
    est.close()


@pytest.mark.parametrize("side", ["human", "object"])
def test_a_localizer_giving_nan_is_a_model_error_not_nan_contact(side):
    """An engine overflowing in fp16 (or damaged weights) gives NaN logits: lifted, NaN contact went out as an 'ok'
    frame (all-NaN human masks: 2924 NaN vertices), and NaN in part of an object mask vanished silently. Now the frame
    is 'model_error' with no contact and no fit, named once as a fallback; the next finite frame is ok again."""
    loc = _Localizer()
    good = loc.predict

    def nan_predict(image, label, human_assets, object_assets, observation=None):
        out = good(image, label, human_assets, object_assets)
        logits = getattr(out, f"{side}_logits")
        logits[:, 4:8, 4:8] = np.nan
        return out

    est = ContactEstimator(localizer=loc, perception="none", asset_size=64, reconstruct=True)
    loc.predict = nan_predict
    r = est.estimate(IMAGE, "ball")
    assert r.status == "model_error" and f"{side}_logits 64/" in r.message
    assert r.human_contact is None and r.object_contact is None and r.reconstruction is None
    assert any("NaN/inf" in f for f in est.all_fallbacks())
    loc.predict = good
    ok = est.estimate(IMAGE, "ball")
    assert ok.status == "ok" and np.isfinite(ok.human_contact).all()
    est.close()
