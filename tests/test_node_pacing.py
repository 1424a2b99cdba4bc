"""The node's run-time pacing. ``enabled`` (pause): a frame already perceived when the node is paused is dropped and
counted, and the first frame after resuming restarts the reconstruction's track (the scene moved on while paused);
``cold_start_max_rate_hz``: the rate limit while a background cold fit runs. The real ContactNode (rclpy, its own
context) with an estimator double; the DDS path of the pause is in tests/test_node_ros.py (test_pause_and_resume)."""
from __future__ import annotations

import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from interactvlm_ros.ros.diagnostics import to_diagnostic_array  # noqa: E402
from interactvlm_ros.ros.node import ContactNode  # noqa: E402


class _Stop(Exception):
    pass


class EstimatorDouble:
    reconstruct = False

    def __init__(self):
        self.resets, self.estimates, self.closed = 0, 0, False

    def reset_tracking(self):
        self.resets += 1

    def close(self):
        self.closed = True

    def estimate(self, *args, **kwargs):
        self.estimates += 1
        raise _Stop  # the rest of the frame is not this test's business


@pytest.fixture
def node():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=97)
    n = ContactNode(estimator=EstimatorDouble(), context=ctx, parameter_overrides=[Parameter("camera_info_wait", value=0.0)])
    yield n
    n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def _infer(node):
    msg = types.SimpleNamespace(header=Header(frame_id="cam"))
    node._infer(msg, 0.0, np.zeros((8, 8, 3), np.uint8), None, 0.0, 0.0, 0.0)


def test_paused_frame_is_dropped_and_resume_restarts_the_track(node):
    est = node.estimator
    assert node.set_parameters([Parameter("enabled", value=False)])[0].successful
    _infer(node)  # perceived before the pause, inferred after it
    assert est.estimates == 0 and node.stats.snapshot()["counters"]["paused"] == 1
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful
    with pytest.raises(_Stop):
        _infer(node)
    assert est.resets == 1 and est.estimates == 1
    with pytest.raises(_Stop):
        _infer(node)
    assert est.resets == 1  # only the first frame after resuming
    # setting the same value again changes nothing
    assert node.set_parameters([Parameter("enabled", value=True)])[0].successful
    with pytest.raises(_Stop):
        _infer(node)
    assert est.resets == 1


def test_pause_state_in_diagnostics(node):
    node.stats.state = "running"
    node.set_parameters([Parameter("enabled", value=False)])
    st = to_diagnostic_array(node.stats.snapshot(), "n", "hw").status[0]
    assert node.stats.state == "paused" and st.message == "paused (enabled:=false)" and st.level == st.OK
    kv = {v.key: v.value for v in st.values}
    assert kv["state"] == "paused" and kv["frames_paused"] == "0"
    node.set_parameters([Parameter("enabled", value=True)])
    assert node.stats.state == "running"


def test_frames_are_throttled_while_a_background_cold_fit_runs(node):
    """``cold_start_max_rate_hz`` (default 2): while the tracker's background cold fit runs, the perception thread
    starts frames at most that often — on 2 cores the contact stream at full rate starved the fit (measured: first
    pose 26.7 s after the first frame at 10 Hz unthrottled, 11.6 s at 2 Hz)."""
    node.estimator.tracker = types.SimpleNamespace(cold_running=True)
    assert node._rate_limit() == 2.0
    node.set_parameters([Parameter("max_rate_hz", value=1.0)])
    assert node._rate_limit() == 1.0  # the lower of the two
    node.set_parameters([Parameter("max_rate_hz", value=0.0), Parameter("cold_start_max_rate_hz", value=5.0)])
    assert node._rate_limit() == 5.0
    node.estimator.tracker.cold_running = False
    assert node._rate_limit() == 0.0  # no fit running: as fast as the model runs
    node.estimator.tracker.cold_running = True
    node.set_parameters([Parameter("cold_start_max_rate_hz", value=0.0)])
    assert node._rate_limit() == 0.0  # 0 = no limit
    assert not node.set_parameters([Parameter("cold_start_max_rate_hz", value=-1.0)])[0].successful


def test_part_names_parameter_is_the_part_vocabulary_and_read_only(node):
    """What the ``part`` field of ~/human_contacts indexes, readable by any parameter client, not settable."""
    from interactvlm_ros.bodies.parts import PART_NAMES

    assert list(node.get_parameter("part_names").value) == PART_NAMES
    result = node.set_parameters([Parameter("part_names", value=["x"])])[0]
    assert not result.successful
    assert list(node.get_parameter("part_names").value) == PART_NAMES


def test_numeric_parameters_take_either_number_type_and_refuse_the_rest(node):
    """`ros2 param set /interactvlm_contact max_rate_hz 5` sends an integer: taken as 5.0; out of range, a
    boolean or a string: refused with the rule, the value in force kept."""
    assert node.set_parameters([Parameter("max_rate_hz", value=5)])[0].successful and node._max_rate == 5.0
    assert node.set_parameters([Parameter("overlay_tile", value=128.0)])[0].successful
    assert node._overlay_tile == 128 and isinstance(node._overlay_tile, int)
    assert node.set_parameters([Parameter("contact_threshold", value=1)])[0].successful and node._threshold == 1.0
    assert node._markers.threshold == 1.0
    for name, value in [("max_rate_hz", "fast"), ("max_rate_hz", True), ("contact_threshold", 2),
                        ("overlay_tile", 100.5), ("marker_max_faces", -1)]:
        r = node.set_parameters([Parameter(name, value=value)])[0]
        assert not r.successful and name in r.reason, (name, value, r.reason)
    assert (node._max_rate, node._threshold, node._overlay_tile) == (5.0, 1.0, 128)


def test_a_refused_request_changes_nothing_in_force(node):
    """set_parameters_atomically (and every multi-parameter callback): rclpy keeps all old values when one is refused,
    so the node must too — the valid values before the refused one used to be put in force already."""
    label = node._label
    r = node.set_parameters_atomically([Parameter("contact_threshold", value=0.2), Parameter("object_label", value="cup"),
                                        Parameter("enabled", value=False), Parameter("max_rate_hz", value=-1.0)])
    assert not r.successful and "max_rate_hz" in r.reason
    assert (node._threshold, node._markers.threshold, node._label, node._enabled) == (0.5, 0.5, label, True)
    assert node.get_parameter("contact_threshold").value == 0.5 and node.get_parameter("object_label").value == label
    r = node.set_parameters_atomically([Parameter("contact_threshold", value=0.2), Parameter("object_label", value="cup"),
                                        Parameter("object_frame_id", value="held_object")])
    assert r.successful and (node._threshold, node._markers.threshold, node._label) == (0.2, 0.2, "cup")
    assert node._object_frame == "held_object"


def test_start_up_numbers_are_coerced_or_refused():
    from interactvlm_ros.ros.node import ConfigError

    ctx = Context()
    rclpy.init(context=ctx, domain_id=97)
    try:
        n = ContactNode(estimator=EstimatorDouble(), context=ctx, parameter_overrides=[
            Parameter("contact_threshold", value=1), Parameter("camera_info_wait", value=0),
            Parameter("marker_max_faces", value=500.0), Parameter("part_names", value=["x", "y"])])
        assert (n._threshold, n._K_first_wait, n._markers.max_faces) == (1.0, 0.0, 500)
        from interactvlm_ros.bodies.parts import PART_NAMES

        assert list(n.get_parameter("part_names").value) == PART_NAMES  # an override cannot rename the parts
        assert isinstance(n._K_first_wait, float) and isinstance(n._markers.max_faces, int)
        n.destroy_node()
        for prm, msg in [(Parameter("depth_max_dt", value=-1), r"depth_max_dt must be a number in \[0, 1000\]"),
                         (Parameter("contact_threshold", value=False), "contact_threshold must be a number"),
                         (Parameter("reconstruct", value="yes"), "reconstruct must be a boolean like false")]:
            with pytest.raises(ConfigError, match=msg):
                ContactNode(estimator=EstimatorDouble(), context=ctx, parameter_overrides=[prm])
    finally:
        rclpy.try_shutdown(context=ctx)


def test_diagnostics_warn_when_images_stop_coming(monkeypatch):
    """image_timeout: /diagnostics goes WARN 'no image on <topic> …' when the camera stopped (or never came), OK again
    with the next image, and stays OK while paused; 0 = never warn."""
    from interactvlm_ros.ros import diagnostics

    clock = [50.0]
    monkeypatch.setattr(diagnostics.time, "monotonic", lambda: clock[0])
    ctx = Context()
    rclpy.init(context=ctx, domain_id=97)
    n = ContactNode(estimator=EstimatorDouble(), context=ctx,
                    parameter_overrides=[Parameter("camera_info_wait", value=0.0), Parameter("image_timeout", value=2)])
    OK, WARN = (bytes([v]) for v in (0, 1))  # DiagnosticStatus levels as rclpy holds them
    try:
        n._stop_event.set()  # the frame threads: this test is about the executor callback and /diagnostics
        n.stats.state = "running"

        def status():
            st = n._diagnostics().status[0]
            return st.level, st.message, {v.key: v.value for v in st.values}["image_age_s"]

        assert status() == (OK, "running", "0.0")
        clock[0] += 2.5
        assert status() == (WARN, "no image received on /image yet", "2.5")
        n._on_image(object())  # the executor's callback: counted, put into the frame slot
        assert status() == (OK, "running", "0.0") and n.stats.snapshot()["counters"]["received"] == 1
        clock[0] += 3.0
        assert status()[:2] == (WARN, "no image on /image for 3.0 s")
        assert n.set_parameters([Parameter("enabled", value=False)])[0].successful
        assert status()[:2] == (OK, "paused (enabled:=false)")  # asked for: not a camera problem
        assert n.set_parameters([Parameter("enabled", value=True)])[0].successful
        assert n.set_parameters([Parameter("image_timeout", value=0.0)])[0].successful
        assert status()[:2] == (OK, "running")
        assert not n.set_parameters([Parameter("image_timeout", value=-1.0)])[0].successful
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=ctx)


class FitDouble(EstimatorDouble):
    """An estimator that reconstructs: records what each frame's estimate got (object_mask / object_box)."""
    reconstruct = True

    def __init__(self):
        super().__init__()
        self.kwargs = []

    def estimate(self, *args, **kwargs):
        self.kwargs.append(kwargs)
        raise _Stop


@pytest.fixture
def fit_node():
    """(node, FitDouble): a ContactNode that reconstructs, its frame threads stopped — the test hands frames to
    ``_infer`` and reads what the estimator got."""
    ctx = Context()
    rclpy.init(context=ctx, domain_id=97)
    est = FitDouble()
    n = ContactNode(estimator=est, context=ctx, parameter_overrides=[Parameter("camera_info_wait", value=0.0)])
    n._stop_event.set()
    yield n, est
    n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def _fit_frame(n, est, sec, shape):
    """Hand an image of ``shape`` with stamp ``sec`` to the node's ``_infer``; the estimate() keyword arguments."""
    from builtin_interfaces.msg import Time

    msg = types.SimpleNamespace(header=Header(frame_id="cam", stamp=Time(sec=sec)))
    with pytest.raises(_Stop):
        n._infer(msg, 0.0, np.zeros(shape, np.uint8), None, 0.0, 0.0, 0.0)
    return est.kwargs[-1]


def test_a_detectors_box_paired_by_stamp_goes_to_the_fit(fit_node):
    """object_detections (vision_msgs/Detection2DArray; a duck-typed message here — vision_msgs is not on PyPI):
    the detections with the image's stamp are paired, the object's box goes to the estimator as object_box; no
    detection of its class → counted and a named fallback; a paired object_mask wins over a box."""
    from builtin_interfaces.msg import Time

    from interactvlm_ros.ros import node as node_module
    from test_node_conversions import _detection  # (pytest puts tests/ on sys.path)

    n, est = fit_node

    def frame(sec):
        return _fit_frame(n, est, sec, (480, 640, 3))

    def detections(sec, *dets):
        n._on_detections(types.SimpleNamespace(header=Header(stamp=Time(sec=sec)), detections=list(dets)))

    detections(5, _detection("person", 0.9, 320, 240, 200, 400), _detection("sports ball", 0.8, 400, 100, 50, 50))
    assert frame(5)["object_box"] == (375.0, 75.0, 425.0, 125.0)  # label 'ball' (the default)
    assert "object_box" not in frame(9)  # nothing within object_detections_max_dt: estimated
    assert n.stats.snapshot()["counters"]["object_detections_unmatched"] == 1
    detections(12, _detection("person", 0.9, 320, 240, 200, 400))
    assert "object_box" not in frame(12)
    snap = n.stats.snapshot()
    assert snap["counters"]["object_detections_no_class"] == 1
    assert any("none of class 'ball'" in fb for fb in snap["fallbacks"]), snap["fallbacks"]
    assert n.set_parameters([Parameter("object_detection_class", value="person")])[0].successful
    assert frame(12)["object_box"] == (220.0, 40.0, 420.0, 440.0)
    # a segmenter's mask for the same frame says more: no box then
    mask = np.zeros((480, 640), np.uint8)
    mask[100:200, 100:200] = 255
    n._on_object_mask(node_module.conv.numpy_to_image(mask, "mono8", Header(stamp=Time(sec=12))))
    kw = frame(12)
    assert "object_box" not in kw and kw["object_mask"].sum() == 100 * 100
    detections(20, _detection("cup", 0.5, float("nan"), 1, 2, 2))  # a broken message: named, counted, skipped
    assert n.stats.snapshot()["bad_input"]["bad_detections"] == 1


def test_reset_tracking_request_restarts_the_track_before_the_next_frame(node):
    """``~/reset_tracking`` (std_srvs/Trigger): with reconstruct the next frame restarts the track (once); without it the
    request is refused with the reason."""
    from std_srvs.srv import Trigger

    est = node.estimator
    r = node._on_reset_tracking(Trigger.Request(), Trigger.Response())
    assert not r.success and "reconstruct is false" in r.message
    node._params["reconstruct"] = True
    r = node._on_reset_tracking(Trigger.Request(), Trigger.Response())
    assert r.success and est.resets == 0  # applied by the worker, before its next frame
    for _ in range(2):
        with pytest.raises(_Stop):
            _infer(node)
    assert est.resets == 1 and node.stats.snapshot()["counters"]["reconstruction_reset_requests"] == 1



def test_lifecycle_node_in_process_configure_fails_on_a_bad_parameter_and_succeeds_once_it_is_fixed():
    """A lifecycle node whose start-up label is blank: configure fails (nothing created), the label is set while the node
    is unconfigured (as a manager would), configure succeeds with it; deactivate drops a frame in flight; cleanup
    removes the topics and the reset service, and a second cleanup path (destroy_node) is harmless."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from interactvlm_ros.ros.node import ContactLifecycleNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=95)
    est = EstimatorDouble()
    n = ContactLifecycleNode(estimator=est, context=ctx, parameter_overrides=[
        Parameter("object_label", value="  "), Parameter("camera_info_wait", value=0.0)])
    try:
        assert n.trigger_configure() == R.FAILURE
        assert not list(n.subscriptions) and not n._configured
        assert n.set_parameters([Parameter("object_label", value="cup")])[0].successful
        assert n.trigger_configure() == R.SUCCESS
        assert n._label == "cup" and n.stats.state == "inactive" and n.estimator is est
        assert any(s.topic_name == "/image" for s in n.subscriptions)
        assert n.trigger_activate() == R.SUCCESS and n._active and n.stats.state == "running"
        with pytest.raises(_Stop):
            _infer(n)
        assert est.resets == 1  # activation starts a new track
        assert n.trigger_deactivate() == R.SUCCESS
        _infer(n)  # perceived while active, inferred after the deactivation: dropped and counted
        assert est.estimates == 1 and n.stats.snapshot()["counters"]["inactive"] == 1
        assert n.trigger_cleanup() == R.SUCCESS
        assert not list(n.subscriptions) and not any(s.srv_name.endswith("reset_tracking") for s in n.services)
        assert not any(p.topic_name.endswith(("/human_contacts", "/diagnostics")) for p in n.publishers)
        assert not list(n.timers)
        assert n.estimator is est  # a given estimator is kept for the next configure: its track reset, not closed
        assert est.resets == 2 and not est.closed
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_lifecycle_node_error_in_a_transition_releases_everything(monkeypatch):
    """A transition callback that raises (rclpy: ERROR -> on_error): the node releases what it holds and ends up
    unconfigured, from where it can be configured again."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from interactvlm_ros.ros.node import ContactLifecycleNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=95)
    n = ContactLifecycleNode(estimator=EstimatorDouble(), context=ctx)
    try:
        assert n.trigger_configure() == R.SUCCESS and list(n.subscriptions)
        assert n.trigger_activate() == R.SUCCESS
        # deactivate drops the waiting frame: made to raise (a frame put in the slot instead could be taken by the
        # perception thread first — the test was flaky under load)
        monkeypatch.setattr(n, "_drop_waiting_frame", lambda *a: 1 / 0)
        assert n.trigger_deactivate() != R.SUCCESS
        assert n._state_machine.current_state[1] == "unconfigured"
        assert not n._configured and not list(n.subscriptions)
        monkeypatch.undo()
        assert n.trigger_configure() == R.SUCCESS and list(n.subscriptions)
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_lifecycle_cleanup_ends_a_paced_wait_at_once_and_no_thread_outlives_it():
    """max_rate_hz 0.1: the perception thread waits up to 10 s before its next frame. cleanup ends that wait at once
    (it used to block 5 s, give up the join, and the old thread then ran beside the next configure's thread); after a
    new configure only the new thread perceives."""
    import threading
    import time

    from rclpy.lifecycle import TransitionCallbackReturn as R

    from interactvlm_ros.ros.node import ContactLifecycleNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=95)
    n = ContactLifecycleNode(estimator=EstimatorDouble(), context=ctx, parameter_overrides=[
        Parameter("camera_info_wait", value=0.0), Parameter("max_rate_hz", value=0.1)])
    seen = []
    n._perceive = lambda *frame: seen.append((threading.current_thread(), frame)) or None

    def offer(frame):
        with n._cv:
            n._slot = frame
            n._cv.notify_all()

    def wait_for(cond, timeout=5.0):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            time.sleep(0.02)
        return cond()

    try:
        assert n.trigger_configure() == R.SUCCESS and n.trigger_activate() == R.SUCCESS
        offer(("a",))
        assert wait_for(lambda: len(seen) == 1)
        old = seen[0][0]
        offer(("b",))  # 10 s until it may start
        time.sleep(0.3)
        assert len(seen) == 1 and old.is_alive()
        t0 = time.monotonic()
        assert n.trigger_deactivate() == R.SUCCESS and n.trigger_cleanup() == R.SUCCESS
        assert time.monotonic() - t0 < 2.0 and not old.is_alive()
        assert len(seen) == 1  # the waiting frame was not perceived after the cleanup
        assert n.set_parameters([Parameter("max_rate_hz", value=0.0)])[0].successful
        assert n.trigger_configure() == R.SUCCESS and n.trigger_activate() == R.SUCCESS
        for k in range(3):
            offer((f"c{k}",))
            assert wait_for(lambda: len(seen) == 2 + k)
        assert {t for t, _ in seen[1:]} == {n._perception} and n._perception is not old
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_depth_of_another_size_is_not_counted_as_matched(fit_node):
    """Depth not registered to the image (848x480 beside 1280x720 colour): paired by stamp but unusable — counted as
    depth/size_mismatch with a named fallback, never as depth/matched (it used to read 'matched' on every frame while
    nothing was fitted with depth); depth of the image's size is matched and goes to the fit."""
    from builtin_interfaces.msg import Time

    from interactvlm_ros.ros import conversions as conv

    n, est = fit_node

    def frame(sec, depth_shape):
        n._on_depth(conv.numpy_to_image(np.full(depth_shape, 1000, np.uint16), "16UC1", Header(stamp=Time(sec=sec))))
        return _fit_frame(n, est, sec, (720, 1280, 3))

    assert frame(3, (480, 848))["depth"] is None
    c = n.stats.snapshot()["counters"]
    assert c["depth_size_mismatch"] == 1 and "depth_matched" not in c
    assert any("depth is 848x480 but images are 1280x720" in f for f in n.stats.snapshot()["fallbacks"])
    kv = {v.key: v.value for v in n._diagnostics().status[0].values}
    assert kv["depth/size_mismatch"] == "1" and "depth/matched" not in kv
    assert frame(4, (720, 1280))["depth"].shape == (720, 1280)
    assert n.stats.snapshot()["counters"]["depth_matched"] == 1


def test_a_binned_camera_info_gives_the_fit_its_intrinsics(fit_node):
    """A 2x2-binned camera (CameraInfo 1280x720 calibration, binning 2, images 640x360): the fit gets the binned K
    (it used to be taken as another resolution's, ignored, and the default ~45° intrinsics used)."""
    from sensor_msgs.msg import CameraInfo

    n, est = fit_node
    n._on_camera_info(CameraInfo(width=1280, height=720, binning_x=2, binning_y=2,
                                 k=[900.0, 0, 640.0, 0, 900.0, 360.0, 0, 0, 1]))
    K = _fit_frame(n, est, 1, (360, 640, 3))["K"]
    np.testing.assert_allclose(K, [[450.0, 0, 320.0], [0, 450.0, 180.0], [0, 0, 1]])
    assert not any("intrinsics ignored" in f for f in n.stats.snapshot()["fallbacks"])


def test_a_callback_that_raises_does_not_end_the_node(fit_node, monkeypatch):
    """The node's spin step: an exception no check foresaw in a subscription callback (here the depth decoder) is
    counted and logged, and the executor goes on delivering messages (it used to propagate out of spin and end the
    process)."""
    import time

    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from interactvlm_ros.ros import node as node_module

    n, _ = fit_node
    calls = []

    def broken(msg):
        calls.append(msg.header.stamp.sec)
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(n, "_decode_depth", broken)
    pub_node = rclpy.create_node("depth_source", context=n.context)
    executor = SingleThreadedExecutor(context=n.context)
    executor.add_node(n)
    try:
        pub = pub_node.create_publisher(Image, "depth", 10)
        for sec in (1, 2):
            end = time.monotonic() + 10.0
            while sec not in calls and time.monotonic() < end:  # (re)published until delivered: discovery takes a moment
                pub.publish(Image(header=Header(stamp=Time(sec=sec)), height=1, width=1, encoding="16UC1", step=2,
                                  data=b"\0\0"))
                node_module._spin_once(executor, n, 0.1)
        assert calls[0] == 1 and calls[-1] == 2  # messages are still delivered after one raised
        assert n.stats.snapshot()["bad_input"]["internal_error"] == len(calls)
        assert "decoder bug" in n.stats.snapshot()["last_error"]
    finally:
        executor.shutdown()
        pub_node.destroy_node()


def test_the_label_topic_sets_the_parameter(node):
    """~/object_label is a shortcut for the object_label parameter: `ros2 param get` shows what the topic set, and a
    refused label (counted as bad input) changes neither."""
    from std_msgs.msg import String

    node._on_label(String(data="mug"))
    assert node._label == "mug" and node.get_parameter("object_label").value == "mug"
    node._on_label(String(data="cup\x07"))
    assert node._label == "mug" and node.get_parameter("object_label").value == "mug"
    assert node.stats.snapshot()["bad_input"]["bad_label"] == 1
    node._on_mesh(String(data="/no/such/mesh.obj"))
    assert node.get_parameter("object_mesh").value == "" and node.stats.snapshot()["bad_input"]["bad_mesh"] == 1


def test_a_mesh_found_unusable_at_run_time_resets_the_parameter(node, tmp_path):
    """A mesh that passed the parameter check but that the estimator refuses on a frame (the file was replaced since):
    the node goes back to the library mesh, and the object_mesh parameter follows (on the executor thread, through the
    guard condition) so that `ros2 param get` and a lifecycle re-configure do not name the unusable file. A newer value
    set before the executor ran is left alone."""
    import time

    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from interactvlm_ros.ros import node as node_module

    mesh = tmp_path / "mug.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    other = tmp_path / "bowl.obj"
    other.write_text(mesh.read_text())
    node._on_mesh(String(data=str(mesh)))
    assert node.get_parameter("object_mesh").value == str(mesh)
    node.estimator.estimate = lambda *a, **k: types.SimpleNamespace(status="bad_input", timings={},
                                                                     message=f"object mesh {mesh}: no triangles")
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        _infer(node)
        assert node._mesh == "" and node.stats.info["object_mesh"] == "(library)"
        end = time.monotonic() + 5.0
        while node.get_parameter("object_mesh").value and time.monotonic() < end:
            node_module._spin_once(executor, node, 0.05)
        assert node.get_parameter("object_mesh").value == ""
        assert node.stats.snapshot()["bad_input"]["bad_mesh"] == 1
        # the user set another mesh after the frame but before the executor ran: that one stays
        node._on_mesh(String(data=str(mesh)))
        _infer(node)
        node._on_mesh(String(data=str(other)))
        for _ in range(5):
            node_module._spin_once(executor, node, 0.05)
        assert node.get_parameter("object_mesh").value == str(other) and node._mesh == str(other)
    finally:
        executor.shutdown()


def test_teardown_cancels_a_running_fit_without_waiting_for_the_estimators_lock(node):
    """Teardown used to call reset_tracking() first, which takes the estimator's lock — held by estimate() for a whole
    frame (an inline cold fit: seconds; an official model on a CPU: minutes). It now asks the tracker to cancel
    (no lock), lets the worker come back, and resets afterwards."""
    import threading
    import time

    lock, cancel = threading.Lock(), threading.Event()
    est = node.estimator
    est.tracker = types.SimpleNamespace(request_cancel=cancel.set)
    took_lock = []

    def reset_tracking():  # as the pipeline's: waits for a running estimate
        with lock:
            took_lock.append(time.monotonic())

    est.reset_tracking = reset_tracking
    entered = threading.Event()

    def estimate():  # a fit that stops when cancelled (else after 3 s)
        with lock:
            entered.set()
            cancel.wait(3.0)

    worker = threading.Thread(target=estimate)
    worker.start()
    entered.wait(2.0)
    t0 = time.monotonic()
    node._teardown()
    worker.join()
    assert cancel.is_set() and took_lock and took_lock[0] - t0 < 1.0, took_lock


def test_a_frame_that_outlives_its_teardown_publishes_nothing(node, monkeypatch):
    """A frame still being estimated when its node is torn down (an inline cold fit takes seconds; teardown waits 5 s
    for the worker) must not publish on the publishers teardown destroyed: the worker's stop event is checked first."""
    import threading

    node.estimator.estimate = lambda *a, **k: types.SimpleNamespace(status="ok", message="", timings={})
    published = []
    monkeypatch.setattr(node, "_publish", lambda *a: published.append(a))
    stop = threading.Event()
    msg = types.SimpleNamespace(header=Header(frame_id="cam"))
    node._infer(msg, 0.0, np.zeros((8, 8, 3), np.uint8), None, 0.0, 0.0, 0.0, stop=stop)
    assert len(published) == 1
    stop.set()  # teardown happened while the next frame was estimated
    node._infer(msg, 0.0, np.zeros((8, 8, 3), np.uint8), None, 0.0, 0.0, 0.0, stop=stop)
    assert len(published) == 1


def test_an_image_without_a_frame_id_is_named(fit_node):
    """Outputs of an image whose header has no frame_id cannot be placed by RViz or tf2: a named fallback says so (and
    what to set); frame_id_override gives them a frame."""
    n, est = fit_node
    assert n._out_header(Header(frame_id="cam")).frame_id == "cam"
    assert not any("empty header.frame_id" in f for f in n.stats.snapshot()["fallbacks"])
    assert n._out_header(Header(frame_id="")).frame_id == ""
    assert any("empty header.frame_id" in f and "frame_id_override" in f for f in n.stats.snapshot()["fallbacks"])
    assert n.set_parameters([Parameter("frame_id_override", value="camera_optical")])[0].successful
    assert n._out_header(Header(frame_id="")).frame_id == "camera_optical"
    # tf2 refuses a leading '/' (ROS 1's '/camera_link') and spaces: refused with the fix, the frame in force kept
    for name in ("frame_id_override", "object_frame_id"):
        for bad, word in (("/camera_link", "use 'camera_link'"), ("camera link", "no spaces")):
            r = n.set_parameters([Parameter(name, value=bad)])[0]
            assert not r.successful and word in r.reason, (name, bad, r.reason)
    assert n._out_header(Header(frame_id="")).frame_id == "camera_optical"
    from interactvlm_ros.ros.node import ConfigError, _declare

    class _Start:  # a node started with -p frame_id_override:=/camera_link: one ConfigError line, as other values
        def has_parameter(self, name):
            return True

        def get_parameter(self, name):
            return Parameter(name, value="/camera_link" if name == "frame_id_override" else n.get_parameter(name).value)

    with pytest.raises(ConfigError, match="frame_id_override='/camera_link'"):
        _declare(_Start())


def test_a_model_error_frame_publishes_nothing_and_is_counted(node, monkeypatch):
    """A frame the estimator reports as 'model_error' (NaN/inf from the localizer) is skipped like bad input: one log
    line, /diagnostics bad_input/model_error, and nothing published (no empty cloud that would read as "no contact")."""
    lines, published = [], []
    monkeypatch.setattr(node, "get_logger", lambda: types.SimpleNamespace(info=lines.append, warning=lines.append))
    monkeypatch.setattr(node, "_publish", lambda *a, **k: published.append(a))
    node.estimator.estimate = lambda *a, **k: types.SimpleNamespace(
        status="model_error", timings={}, cues="", message="the localizer's output is not finite (human_logits 64/1024)")
    _infer(node)
    _infer(node)
    assert published == []
    snap = node.stats.snapshot()
    assert snap["bad_input"]["model_error"] == 2 and snap["counters"]["bad_input"] == 2, snap
    assert len(lines) == 1 and "skipped (model_error)" in lines[0] and "not finite" in lines[0]


def test_the_object_meshs_scale_and_centre_go_to_diagnostics(node):
    """~/object_pose is the pose of the fitted mesh (centred on its vertex mean, scaled); the scale and the centre it
    took from the input mesh are /diagnostics object_scale / object_mesh_centre, so a planner holding the mesh file
    can place it: file pose = object_pose · [s·I, −s·c]."""
    from interactvlm_ros.recon import Reconstruction

    s, c = 0.001, np.array([400.0, -250.0, 380.0])  # a mesh in millimetres, centred 0.6 m from its origin
    T = np.eye(4)
    T[:3, :3] *= s
    T[:3, 3] = -s * c
    pose = np.eye(4)
    pose[:3, 3] = [0.1, 0.0, 2.0]
    rec = Reconstruction("ok", object_pose=pose, object_mesh_transform=T)
    node._publish_reconstruction(rec, Header(frame_id="cam"))
    info = node.stats.snapshot()["info"]
    assert float(info["object_scale"]) == pytest.approx(s)
    assert np.allclose([float(x) for x in info["object_mesh_centre"].split()], c)


@pytest.mark.parametrize("status", ["model_error", "bad_input"])
def test_a_skipped_frame_still_publishes_an_earlier_frames_finished_cold_fit(node, monkeypatch, status):
    """``estimate`` hands a finished background cold fit over once, with whichever frame comes next; a frame skipped
    as 'model_error' (or bad input) returned before ``_publish`` and the cold fit's poses were never published."""
    from interactvlm_ros.recon import Reconstruction

    monkeypatch.setattr(node, "get_logger", lambda: types.SimpleNamespace(info=print, warning=print))
    published = []
    monkeypatch.setattr(node, "_publish_reconstruction", lambda rec, header, late=False: published.append(
        (rec.status, header.frame_id, late)))
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 2.0]
    node.estimator.estimate = lambda *a, **k: types.SimpleNamespace(
        status=status, timings={}, cues="", message="the localizer's output is not finite",
        late_reconstruction=(Header(frame_id="earlier"), Reconstruction("ok", object_pose=pose)))
    _infer(node)
    assert published == [("ok", "earlier", True)]


def test_lifecycle_node_parameters_are_declared_and_checked_while_unconfigured():
    """docs/node.md: an unconfigured lifecycle node has its parameters declared — a manager (or `ros2 param set`) sets
    them before `configure`, which reads them. They used to be declared only by `configure` (set before it: 'parameter
    not declared'), and after `cleanup` nothing checked a value any more: a blank label or a missing mesh was taken and
    only the next `configure` failed. Unconfigured, a value is checked (refused with the reason, the old value stays)
    and put in force by the next `configure`."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from interactvlm_ros.ros.node import PARAMETERS, ContactLifecycleNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=95)
    n = ContactLifecycleNode(estimator=EstimatorDouble(), context=ctx, parameter_overrides=[
        Parameter("camera_info_wait", value=0.0)])
    try:
        assert all(n.has_parameter(name) for name in PARAMETERS)
        assert n.set_parameters([Parameter("object_label", value="cup")])[0].successful
        for name, value in [("object_label", ""), ("object_mesh", "/nonexistent/mug.obj"), ("max_rate_hz", -1.0),
                            ("max_rate_hz", "fast"), ("object_frame_id", " ")]:
            r = n.set_parameters([Parameter(name, value=value)])[0]
            assert not r.successful and r.reason, (name, value)
        assert n.get_parameter("object_label").value == "cup" and n.get_parameter("max_rate_hz").value == 0.0
        assert n.trigger_configure() == R.SUCCESS and n._label == "cup"
        assert n.set_parameters([Parameter("contact_threshold", value=0.3)])[0].successful and n._threshold == 0.3
        assert n.trigger_cleanup() == R.SUCCESS
        for name, value in [("object_label", ""), ("object_mesh", "/nonexistent/mug.obj")]:
            assert not n.set_parameters([Parameter(name, value=value)])[0].successful, (name, value)
        assert n.set_parameters([Parameter("object_label", value="bottle")])[0].successful
        assert n.trigger_configure() == R.SUCCESS and n._label == "bottle" and n._threshold == 0.3
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=ctx)
