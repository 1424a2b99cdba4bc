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
