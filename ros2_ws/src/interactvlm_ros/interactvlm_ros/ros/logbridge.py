"""The core's Python ``logging`` records in the node's ROS log (console, /rosout, log files).

The core (pipeline, models, reconstruction) imports nothing from ROS and logs with ``logging``; in the node
nobody configured Python logging, so its INFO lines were dropped and its warnings (named fallbacks, e.g.
"label 'X' is unlike every trained category") reached stderr bare — not /rosout, not the ROS log files,
and from the background cold-fit thread not at all when below WARNING. ``bridge`` attaches one handler to
the ``interactvlm_ros`` logger that forwards every record, from any thread, to the node's rclpy logger,
prefixed with the module (``[recon.reconstructor] ...``). rclpy severities use Python's numbers (DEBUG 10 …
FATAL 50), so the Python logger's level follows the node's (``--ros-args --log-level``).

No library does this for rclpy (``rclpy.logging`` has no ``logging.Handler``), hence the few lines here.
"""
from __future__ import annotations

import logging
from typing import Callable

ROOT = "interactvlm_ros"


class RosLogHandler(logging.Handler):
    """``logging.Handler`` → an rclpy logger (``node.get_logger()``; anything with debug/info/warning/error/fatal)."""

    def __init__(self, ros_logger, root: str = ROOT):
        super().__init__()
        self.ros_logger = ros_logger
        self._prefix = root + "."

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name[len(self._prefix):] if record.name.startswith(self._prefix) else record.name
            text = f"[{name}] {self.format(record)}"
            lvl = record.levelno
            if lvl >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif lvl >= logging.ERROR:
                self.ros_logger.error(text)
            elif lvl >= logging.WARNING:
                self.ros_logger.warning(text)
            elif lvl >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # a logging failure must not break the thread that logged
            self.handleError(record)


def bridge(ros_logger, root: str = ROOT) -> Callable[[], None]:
    """Forward the ``root`` Python logger (and its children) to ``ros_logger``; its level becomes the ROS logger's
    effective level. Returns the function that undoes both (the node calls it in ``destroy_node``)."""
    logger = logging.getLogger(root)
    handler = RosLogHandler(ros_logger, root)
    previous = logger.level
    try:
        level = int(ros_logger.get_effective_level())
    except Exception:  # not an rclpy logger: INFO, as the CLIs log
        level = logging.INFO
    logger.setLevel(level)
    logger.addHandler(handler)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return remove
