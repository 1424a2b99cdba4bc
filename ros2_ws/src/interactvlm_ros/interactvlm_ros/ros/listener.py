"""A client of the contact node: publishes camera input, records (and optionally prints) the outputs.

Used by the demo (``python -m interactvlm_ros.ros.demo``), the benchmark and the tests. It spins its
own executor on a background thread, in its own rclpy Context (so a domain id can be chosen per use).
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from . import conversions as conv
from ..bodies.parts import PART_NAMES
from .diagnostics import diagnostic_values

OUTPUTS = {
    "markers": MarkerArray,
    "human_contacts": PointCloud2,
    "object_contacts": PointCloud2,
    "overlay": Image,
    # with reconstruct:=true
    "object_pose": PoseStamped,
    "human_grip_poses": PoseArray,
    "free_grasp_regions": PointCloud2,
}


def describe(kind: str, msg) -> str:
    """One line: message type, stamp, frame and sizes."""
    if kind == "diagnostics":
        v = diagnostic_values(msg)
        return (f"[diagnostics] state={v.get('state')} processed={v.get('frames_processed')} "
                f"dropped={v.get('frames_dropped')} bad_input={v.get('frames_bad_input')} "
                f"latency_p95={v.get('latency_ms_p95')}ms rate={v.get('output_rate_hz')}Hz")
    h = msg.markers[0].header if kind == "markers" and msg.markers else getattr(msg, "header", None)
    stamp = f"{h.stamp.sec}.{h.stamp.nanosec:09d}" if h is not None else "-"
    frame = h.frame_id if h is not None else "-"
    if kind == "markers":
        parts = [f"{m.ns}:{m.text!r}" if m.text else f"{m.ns}:{len(m.points)}pts" for m in msg.markers[1:]]
        size = f"{len(msg.markers)} markers (DELETEALL + {', '.join(parts) or 'nothing'})"
    elif isinstance(msg, PointCloud2):
        fields = conv.cloud_to_numpy(msg)
        c = fields.get("contact", np.zeros(0))
        size = f"{msg.width * msg.height} points" + (f", contact max {c.max():.2f}" if c.size else "")
        if c.size and "part" in fields:  # the human cloud: the body parts of its points, most points first
            ids, n = np.unique(fields["part"], return_counts=True)
            names = [PART_NAMES[i] if i < len(PART_NAMES) else "unknown" for i in ids[np.argsort(-n, kind="stable")]]
            size += f" on {', '.join(names[:3])}" + (f" (+{len(names) - 3})" if len(names) > 3 else "")
    elif isinstance(msg, Image):
        size = f"{msg.width}x{msg.height} {msg.encoding}"
    elif isinstance(msg, PoseStamped):
        p = msg.pose.position
        size = f"object at ({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) m"
    elif isinstance(msg, PoseArray):
        size = f"{len(msg.poses)} grip poses"
    else:
        size = type(msg).__name__
    return f"[{kind}] stamp={stamp} frame={frame} {size}"


class ContactClient:
    """Publishes to the node's inputs and records its outputs.

    ``node_name``: the contact node's fully qualified name (outputs are ``<node_name>/<topic>``).
    ``image_reliable``: publish images/camera_info reliably (tests) instead of best effort.
    ``printer``: called with :func:`describe` lines for every output message (demo).
    ``raw``: outputs received as serialized bytes (no Python deserialization, like a C++ consumer such as
    RViz; the benchmark uses it for the markers so that the client's cost does not load the measured node).
    """

    def __init__(self, domain_id: int | None = None, node_name: str = "/interactvlm_contact",
                 image_topic: str = "image", camera_info_topic: str = "camera_info", depth_topic: str = "depth",
                 image_reliable: bool = True, printer=None, keep: int = 2000, outputs=tuple(OUTPUTS),
                 raw=()):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(f"interactvlm_client_{id(self) % 100000}", context=self.context)
        self.printer = printer
        self._lock = threading.Lock()
        self.received: dict[str, collections.deque] = {k: collections.deque(maxlen=keep) for k in (*OUTPUTS, "diagnostics")}
        qos_in = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if image_reliable else ReliabilityPolicy.BEST_EFFORT)
        self.pub_image = self.node.create_publisher(Image, image_topic, qos_in)
        self.pub_info = self.node.create_publisher(CameraInfo, camera_info_topic, qos_in)
        self.pub_depth = self.node.create_publisher(Image, depth_topic, qos_in)
        self.pub_label = self.node.create_publisher(String, f"{node_name}/object_label", 10)
        self.pub_mesh = self.node.create_publisher(String, f"{node_name}/object_mesh", 10)
        for kind in outputs:  # subscribe only to what is needed: markers are costly to deserialize in Python
            mtype = OUTPUTS[kind]
            self.node.create_subscription(mtype, f"{node_name}/{kind}", self._recorder(kind), 10, raw=kind in raw)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # context shut down under us; anything else is said, not swallowed
                if self.context.ok():
                    print(f"ContactClient: stopped receiving: {type(exc).__name__}: {exc}", file=sys.stderr)
                break

    def _recorder(self, kind):
        def cb(msg):
            with self._lock:
                self.received[kind].append((time.monotonic(), msg))
            if self.printer is not None and not isinstance(msg, bytes):
                try:
                    line = describe(kind, msg)
                except Exception as exc:  # a malformed message must not end the client's spin thread
                    line = f"[{kind}] unreadable {type(msg).__name__}: {type(exc).__name__}: {exc}"
                self.printer(line)
        return cb

    # -------------------------------------------------------------------------------- inputs
    def stamp(self, sec: int, nanosec: int = 0):
        from builtin_interfaces.msg import Time

        return Time(sec=int(sec), nanosec=int(nanosec))

    def publish_image(self, rgb: np.ndarray, stamp=None, frame_id: str = "camera_optical_frame",
                      encoding: str = "rgb8", camera_info: bool = True):
        arr = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
        msg = conv.numpy_to_image(arr, encoding)
        msg.header.stamp = stamp if stamp is not None else self.node.get_clock().now().to_msg()
        msg.header.frame_id = frame_id
        if camera_info:
            self.pub_info.publish(conv.make_camera_info(msg.width, msg.height, header=msg.header))
        self.pub_image.publish(msg)
        return msg

    def publish_raw(self, msg) -> None:
        self.pub_image.publish(msg)

    def wait_subscribers(self, timeout: float = 10.0) -> bool:
        t = time.monotonic() + timeout
        while time.monotonic() < t:
            if self.pub_image.get_subscription_count() > 0 and self.pub_label.get_subscription_count() > 0:
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------------------- outputs
    def count(self, kind: str) -> int:
        with self._lock:
            return len(self.received[kind])

    def messages(self, kind: str) -> list:
        with self._lock:
            return [m for _, m in self.received[kind]]

    def clear(self) -> None:
        with self._lock:
            for d in self.received.values():
                d.clear()

    def wait_for(self, predicate, timeout: float) -> bool:
        t = time.monotonic() + timeout
        while time.monotonic() < t:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def last_diagnostics(self) -> dict[str, str]:
        msgs = self.messages("diagnostics")
        for m in reversed(msgs):
            if m.status and "contact" in m.status[0].name:
                lvl = m.status[0].level  # a bytes of length 1 in rclpy
                lvl = lvl[0] if isinstance(lvl, (bytes, bytearray)) else int(lvl)
                return {**diagnostic_values(m), "_level": lvl, "_message": m.status[0].message}
        return {}

    def wait_state(self, state: str, timeout: float) -> dict[str, str]:
        """Wait until the node's diagnostics report ``state`` (or 'error'); return the values."""
        t = time.monotonic() + timeout
        while time.monotonic() < t:
            d = self.last_diagnostics()
            if d.get("state") in (state, "error"):
                return d
            time.sleep(0.1)
        return self.last_diagnostics()

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
        except Exception:
            pass
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for a node process on ``domain_id``, discovery on localhost only."""
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies (Linux), so no node is left orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def start_node_process(domain_id: int, params: dict | None = None, log_path=None, params_file=None,
                       remaps: dict | None = None, lifecycle: bool = False) -> subprocess.Popen:
    """``interactvlm-contact-node`` (``lifecycle``: ``interactvlm-contact-lifecycle-node``) as a subprocess of this
    Python with ``-p`` overrides and ``-r`` topic remaps; stdout+stderr go to ``log_path`` (or are inherited). The child
    is terminated if this process dies."""
    cmd = ([sys.executable, "-c", "import sys; from interactvlm_ros.ros.node import lifecycle_main; "
            "sys.exit(lifecycle_main())"] if lifecycle else [sys.executable, "-m", "interactvlm_ros.ros.node"])
    cmd.append("--ros-args")
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for k, v in (params or {}).items():
        v = str(v).lower() if isinstance(v, bool) else v
        cmd += ["-p", f"{k}:={v}"]
    for src, dst in (remaps or {}).items():
        cmd += ["-r", f"{src}:={dst}"]
    out = open(log_path, "w") if log_path else None
    return subprocess.Popen(cmd, env=ros_env(domain_id), stdout=out, stderr=subprocess.STDOUT if out else None,
                            preexec_fn=die_with_parent)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
