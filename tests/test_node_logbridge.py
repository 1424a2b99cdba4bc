"""The core's Python logging in the node's ROS log (``ros/logbridge.py``), with a logger double and with rclpy's."""
from __future__ import annotations

import logging
import threading

import pytest

from interactvlm_ros.ros import logbridge


class RosLoggerDouble:
    def __init__(self, level=20):
        self.level = level
        self.lines = []

    def get_effective_level(self):
        return self.level

    def __getattr__(self, severity):
        if severity not in ("debug", "info", "warning", "error", "fatal"):
            raise AttributeError(severity)
        return lambda text: self.lines.append((severity, text))


def test_records_from_any_thread_reach_the_ros_logger_with_their_severity_and_module():
    ros = RosLoggerDouble(level=20)  # INFO
    before = logging.getLogger("interactvlm_ros").level
    remove = logbridge.bridge(ros)
    try:
        log = logging.getLogger("interactvlm_ros.recon.reconstructor")
        log.debug("not shown at INFO")
        log.info("cold fit %s", "ok")
        log.warning("fallback: %s", "no camera intrinsics")
        t = threading.Thread(target=lambda: logging.getLogger("interactvlm_ros.pipeline").error("from a thread"))
        t.start()
        t.join()
        logging.getLogger("interactvlm_ros").critical("top")
        logging.getLogger("someone_else").warning("not ours")
    finally:
        remove()
    assert ros.lines == [("info", "[recon.reconstructor] cold fit ok"),
                         ("warning", "[recon.reconstructor] fallback: no camera intrinsics"),
                         ("error", "[pipeline] from a thread"),
                         ("fatal", "[interactvlm_ros] top")]
    # removed: nothing more is forwarded and the logger's level is back
    logging.getLogger("interactvlm_ros.pipeline").warning("after")
    assert len(ros.lines) == 4 and logging.getLogger("interactvlm_ros").level == before


def test_the_python_level_follows_the_ros_level():
    ros = RosLoggerDouble(level=10)  # --log-level debug
    remove = logbridge.bridge(ros)
    try:
        logging.getLogger("interactvlm_ros.lift").debug("detail")
    finally:
        remove()
    assert ros.lines == [("debug", "[lift] detail")]
    ros = RosLoggerDouble(level=30)  # warn
    remove = logbridge.bridge(ros)
    try:
        logging.getLogger("interactvlm_ros.lift").info("hidden")
    finally:
        remove()
    assert ros.lines == []


def test_a_real_rclpy_logger(capfd):
    rclpy_logging = pytest.importorskip("rclpy.logging")
    ros = rclpy_logging.get_logger("interactvlm_logbridge_test")
    remove = logbridge.bridge(ros)
    try:
        assert logging.getLogger("interactvlm_ros").level == int(ros.get_effective_level())
        logging.getLogger("interactvlm_ros.pipeline").warning("through rcutils")
    finally:
        remove()
    err = capfd.readouterr().err  # rcutils writes the console line itself (not Python's stderr)
    line = next(x for x in err.splitlines() if "through rcutils" in x)
    assert "[WARN]" in line and "[interactvlm_logbridge_test]" in line and "[pipeline] through rcutils" in line
    assert "Logging error" not in err
