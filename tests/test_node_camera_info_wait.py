"""The node's first frame waits for the first CameraInfo when camera_info has a publisher (``camera_info_wait``):
a driver's first image can arrive before its first CameraInfo, and that frame would use default intrinsics (with
``reconstruct:=true`` its cold fit would be restarted when the real K arrives). The method runs on a double of the
node (its rclpy parts: the subscription's topic, the graph's publisher count, the logger); the DDS path is covered by
tests/test_node_reconstruct.py (its frames come with CameraInfo: no default-intrinsics fallback may show)."""
from __future__ import annotations

import threading
import time
import types

import pytest

pytest.importorskip("rclpy")

from interactvlm_ros.ros.diagnostics import NodeStats  # noqa: E402
from interactvlm_ros.ros.node import PARAMETERS, ContactNode  # noqa: E402


class LoggerDouble:
    def __init__(self):
        self.lines = []

    def __getattr__(self, severity):
        return lambda text: self.lines.append((severity, text))


def _node(publishers: int, wait: float = 0.5):
    node = types.SimpleNamespace(
        _K_first_wait=wait, _K_ready=threading.Event(), _info_sub=types.SimpleNamespace(topic_name="/cam/camera_info"),
        count_publishers=lambda topic: publishers if topic == "/cam/camera_info" else 0,
        stats=NodeStats(), logger=LoggerDouble())
    node.get_logger = lambda: node.logger
    node.wait = types.MethodType(ContactNode._wait_first_camera_info, node)
    node._fallback = types.MethodType(ContactNode._fallback, node)
    return node


def _fallbacks(node):
    return node.stats.snapshot()["fallbacks"]  # /diagnostics fallback/<i>


def test_default_is_one_second_and_read_only():
    default, desc, read_only = PARAMETERS["camera_info_wait"]
    assert default == 1.0 and read_only and "CameraInfo" in desc


def test_first_frame_waits_for_a_camera_info_that_arrives_late():
    node = _node(publishers=1, wait=5.0)
    threading.Timer(0.2, node._K_ready.set).start()  # the executor thread's _on_camera_info
    t0 = time.monotonic()
    node.wait()
    waited = time.monotonic() - t0
    assert 0.15 < waited < 4.0, waited  # returned when it came, not at the time-out
    assert _fallbacks(node) == [] and not [s for s, _ in node.logger.lines if s == "warning"]
    assert node._K_first_wait == 0.0  # spent: later frames never wait


def test_time_out_is_a_named_fallback_in_log_and_diagnostics_and_happens_once():
    node = _node(publishers=1, wait=0.3)
    t0 = time.monotonic()
    node.wait()
    assert time.monotonic() - t0 >= 0.29
    (fb,) = _fallbacks(node)
    assert "/cam/camera_info" in fb and "camera_info_wait=0.3" in fb and "default intrinsics" in fb
    assert ("warning", f"fallback: {fb}") in node.logger.lines
    assert node._K_first_wait == 0.0


@pytest.mark.parametrize("publishers, ready", [(0, False), (2, True)])
def test_no_wait_without_a_publisher_or_when_a_camera_info_is_already_there(publishers, ready):
    node = _node(publishers=publishers, wait=5.0)
    if ready:
        node._K_ready.set()
    t0 = time.monotonic()
    node.wait()
    assert time.monotonic() - t0 < 0.5
    assert _fallbacks(node) == [] and node.logger.lines == []


# ------------------------------------------------------------------ an uncalibrated camera (CameraInfo.k[0] == 0)
def _info_node(wait: float = 5.0):
    """A double with what ``_on_camera_info`` touches (state, lock, the bad-input log throttle)."""
    from interactvlm_ros import lens

    node = _node(publishers=1, wait=wait)
    node.__dict__.update(_state_lock=threading.Lock(), _K=None, _K_size=None, _dist=None, _K_rect=None,
                         _undistort=False, _dist_noted=False, _bad_log={}, _bad_log_lock=threading.Lock(),
                         _rectifier=lens.Rectifier())
    for name in ("_on_camera_info", "_on_uncalibrated", "_bad"):
        setattr(node, name, types.MethodType(getattr(ContactNode, name), node))
    return node


def test_an_uncalibrated_camera_is_a_named_fallback_not_bad_input_and_the_first_frame_does_not_wait():
    """camera_info_manager publishes zeros until a calibration is loaded (usb_cam, v4l2_camera without a calibration
    file); CameraInfo's own comment: K[0] == 0 means uncalibrated. At 30 Hz that used to be 30 'skipped
    (bad_camera_info)' warnings a second, and the first image waited camera_info_wait for a calibration that never
    comes."""
    from interactvlm_ros.ros import conversions as conv

    node = _info_node(wait=5.0)
    zeros = conv.make_camera_info(640, 480)
    zeros.k, zeros.p, zeros.d = [0.0] * 9, [0.0] * 12, []
    for _ in range(30):
        node._on_camera_info(zeros)
    snap = node.stats.snapshot()
    assert snap["counters"]["camera_info_uncalibrated"] == 30 and not snap["bad_input"]
    (fb,) = _fallbacks(node)  # listed once, logged once
    assert "uncalibrated" in fb and "/cam/camera_info" in fb and "default intrinsics" in fb
    assert node.logger.lines == [("warning", f"fallback: {fb}")]
    assert node._K is None
    t0 = time.monotonic()
    node.wait()  # the first frame: no 5 s wait, no "no CameraInfo within" fallback
    assert time.monotonic() - t0 < 0.5 and _fallbacks(node) == [fb]
    # calibrated later (camera_calibration's set_camera_info): its K is used from then on
    node._on_camera_info(conv.make_camera_info(640, 480))
    assert node._K is not None and node._K[0, 0] > 0 and node._K_size == (640, 480)


def test_a_camera_info_with_a_negative_focal_length_stays_bad_input():
    from interactvlm_ros.ros import conversions as conv

    node = _info_node()
    info = conv.make_camera_info(640, 480)
    info.k = [-500.0] + list(info.k[1:])
    node._on_camera_info(info)
    assert node.stats.snapshot()["bad_input"] == {"bad_camera_info": 1} and not node._K_ready.is_set()
    assert not conv.camera_info_uncalibrated(info)


def test_repeated_bad_input_is_counted_every_time_and_logged_once_per_period(monkeypatch):
    """A broken stream at camera rate: every message counted in /diagnostics, one log line per reason per
    BAD_INPUT_LOG_PERIOD_S, and the next line says how many were not logged; reasons do not hold each other back."""
    from interactvlm_ros.ros import conversions as conv
    from interactvlm_ros.ros import node as node_module

    clock = [100.0]
    monkeypatch.setattr(node_module.time, "monotonic", lambda: clock[0])
    node = _info_node()
    for _ in range(30):
        node._bad(conv.InputError("encoding 'yuv9' is not supported", "bad_encoding"))
        clock[0] += 0.033
    node._bad(conv.InputError("step 5 < width * 3", "bad_step"))
    lines = [t for _, t in node.logger.lines]
    assert lines == ["skipped (bad_encoding): encoding 'yuv9' is not supported", "skipped (bad_step): step 5 < width * 3"]
    assert node.stats.snapshot()["bad_input"] == {"bad_encoding": 30, "bad_step": 1}
    clock[0] = 100.0 + node_module.BAD_INPUT_LOG_PERIOD_S
    node._bad(conv.InputError("encoding 'yuv9' is not supported", "bad_encoding"))
    assert node.logger.lines[-1] == ("warning", "skipped (bad_encoding): encoding 'yuv9' is not supported (29 more since "
                                                "the last such line, counted in /diagnostics bad_input/bad_encoding)")
    node._bad(conv.InputError("encoding 'yuv9' is not supported", "bad_encoding"))
    assert len(node.logger.lines) == 3  # the period starts again
