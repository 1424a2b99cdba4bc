"""``interactvlm_contact``: the ROS 2 contact node, a thin rclpy adapter over ``ContactEstimator``.

Threads (a three-stage pipeline; every hand-off is a one-element *newest* slot, so nothing queues and
latency never grows with the input rate):
    executor    subscription callbacks: validate small messages, put each image into the frame slot
                (a frame still waiting there when a newer one arrives is dropped and counted);
    perception  takes the newest frame (``max_rate_hz`` caps this), decodes it and runs human perception
                (``ContactEstimator.observe``: mediapipe, ~30 ms) into the observed slot (replaced
                frames are dropped and counted too);
    worker      loads the model, then takes the newest observed frame, runs the rest of the estimator
                (localize, lift, reconstruction) and publishes what planners use: the two contact
                clouds, and the object pose / grip poses / free regions with a reconstruction;
    cold fit    (reconstruct:=true, reconstruct_cold_start: background) the estimator's tracker runs a cold
                reconstruction (seconds) here while the worker goes on; its poses go out late with its frame's header;
    visuals     MarkerArray and overlay of the newest result (the markers as CDR bytes written from numpy,
                ``ros/cdr.py``: ~1-2 ms instead of ~13 ms of rclpy field-by-field conversion); a result
                replaced before its visuals were built is counted (``markers/skipped``).
Perception of frame N+1 overlaps inference of frame N and the visuals of frame N-1 (mediapipe,
onnxruntime and torch release the GIL), which is what makes 15 Hz possible on 2 cores.

Topics (all remappable; ``~`` = the node's namespace/name):
    sub  image (sensor_msgs/Image; image_transport:=compressed: CompressedImage on image/compressed),
         camera_info (CameraInfo), depth (Image 16UC1 mm | 32FC1 m; depth_transport:=compressedDepth:
         CompressedImage on depth/compressedDepth) and
         object_mask (Image mono8, nonzero = object; a segmentation node's), object_detections
         (vision_msgs/Detection2DArray, a detector's boxes; where vision_msgs is importable) — all paired with each
         image by stamp (``ros/sync.py``) and used by the reconstruction,
         ~/object_label (std_msgs/String), ~/object_mesh (std_msgs/String, path; "" = library mesh)
    pub  ~/markers (MarkerArray), ~/human_contacts (PointCloud2: x y z contact part), ~/object_contacts
         (PointCloud2: x y z contact),
         ~/overlay (Image rgb8; ~/overlay/compressed: jpeg), /diagnostics (DiagnosticArray),
         ~/object_pose (PoseStamped; also on /tf as object_frame_id with tf2_ros), ~/human_grip_poses (PoseArray),
         ~/free_grasp_regions (PointCloud2) — the last three only when the result carries a reconstruction.

Bad input never stops the node: it is logged in one line naming the field and the fix, counted in
/diagnostics (bad_input/<reason>), the frame is skipped, and label/mesh state is kept.

Two node classes share all of this (``_ContactNodeBase``): ``ContactNode`` (``interactvlm-contact-node``) starts at once;
``ContactLifecycleNode`` (``interactvlm-contact-lifecycle-node``) is a managed node whose ``configure`` loads the model,
``activate`` / ``deactivate`` gate the processing and ``cleanup`` lets everything go (docs/node.md).
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
import unicodedata

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, DurabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from . import cdr
from . import conversions as conv
from . import dds
from . import logbridge
from . import sync
from .. import lens
from ..bodies.parts import PART_NAMES
from .diagnostics import NodeStats, to_diagnostic_array
from .markers import MarkerBuilder, contact_points

try:  # a detector's boxes on object_detections (vision_msgs: a ROS install has it; it is not on PyPI)
    from vision_msgs.msg import Detection2DArray
    VISION_MSGS_MISSING = ""
except ImportError as _exc:
    Detection2DArray, VISION_MSGS_MISSING = None, str(_exc)

try:  # ~/reset_tracking (std_srvs: a ROS install has it; pip: ros-std-srvs)
    from std_srvs.srv import Trigger
    STD_SRVS_MISSING = ""
except ImportError as _exc:
    Trigger, STD_SRVS_MISSING = None, str(_exc)

NODE_NAME = "interactvlm_contact"
#: seconds between two log lines of the same bad-input reason (every bad message is still counted in /diagnostics)
BAD_INPUT_LOG_PERIOD_S = 5.0

# name -> (default, description, read_only)
PARAMETERS: dict[str, tuple[object, str, bool]] = {
    "object_label": ("ball", "object the person interacts with (prompt + library mesh); changes at run time", False),
    "object_mesh": ("", "path of the object's mesh (any format trimesh reads); '' = library mesh for object_label", False),
    "model": ("default", "'default' (embedded model) or a model path (official InteractVLM HF folder, ONNX export)", True),
    "backend": ("auto", "runtime: auto|tensorrt|onnxruntime|torch (auto: TensorRT > ORT CUDA > torch CUDA > ORT CPU > torch CPU)", True),
    "device": ("cpu", "cpu or cuda[:index]", True),
    "assets": ("", "official human assets folder (data/hcontact_vitruvian layout) for official checkpoints; '' = render the body", True),
    "body": ("anny", "body model for the template mesh: anny | smplh:/path | smplx:/path", True),
    "perception": ("auto", "human perception: auto | none | required", True),
    "perception_mode": ("video", "video (track person + hands between frames: faster) | photo (each frame independent)", True),
    "hand_model": ("lite", "mediapipe hand landmarker: lite (~3x faster) | full (a little more precise)", True),
    "person_search_every": (10, "when nobody is found in the full frame, look in zoomed crops (a person who fills less of "
                            "the frame; ~0.3-0.6 s) at most every N frames while nobody is found (0 = never)", True),
    "image_qos": ("sensor_data", "QoS of image/depth/camera_info subscriptions: sensor_data (best effort) | reliable", True),
    "image_transport": ("raw", "raw (sensor_msgs/Image on image) | compressed (CompressedImage on image/compressed: "
                        "image_transport's jpeg/png plugin, e.g. a camera over Wi-Fi)", True),
    "depth_transport": ("raw", "raw (Image on depth) | compressedDepth (CompressedImage on depth/compressedDepth: "
                        "image_transport's png depth plugin)", True),
    "undistort": (False, "undistort each image (and its depth / object mask) with CameraInfo's distortion before use: "
                  "for image_raw of a lens with distortion; leave false for rectified images (image_rect*)", False),
    "camera_info_wait": (1.0, "seconds the first image waits for the first CameraInfo when camera_info has a publisher "
                         "(0 = never; without it that frame uses default intrinsics)", True),
    "enabled": (True, "process images; false pauses the node (frames counted as frames_paused and dropped, no CPU "
                "spent, outputs stop; the track restarts on resume), e.g. outside a handover", False),
    "contact_threshold": (0.5, "vertices with contact >= this go into the point clouds and contact markers", False),
    "max_rate_hz": (0.0, "upper limit of processed frames per second (0 = as fast as the model runs)", False),
    "publish_overlay": (True, "publish ~/overlay (views with contact painted); computed only while subscribed", False),
    "overlay_tile": (256, "pixel size of one view in the overlay", False),
    "frame_id_override": ("", "frame_id for the outputs instead of the image's (e.g. when the camera driver's is wrong)", False),
    "reconstruct": (False, "fit human + object meshes in the camera frame (pose, grip, free grasp outputs)", True),
    "publish_tf": (True, "with reconstruct: also broadcast the object pose on /tf as frame object_frame_id, child of the "
                   "image's frame (needs tf2_ros: a ROS install; else a named fallback, ~/object_pose stays)", True),
    "object_frame_id": ("interactvlm_object", "TF child frame of the object pose (publish_tf)", False),
    "reconstruct_cold_start": ("background", "background: a cold fit (seconds; first frame, lost track) runs beside the "
                               "contact estimation, which keeps publishing | inline: every output waits for it", True),
    "cold_start_max_rate_hz": (2.0, "while a background cold fit runs, frames are processed at most this often (0 = no "
                               "limit): on a 2-core CPU the contact stream at full rate starves the fit of CPU", False),
    "marker_max_faces": (2000, "faces per displayed mesh (decimated for RViz; 0 = full mesh)", False),
    "depth_max_dt": (0.05, "seconds between an image's stamp and its depth's for the pair (nearest stamp; the frame "
                     "waits that long for a depth still in flight); none that close: fitted without depth", False),
    "object_mask_max_dt": (0.2, "seconds between an image's stamp and its object mask's for the pair (nearest stamp, "
                           "not waited for); none that close: the mask is estimated near the contact", False),
    "object_detections_max_dt": (0.2, "seconds between an image's stamp and its object_detections' for the pair "
                                 "(nearest stamp, not waited for); none that close: the region is estimated", False),
    "object_detection_class": ("", "class id of the object in object_detections ('' = a detection whose class names "
                               "object_label, synonyms included; a detector with numeric ids: e.g. '41' for COCO's cup)",
                               False),
    "depth_allow_nonfinite": (False, "accept NaN/inf pixels in 32FC1 depth (REP 118 sensors) instead of rejecting the frame", False),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages", True),
    "image_timeout": (5.0, "seconds without an image after which /diagnostics warns 'no image on <topic> for N s' "
                      "(a camera that stopped or was never connected; not while paused); 0 = never", False),
}


#: numeric parameters -> (type, lowest, highest): one rule for start-up values and run-time changes. An integer is
#: taken for a float parameter (a params file's ``max_rate_hz: 5``, ``-p contact_threshold:=1``: rclpy alone refuses
#: them with a traceback) and an integral float for an integer one; booleans and strings are refused.
_NUMERIC: dict[str, tuple[type, float, float]] = {
    "contact_threshold": (float, 0.0, 1.0), "max_rate_hz": (float, 0.0, 1000.0),
    "cold_start_max_rate_hz": (float, 0.0, 1000.0), "depth_max_dt": (float, 0.0, 1000.0),
    "object_mask_max_dt": (float, 0.0, 1000.0), "object_detections_max_dt": (float, 0.0, 1000.0),
    "camera_info_wait": (float, 0.0, 1000.0),
    "diagnostics_period": (float, 0.0, 1000.0), "image_timeout": (float, 0.0, 1e6), "overlay_tile": (int, 16, 2048),
    "marker_max_faces": (int, 0, 2 ** 31 - 1), "person_search_every": (int, 0, 1000),
}
#: run-time numeric parameters held as one node attribute each
_NUMERIC_ATTRS = {"max_rate_hz": "_max_rate", "cold_start_max_rate_hz": "_cold_rate",
                  "depth_max_dt": "_depth_max_dt", "object_mask_max_dt": "_mask_max_dt", "overlay_tile": "_overlay_tile",
                  "object_detections_max_dt": "_det_max_dt",
                  "image_timeout": "_image_timeout"}


def _number(name: str, value):
    """(``value`` as parameter ``name``'s type, None) when it satisfies ``_NUMERIC[name]``, else (None, the reason)."""
    kind, lo, hi = _NUMERIC[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (kind is float or float(value).is_integer())
    if ok and lo <= kind(value) <= hi:
        return kind(value), None
    return None, f"{_rule(name)}, got {value!r}"


def _rule(name: str) -> str:
    kind, lo, hi = _NUMERIC[name]
    return f"{name} must be {'an integer' if kind is int else 'a number'} in [{lo:g}, {hi:g}]"


def _descriptor(name: str, default, description: str, read_only: bool) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=description, read_only=read_only)
    if name in _NUMERIC:  # any numeric type gets through to _number (ranges shown by `ros2 param describe`)
        kind, lo, hi = _NUMERIC[name]
        d.dynamic_typing = True
        if kind is float:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        else:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
    return d


def _declare(node: Node, strict: bool = True) -> dict:
    """Declare ``PARAMETERS`` on ``node`` → {name: value} (numbers as their parameter's type). A value the node
    cannot run with raises ConfigError naming the parameter and what it takes (rclpy's own type and range errors
    included), so that ``main`` logs one line instead of a traceback. ``strict=False`` (an unconfigured lifecycle
    node's constructor): such a parameter is left undeclared, for ``configure`` to name it; the others are declared."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    p = {}
    for name, (default, desc, ro) in PARAMETERS.items():
        try:
            if node.has_parameter(name):  # a lifecycle node (configured again): the values in force
                p[name] = node.get_parameter(name).value
            else:
                p[name] = node.declare_parameter(name, default, _descriptor(name, default, desc, ro)).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            if not strict:
                continue
            if name in _NUMERIC:
                raise ConfigError(f"parameter {_rule(name)} ({exc})") from None
            like = str(default).lower() if isinstance(default, bool) else repr(default)
            kind = {bool: "boolean", str: "string"}.get(type(default), type(default).__name__)
            raise ConfigError(f"parameter {name} must be a {kind} like {like} ({exc})") from None
        if name in _NUMERIC:
            p[name], err = _number(name, p[name])
            if err and strict:
                raise ConfigError(f"parameter {err}")
        if name in _FRAME_PARAMETERS and strict and (err := _frame_problem(name, p[name])):
            raise ConfigError(f"parameter {err}")
    return p


#: frame-name parameters -> whether '' is allowed ('' frame_id_override: the image's own frame)
_FRAME_PARAMETERS = {"object_frame_id": False, "frame_id_override": True}


def _frame_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be the tf2 frame name of parameter ``name``, else None: tf2 refuses a leading '/' (ROS 1's
    '/camera_link') and names with spaces or control characters; RViz then cannot place the outputs."""
    v = str(value)
    if not v:
        return None if _FRAME_PARAMETERS[name] else f"{name} must be a non-empty frame name"
    if v.startswith("/"):
        return f"{name}='{v}': tf2 frame names do not start with '/' (ROS 1 style); use '{v.lstrip('/')}'"
    if any(c.isspace() or ord(c) < 32 for c in v):
        return f"{name}={v!r}: a frame name has no spaces or control characters"
    return None


def image_qos(kind: str, depth: int = 1) -> QoSProfile:
    """QoS of the image subscriptions: 'sensor_data' (best effort) or 'reliable', keep-last ``depth``.

    The node subscribes with depth 1: a frame waiting in the middleware while a newer one arrives is
    stale anyway (newest-frame processing); publishers (replay) use a deeper queue."""
    if kind == "sensor_data":
        q = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("history", "reliability", "durability")},
                       depth=depth)
        return q
    if kind == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    raise ConfigError(f"parameter image_qos='{kind}': use sensor_data or reliable")


class ConfigError(ValueError):
    """A start-up parameter the node cannot run with; ``main`` logs it in one line and exits 1."""


def _transport(p: dict, name: str, choices: dict[str, str]) -> str:
    """The validated value of the ``image_transport`` / ``depth_transport`` parameter."""
    value = str(p[name])
    if value not in choices:
        raise ConfigError(f"parameter {name}='{value}': use {' or '.join(choices)}")
    if value != "raw":
        try:
            import cv2  # noqa: F401  (decodes the compressed images)
        except ImportError as exc:
            raise ConfigError(f"parameter {name}={value} needs OpenCV ({exc}): pip install opencv-python-headless, "
                              f"or {name}:=raw") from None
    return value


def _mesh_problem(path: str, what: str) -> str | None:
    """Why ``path`` cannot be the object mesh (None when it can; '' = the library mesh of object_label). The file is read
    once here (``objects.load_mesh``: exists, a mesh format, triangles, finite), so a missing or unreadable mesh is
    refused when it is given — at start-up (the node does not start) or at run time (the mesh in force stays) — instead
    of failing every frame afterwards."""
    if not path:
        return None
    if any(unicodedata.category(c)[0] == "C" for c in path):
        return f"{what} contains control characters; send a plain path"
    from ..objects import MeshError, load_mesh

    try:  # read and checked; a large mesh is decimated later, where it is used, not in this (executor) callback
        load_mesh(path, max_faces=sys.maxsize)
    except MeshError as exc:
        return f"{what}: {exc}; or '' for the library mesh of object_label"
    return None


def _pose_from_matrix(T) -> Pose:
    from scipy.spatial.transform import Rotation

    T = np.asarray(T, dtype=np.float64).reshape(4, 4)
    q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x y z w
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def _parts_in_contact(result, threshold: float, top: int = 4) -> str:
    """/diagnostics ``contact_parts`` of one result: 'right_hand 0.98, left_hand 0.95' (each body part's highest
    contact, the parts at or above ``threshold``, highest first, at most ``top``); 'none' when no part is."""
    parts = [f"{name} {v['max']:.2f}" for name, v in result.part_summary().items() if v["max"] >= threshold]
    return ", ".join(parts[:top]) or "none"


class _NewestSlot:
    """One-element hand-off between threads: ``put`` replaces what is waiting (returns True then, for the drop
    counters), ``take`` waits for an item (None on timeout or once ``stop()`` returns True)."""

    def __init__(self):
        self._item = None
        self._cv = threading.Condition()

    def put(self, item) -> bool:
        with self._cv:
            replaced = self._item is not None
            self._item = item
            self._cv.notify()
            return replaced

    def take(self, stop, timeout: float = 0.5):
        with self._cv:
            self._cv.wait_for(lambda: self._item is not None or stop(), timeout=timeout)
            if stop():
                return None
            item, self._item = self._item, None
            return item

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()


class _ContactNodeBase:
    """What the contact node does, on top of an rclpy ``Node`` (:class:`ContactNode`) or ``LifecycleNode``
    (:class:`ContactLifecycleNode`): ``_setup`` = parameters, subscriptions, publishers, timers and threads;
    ``_load_model`` = the estimator and the object's assets; ``_teardown`` = all of it gone again."""

    _active = True  # frames are processed (a lifecycle node: only while active)
    _load_failure = "fatal"  # how a model that cannot be loaded is logged (the plain node then exits with code 1)
    _param_source = "parameter"  # what set a parameter, for the log: "topic" while ~/object_label, ~/object_mesh do
    _applying = False  # parameter changes are put in force (set up); else only checked (an unconfigured lifecycle node)
    _keep_parameter_checks = False  # _teardown leaves the parameter check in place (a lifecycle node: unconfigured)

    def _setup(self, estimator=None, start: bool = True) -> None:
        """Everything the node runs with. ``estimator``: an already-built ContactEstimator (otherwise built from the
        parameters: on the worker thread when ``start``, by ``_load_model`` otherwise). ``start``: start the worker and
        visuals threads now. Raises ConfigError (nothing left behind) on start-up parameters it cannot run with."""
        self._unbridge_logging = logbridge.bridge(self.get_logger())  # the core's Python logging -> this node's ROS log
        self._torn_down = False
        entities_before = self._entities()
        try:  # bad start-up parameters: fail before anything is subscribed or loaded
            p = _declare(self)
            qos = image_qos(str(p["image_qos"]))
            self._image_transport = _transport(p, "image_transport", conv.IMAGE_TRANSPORTS)
            self._depth_transport = _transport(p, "depth_transport", conv.DEPTH_TRANSPORTS)
            try:  # the object a user configured: a typo must not run on the wrong object
                self._label = conv.validate_label(p["object_label"], "parameter object_label")
            except conv.InputError as exc:
                raise ConfigError(str(exc)) from None
            self._mesh = str(p["object_mesh"]).strip()
            err = _mesh_problem(self._mesh, "parameter object_mesh")
            if err:
                raise ConfigError(err)
        except ConfigError:
            self._unbridge_logging()
            raise
        # what the ``part`` field of ~/human_contacts indexes (read-only; the vocabulary every body model maps to)
        if not self.has_parameter("part_names"):  # a lifecycle node configured again keeps its parameters
            self.declare_parameter("part_names", list(PART_NAMES), ParameterDescriptor(
                name="part_names", read_only=True,
                description="body-part names; the 'part' field of ~/human_contacts is an index into this list "
                            "(255 = unknown)"),
                ignore_override=True)  # not a setting: a params file cannot rename the parts
        self.stats = NodeStats()
        self._state_lock = threading.Lock()
        self.fatal: str | None = None
        # validated run-time state (object_label, object_mesh: above)
        self._enabled = bool(p["enabled"])
        self._resumed = False  # set on enabled: false -> true; the worker restarts the track before the next frame
        self._threshold = float(p["contact_threshold"])
        self._max_rate = float(p["max_rate_hz"])
        self._cold_rate = float(p["cold_start_max_rate_hz"])
        self._publish_overlay = bool(p["publish_overlay"])
        self._overlay_tile = int(p["overlay_tile"])
        self._frame_override = str(p["frame_id_override"])
        self._allow_nonfinite = bool(p["depth_allow_nonfinite"])
        self._markers = MarkerBuilder(max_faces=int(p["marker_max_faces"]), threshold=self._threshold)
        self._K = None
        self._K_size = None
        self._dist = None  # (distortion model, D) of the last valid CameraInfo
        self._K_rect = None  # its P[:3, :3]: the camera of a rectified image (image_rect*)
        self._undistort = bool(p["undistort"])
        self._rectifier = lens.Rectifier()
        self._dist_noted = False  # the one log line about a distortion that is not undone
        self._K_ready = threading.Event()  # set by the first valid CameraInfo (or an uncalibrated camera's)
        self._K_first_wait = float(p["camera_info_wait"])  # spent (0) once the first frame has been handled
        self._depths = sync.StampedBuffer(8)  # the newest depth images by stamp: each image takes its own
        self._depth_max_dt = float(p["depth_max_dt"])
        self._masks = sync.StampedBuffer(8)  # the newest object masks (a segmentation node's) by stamp
        self._mask_max_dt = float(p["object_mask_max_dt"])
        self._detections = sync.StampedBuffer(8)  # the newest detector boxes (vision_msgs/Detection2DArray) by stamp
        self._det_max_dt = float(p["object_detections_max_dt"])
        self._det_class = str(p["object_detection_class"])
        self._image_timeout = float(p["image_timeout"])
        self._bad_log: dict[str, tuple[float, int]] = {}  # reason -> (time of its last log line, lines held back since)
        self._bad_log_lock = threading.Lock()
        if not self._keep_parameter_checks:  # a lifecycle node has it from its start
            self.add_on_set_parameters_callback(self._on_parameters)

        if str(p["image_qos"]) == "sensor_data" and dds.profile_missing(os.environ):
            self.get_logger().info(
                "image_qos sensor_data over Fast DDS without a profile: images > 512 KiB from another process go out "
                "as UDP fragments and many are lost; export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m "
                "interactvlm_ros.ros.dds) in the camera driver's and this node's environment (docs/node.md)")
        if self._image_transport == "compressed":  # image_transport's naming: <resolved base topic>/compressed
            self._decode_image = conv.compressed_to_rgb8
            self._image_sub = self.create_subscription(CompressedImage, self._transport_topic("image", "compressed"),
                                                       self._on_image, qos)
        else:
            self._decode_image = conv.image_to_rgb8
            self._image_sub = self.create_subscription(Image, "image", self._on_image, qos)
        self._info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        if self._depth_transport == "compressedDepth":
            self._decode_depth = conv.compressed_depth_to_metres
            self.create_subscription(CompressedImage, self._transport_topic("depth", "compressedDepth"), self._on_depth,
                                     qos)
        else:
            self._decode_depth = lambda m: conv.depth_to_metres(m, allow_nonfinite=self._allow_nonfinite)
            self.create_subscription(Image, "depth", self._on_depth, qos)
        self.create_subscription(Image, "object_mask", self._on_object_mask, qos)
        if Detection2DArray is not None:
            self.create_subscription(Detection2DArray, "object_detections", self._on_detections, qos)
            self.stats.info["object_detections"] = "vision_msgs/Detection2DArray"
        else:
            self.stats.info["object_detections"] = "off (vision_msgs not importable)"
        self.create_subscription(String, "~/object_label", self._on_label, 10)
        self.create_subscription(String, "~/object_mesh", self._on_mesh, 10)
        # the worker hands "that mesh was unusable" to the executor thread, which owns the parameters
        self._mesh_revert: str | None = None
        self._mesh_revert_gc = self.create_guard_condition(self._on_mesh_revert)
        if Trigger is not None:
            self.create_service(Trigger, "~/reset_tracking", self._on_reset_tracking)
        else:
            self._fallback(f"no ~/reset_tracking service (std_srvs not importable: {STD_SRVS_MISSING}; pip install "
                           "ros-std-srvs, a ROS install has it)")
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 5)
        self.pub_human = self.create_publisher(PointCloud2, "~/human_contacts", 5)
        self.pub_object = self.create_publisher(PointCloud2, "~/object_contacts", 5)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", 2)
        # image_transport's compressed sibling (jpeg), for an RViz on another machine: built only while subscribed
        self.pub_overlay_jpeg = self.create_publisher(CompressedImage, self._transport_topic("~/overlay", "compressed"), 2)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_object_pose = self.create_publisher(PoseStamped, "~/object_pose", 5)
        self.pub_grips = self.create_publisher(PoseArray, "~/human_grip_poses", 5)
        self.pub_free = self.create_publisher(PointCloud2, "~/free_grasp_regions", 5)
        self.create_timer(max(0.05, float(p["diagnostics_period"])), self._publish_diagnostics)

        self.stats.info.update({
            "model": str(p["model"]), "backend_requested": str(p["backend"]), "device": str(p["device"]),
            "image_qos": str(p["image_qos"]), "image_transport": self._image_transport,
            "depth_transport": self._depth_transport, "object_label": self._label, "object_mesh": self._mesh or "(library)",
            "image_conversion": conv.image_converter_name(),
        })
        if conv.image_converter_name() != "cv_bridge":
            self._fallback("image conversion: numpy decoder (cv_bridge not importable)")
        # markers go out as CDR bytes written from numpy when that encoder matches rclpy's (ros/cdr.py)
        cdr_problem = cdr.self_check()
        self._markers_raw = cdr_problem is None
        self.stats.info["marker_encoding"] = "cdr" if self._markers_raw else "message"
        if cdr_problem is not None:
            self.stats.fallback(f"markers: rclpy message serialization ({cdr_problem})")
            self.get_logger().warning(f"fallback: markers serialized by rclpy (slower): {cdr_problem}")
        self._object_frame = str(p["object_frame_id"])
        self._tf = self._tf_broadcaster() if bool(p["reconstruct"]) and bool(p["publish_tf"]) else None
        if bool(p["reconstruct"]) and Detection2DArray is None:
            self._fallback(f"object_detections: no detector boxes (vision_msgs not importable: {VISION_MSGS_MISSING}; a "
                           "ROS install has ros-<distro>-vision-msgs): the object region comes from object_mask or is "
                           "estimated")
        self._params = p
        self._given_estimator = estimator
        self.estimator = estimator
        self._loaded = False
        self._slot = None
        self._cv = threading.Condition()
        # one stop event per setup, handed to its threads: a thread of an earlier setup that outlived its teardown's
        # join (a long frame) still sees its own event set and ends, never running beside the new threads
        self._stop_event = stop = threading.Event()
        self._last_start = 0.0
        self._visual_slot = _NewestSlot()  # result -> visuals thread
        self._obs_slot = _NewestSlot()  # perceived frame -> worker
        self._perception = threading.Thread(target=self._run_perception, args=(stop,), name="interactvlm_perception",
                                            daemon=True)
        self._worker = threading.Thread(target=self._run_worker, args=(stop, self._perception),
                                        name="interactvlm_worker", daemon=True)
        self._visuals = threading.Thread(target=self._run_visuals, args=(stop,), name="interactvlm_visuals", daemon=True)
        self._own_entities = {k: v - entities_before[k] for k, v in self._entities().items()}
        self._applying = True
        if start:
            self._start_threads()

    def _entities(self) -> dict[str, set]:
        return {"subscriptions": set(self.subscriptions), "publishers": set(self.publishers),
                "timers": set(self.timers), "services": set(self.services), "guards": set(self.guards)}

    def _start_threads(self) -> None:
        """The worker (it loads the model first unless ``_load_model`` did, then starts perception) and visuals."""
        self._worker.start()
        self._visuals.start()

    # ------------------------------------------------------------------------------ callbacks
    def _gate(self) -> str | None:
        """Why frames are not processed now — ``inactive`` (a lifecycle node configured, not active) or ``paused``
        (``enabled:=false``), also the name of the counter of the frames dropped for it — or None."""
        return "inactive" if not self._active else None if self._enabled else "paused"

    def _run_state(self) -> str:
        """The diagnostics state of a loaded node: ``running``, or why it is not (``_gate``)."""
        return self._gate() or "running"

    def _drop_waiting_frame(self, counter: str) -> None:
        """Processing stopped: the frame waiting in the slot is dropped and counted as ``counter`` (frames already being
        processed finish; ``_infer`` drops them at the gate)."""
        with self._cv:
            if self._slot is not None:
                self.stats.inc(counter)
            self._slot = None

    def _on_image(self, msg) -> None:  # Image, or CompressedImage (image_transport:=compressed)
        self.stats.image_received()
        gate = self._gate()
        if gate:
            self.stats.inc(gate)
            return
        with self._cv:
            if self._slot is not None:
                self.stats.inc("dropped")
            self._slot = (msg, time.monotonic())
            self._cv.notify()

    def _bad(self, exc: Exception, reason: str | None = None, frame: bool = False) -> None:
        """Bad input: counted in /diagnostics (``bad_input/<reason>``, every time) and logged in one line — the first of
        each reason at once, then at most one line per reason every ``BAD_INPUT_LOG_PERIOD_S`` saying how many were not
        logged (a camera sending a broken stream at 30 Hz must not bury the rest of the log). ``frame``: the bad input cost
        an image frame (also counted in ``frames_bad_input``)."""
        reason = reason or getattr(exc, "reason", "bad_input")
        self.stats.bad(reason, str(exc), frame=frame)
        now = time.monotonic()
        with self._bad_log_lock:
            last, held = self._bad_log.get(reason, (-math.inf, 0))
            if now - last < BAD_INPUT_LOG_PERIOD_S:
                self._bad_log[reason] = (last, held + 1)
                return
            self._bad_log[reason] = (now, 0)
        more = f" ({held} more since the last such line, counted in /diagnostics bad_input/{reason})" if held else ""
        self.get_logger().warning(f"skipped ({reason}): {exc}{more}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if conv.camera_info_uncalibrated(msg):
            self._on_uncalibrated(msg)
            return
        try:
            # a binned / ROI camera: the intrinsics and size of the images it sends (image_geometry's adjustment)
            K, size = conv.camera_info_binning_roi(msg, conv.camera_info_to_K(msg))
            K_rect = conv.camera_info_binning_roi(msg, conv.camera_info_rectified_K(msg))[0]
        except conv.InputError as exc:
            self._bad(exc)
            return
        dist = conv.camera_info_distortion(msg)
        with self._state_lock:
            self._K, self._K_size, self._dist, self._K_rect = K, size, dist, K_rect
        self._K_ready.set()
        if not self._undistort and not self._dist_noted and lens.has_distortion(dist[1], dist[0]):
            self._dist_noted = True
            self.get_logger().info(
                f"camera_info has {dist[0]} distortion {np.round(dist[1], 4).tolist()}: images are taken as rectified "
                f"(image_rect*), with the intrinsics of P{'' if K_rect is not None else ' (unset: K)'}; for image_raw "
                "of that lens set undistort:=true")

    def _on_uncalibrated(self, msg: CameraInfo) -> None:
        """CameraInfo of an uncalibrated camera (k[0] == 0): the images are used with default intrinsics (a named
        fallback, logged once; /diagnostics ``camera_info_uncalibrated`` counts the messages), and the first image
        does not wait for a calibration that will not come."""
        with self._state_lock:
            self._K = self._K_size = self._dist = self._K_rect = None
        self.stats.inc("camera_info_uncalibrated")
        self._K_ready.set()
        self._fallback(f"camera_info: {self._info_sub.topic_name} is of an uncalibrated camera (k[0] == 0): default "
                       "intrinsics as without a camera_info, no undistortion; calibrate it (camera_calibration) for "
                       "metric object poses")

    def _transport_topic(self, base: str, transport: str) -> str:
        """Where image_transport publishes ``transport`` of this node's (remapped, namespaced) ``base`` topic
        (``image:=/camera/color/image_raw`` -> /camera/color/image_raw/compressed)."""
        return conv.transport_topic(self.resolve_topic_name(base), transport)

    def _on_depth(self, msg) -> None:
        self._buffer(self._depths, msg, self._decode_depth)

    def _on_object_mask(self, msg: Image) -> None:
        self._buffer(self._masks, msg, conv.mask_to_bool)

    def _on_detections(self, msg) -> None:  # vision_msgs/Detection2DArray
        self._buffer(self._detections, msg, conv.detections_to_boxes)

    def _object_box(self, header, label: str, shape: tuple[int, int]):
        """This frame's detector box of the object (x0, y0, x1, y1), or None: the detections paired by stamp
        (``object_detections_max_dt``), the one of ``object_detection_class`` / the label (``conv.choose_box``),
        undistorted like the image with ``undistort``. No detection of that class: counted
        (``object_detections/no_class``) and a named fallback."""
        dets = self._paired("object_detections", header)
        if dets is None:
            return None
        box, why = conv.choose_box(dets, label, self._det_class)
        if box is None:
            self.stats.inc("object_detections_no_class")
            self._fallback(f"object_detections: none of class '{self._det_class or label}' in a frame's detections: "
                           "such frames have their object region estimated", f" (this one: {why})")
            return None
        if self._undistort:
            box = lens.undistorted_box(box, shape, lambda m: self._rectified(m, nearest=True))
        return box

    def _buffer(self, buffer: sync.StampedBuffer, msg, decode) -> None:
        """A stream paired with the images by stamp (depth, object mask): decoded into its buffer; a bad message is
        named, counted and skipped."""
        try:
            value = decode(msg)
        except conv.InputError as exc:
            self._bad(exc)
            return
        buffer.put(sync.stamp_ns(msg.header), value)

    def _check_label(self, value, source: str) -> tuple[str | None, str | None]:
        """(label, None) for a valid object label, else (None, the reason; counted as bad input)."""
        try:
            return conv.validate_label(value, f"object_label ({source})"), None
        except conv.InputError as exc:
            self._bad(exc)
            return None, str(exc)

    def _apply_label(self, label: str, source: str) -> None:
        with self._state_lock:
            changed = label != self._label
            self._label = label
        self.stats.info["object_label"] = label
        if changed:
            self.get_logger().info(f"object_label -> '{label}' ({source})")

    def _check_mesh(self, value, source: str) -> tuple[str | None, str | None]:
        """(path, None) for a readable mesh file or '' (the library's mesh), else (None, the reason; counted)."""
        path = str(value).strip()
        err = _mesh_problem(path, f"object_mesh ({source})")
        if err:  # refused: the mesh in force stays
            self._bad(conv.InputError(err, "bad_mesh"))
            return None, err
        return path, None

    def _apply_mesh(self, path: str, source: str) -> None:
        with self._state_lock:
            self._mesh = path
        self.stats.info["object_mesh"] = path or "(library)"
        self.get_logger().info(f"object_mesh -> '{path or '(library)'}' ({source})")

    def _on_mesh_revert(self) -> None:
        """The worker found the mesh in force unusable (the file changed or went away after the parameter check read
        it, or the estimator refused it): ``object_mesh`` goes back to '' so that ``ros2 param get`` and a lifecycle
        re-configure agree with the library mesh in use. A newer value set meanwhile is left alone."""
        with self._state_lock:
            mesh, self._mesh_revert = self._mesh_revert, None
        if mesh is None or str(self.get_parameter("object_mesh").value).strip() != mesh:
            return
        self._param_source = "fallback: mesh unusable"
        try:
            self.set_parameters([Parameter("object_mesh", value="")])
        finally:
            self._param_source = "parameter"

    def _on_label(self, msg: String) -> None:
        self._set_from_topic("object_label", msg.data)

    def _on_mesh(self, msg: String) -> None:
        self._set_from_topic("object_mesh", msg.data)

    def _set_from_topic(self, name: str, value: str) -> None:
        """``~/object_label`` / ``~/object_mesh`` are shortcuts for the parameters: set through them (the same checks),
        so ``ros2 param get`` shows the object in force and a lifecycle node configured again keeps it."""
        self._param_source = "topic"
        try:
            self.set_parameters([Parameter(name, value=str(value))])
        finally:
            self._param_source = "parameter"

    def _on_reset_tracking(self, request, response):
        """``~/reset_tracking`` (std_srvs/Trigger), e.g. from a planner after a handover: the next frame's reconstruction
        is a cold fit (a new track) instead of warm-starting from the previous object pose."""
        if not bool(self._params["reconstruct"]):
            response.success, response.message = False, "reconstruct is false: there is no track to reset"
            return response
        self._resumed = True  # read by the worker before its next frame (as after a resume)
        self.stats.inc("reconstruction_reset_requests")
        self.get_logger().info("reset_tracking: the next frame starts a new track (cold fit)")
        response.success, response.message = True, "the next frame's reconstruction starts a new track (cold fit)"
        return response

    def _set_enabled(self, enabled: bool) -> None:
        """``enabled`` at run time: pausing drops the frame waiting in the slot (frames already being processed finish);
        resuming restarts the reconstruction's track (the scene moved on meanwhile) before the next frame."""
        if enabled == self._enabled:
            return
        self._enabled = enabled
        if not enabled:
            self._drop_waiting_frame("paused")
        else:
            self._resumed = True
        if self.stats.state in ("running", "paused"):
            self.stats.state = self._run_state()
        self.get_logger().info("resumed (enabled:=true)" if enabled else "paused (enabled:=false): frames are dropped")

    def _on_parameters(self, params) -> SetParametersResult:
        """All or nothing, as rclpy stores them: every parameter of the request is checked first, and only when all are
        valid are they applied (a request whose last value is refused changes nothing in force)."""
        changes = []
        for prm in params:
            err, apply = self._check_parameter(prm.name, prm.value)
            if err:
                return SetParametersResult(successful=False, reason=err)
            if apply is not None:
                changes.append(apply)
        if not self._applying:  # an unconfigured lifecycle node: checked only; the next configure reads the values
            return SetParametersResult(successful=True)
        for apply in changes:
            apply()
        return SetParametersResult(successful=True)

    def _check_parameter(self, name: str, value):
        """(None, a callable that puts the value in force (or None: nothing to do)) or (the reason it is refused, None)."""
        source = self._param_source
        if name == "object_label":
            label, err = self._check_label(value, source)
            return err, (None if err else lambda: self._apply_label(label, source))
        if name == "object_mesh":
            path, err = self._check_mesh(value, source)
            return err, (None if err else lambda: self._apply_mesh(path, source))
        if name in _NUMERIC:
            value, err = _number(name, value)
            if err is not None:
                return err, None
            if name == "contact_threshold":
                def apply():
                    self._threshold = value
                    self._markers.threshold = value
                return None, apply
            if name == "marker_max_faces":
                return None, lambda: setattr(self._markers, "max_faces", value)
            if name in _NUMERIC_ATTRS:
                return None, lambda: setattr(self, _NUMERIC_ATTRS[name], value)
            return None, None
        if name == "enabled":
            if not isinstance(value, bool):
                return "enabled must be a bool", None
            return None, lambda: self._set_enabled(value)
        if name in _FRAME_PARAMETERS and (err := _frame_problem(name, value)):
            return err, None
        if name == "object_frame_id":
            return None, lambda: self._set_object_frame(str(value))
        attr = {"publish_overlay": ("_publish_overlay", bool), "frame_id_override": ("_frame_override", str),
                "object_detection_class": ("_det_class", str), "undistort": ("_undistort", bool),
                "depth_allow_nonfinite": ("_allow_nonfinite", bool)}.get(name)
        if attr is not None:
            return None, lambda: setattr(self, attr[0], attr[1](value))
        return None, None

    def _set_object_frame(self, frame: str) -> None:
        self._object_frame = frame
        if "object_frame_id" in self.stats.info:  # shown while the pose is broadcast on /tf
            self.stats.info["object_frame_id"] = frame

    # -------------------------------------------------------------------------------- worker
    def _build_estimator(self):
        from ..pipeline import ContactEstimator

        p = self._params
        return ContactEstimator(
            model=str(p["model"]), backend=str(p["backend"]), device=str(p["device"]), body=str(p["body"]),
            reconstruct=bool(p["reconstruct"]), assets=str(p["assets"]) or None, perception=str(p["perception"]),
            perception_mode=str(p["perception_mode"]), hand_model=str(p["hand_model"]),
            reconstruct_cold_start=str(p["reconstruct_cold_start"]), person_search_every=int(p["person_search_every"]),
        )

    def _load_model(self) -> bool:
        """Build the estimator (unless one was given) and prepare the object's assets; False (``fatal`` set, logged
        FATAL, diagnostics state ``error``) when the model cannot be loaded."""
        try:
            if self.estimator is None:
                self.stats.state = "loading model"
                self.get_logger().info(f"loading model '{self._params['model']}' (backend {self._params['backend']}) ...")
                self.estimator = self._build_estimator()
            est = self.estimator
            if hasattr(est, "prepare"):  # object assets now, not on the first frame
                try:
                    with self._state_lock:
                        label, mesh = self._label, self._mesh
                    est.prepare(label, mesh or None)
                except Exception as exc:  # a bad label/mesh is reported per frame, not fatal
                    self.get_logger().warning(f"object '{label}' not prepared: {exc}")
            self.stats.info.update({"model": str(getattr(est, "model_name", "?")), "backend": str(getattr(est, "backend", "?"))})
            self._sync_fallbacks()
            self.stats.state = self._run_state()
            self.get_logger().info(
                f"ready: model={self.stats.info['model']} backend={self.stats.info['backend']} "
                f"label='{self._label}' (load {getattr(est, 'load_ms', float('nan')):.0f} ms)"
            )
        except Exception as exc:
            self.fatal = f"model could not be loaded: {exc}"
            self.stats.state = "error"
            self.stats.last_error = self.fatal
            if self._load_failure == "fatal":
                self.get_logger().fatal(self.fatal)
            else:
                self.get_logger().error(f"{self.fatal}; {self._load_failure}")
            return False
        self._loaded = True
        return True

    def _run_worker(self, stop: threading.Event, perception: threading.Thread) -> None:
        if not self._loaded and not self._load_model():
            return
        if stop.is_set():
            return
        perception.start()
        slot = self._obs_slot
        while not stop.is_set():
            item = slot.take(stop.is_set)
            if item is None:
                continue
            try:
                self._infer(*item, stop=stop)
            except Exception as exc:  # a bug must not kill the worker silently
                self.stats.bad("internal_error", f"{type(exc).__name__}: {exc}", frame=True)
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    def _run_perception(self, stop: threading.Event) -> None:
        """Perception thread (started by the worker once the model is loaded): newest frame -> observed slot."""
        cv, out = self._cv, self._obs_slot
        while not stop.is_set():
            with cv:
                cv.wait_for(lambda: self._slot is not None or stop.is_set(), timeout=0.5)
                if stop.is_set():
                    return
                if self._slot is None:
                    continue
            # pace to the rate limit; newer frames replace the slotted one meanwhile. Waited on the stop event in short
            # steps: a teardown ends the wait at once, a new max_rate_hz applies within 0.25 s
            while True:
                rate = self._rate_limit()
                wait = self._last_start + 1.0 / rate - time.monotonic() if rate > 0 else 0.0
                if wait <= 0:
                    break
                if stop.wait(min(wait, 0.25)):
                    return
            with cv:
                frame, self._slot = self._slot, None
            if frame is None or stop.is_set():
                continue
            self._last_start = time.monotonic()
            try:
                item = self._perceive(*frame)
            except Exception as exc:  # a bug must not kill the thread silently
                self.stats.bad("internal_error", f"perception: {type(exc).__name__}: {exc}", frame=True)
                self.get_logger().error(f"perception failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                continue
            if item is None:
                continue
            if out.put(item):
                self.stats.inc("dropped")

    def _rate_limit(self) -> float:
        """Frames per second the perception thread may start now (0 = no limit): ``max_rate_hz``, and while the
        estimator's tracker runs a background cold fit at most ``cold_start_max_rate_hz`` (the frames of that time
        report ``reconstruction/cold_start_pending``)."""
        rate = self._max_rate
        tracker = getattr(self.estimator, "tracker", None)
        if self._cold_rate > 0 and tracker is not None and tracker.cold_running:
            rate = min(rate, self._cold_rate) if rate > 0 else self._cold_rate
        return rate

    def _sync_fallbacks(self) -> None:
        """Fallbacks the estimator and its parts took so far (at load and while running: an unknown label, default
        intrinsics of a fit, ...) into /diagnostics (``fallback/<i>``); they were logged where they happened."""
        est = self.estimator
        names = est.all_fallbacks() if hasattr(est, "all_fallbacks") else getattr(est, "fallbacks", [])
        self.stats.mirror_fallbacks(names)

    def _wait_first_camera_info(self) -> None:
        """Once, before the first frame's inference: wait up to ``camera_info_wait`` s for the first CameraInfo when
        camera_info has a publisher. A driver publishes both beside each other, but the first image can be taken
        before the first CameraInfo has arrived; that frame would then use default intrinsics, and with
        ``reconstruct:=true`` its cold fit (seconds) would be thrown away when the real intrinsics arrive (a new K
        restarts the track). Never waits without a publisher (a webcam without calibration)."""
        timeout, self._K_first_wait = self._K_first_wait, 0.0
        topic = self._info_sub.topic_name
        if self._K_ready.is_set() or self.count_publishers(topic) == 0:
            return
        t0 = time.monotonic()
        if self._K_ready.wait(timeout):
            self.get_logger().debug(f"first image waited {1e3 * (time.monotonic() - t0):.0f} ms for {topic}")
            return
        self._fallback(f"no CameraInfo on {topic} within camera_info_wait={timeout:g} s of the first image although "
                       "it has a publisher: default intrinsics until one arrives")

    def _fallback(self, msg: str, detail: str = "") -> None:
        """A named fallback: listed in /diagnostics (``fallback/<i>``) and logged once as ``fallback: msg detail``
        (frames that take it again are not logged again)."""
        if self.stats.fallback(msg):
            self.get_logger().warning(f"fallback: {msg}{detail}")

    def _rectified(self, arr: np.ndarray, nearest: bool = False) -> np.ndarray:
        """``arr`` (the image, or its depth / mask) undistorted with the last CameraInfo's distortion when it is for
        this size and has one (``interactvlm_ros/lens.py``); unchanged otherwise. A distortion that cannot be undone is a
        named fallback (the image is used as it is)."""
        with self._state_lock:
            K, K_size, dist = self._K, self._K_size, self._dist
        h, w = arr.shape[:2]
        if K is None or dist is None or K_size not in ((w, h), (0, 0)) or not lens.has_distortion(dist[1], dist[0]):
            return arr
        try:
            out = self._rectifier.apply(arr, K, dist[0], dist[1], nearest=nearest)
        except lens.RectifyError as exc:
            self._fallback(f"undistort: {exc}: images used as they are")
            return arr
        self.stats.set_info("undistorted", f"{dist[0]} ({len(dist[1])} coefficients)")
        return out

    def _paired(self, stream: str, header, shape: tuple | None = None):
        """This image's item of a stream paired by stamp (``depth``: ``depth_max_dt``, waited for that long while in
        flight and the stream is live; ``object_mask``: ``object_mask_max_dt``, not waited for — a segmenter's mask
        comes a model's run after its image), else None: a frame is never fitted with another moment's depth or mask
        (a depth camera or segmenter that stopped is not used on). ``shape`` (h, w): an item of another size (depth not
        registered to the image) is not used either. /diagnostics ``<stream>/matched`` (paired and used),
        ``<stream>/unmatched``, ``<stream>/size_mismatch``; the first unmatched / mismatched frame logs a named
        fallback."""
        buffer, tol, wait, without = {
            "depth": (self._depths, self._depth_max_dt, self._depth_max_dt, "fitted without depth"),
            "object_mask": (self._masks, self._mask_max_dt, 0.0, "their object mask estimated near the contact"),
            "object_detections": (self._detections, self._det_max_dt, 0.0, "their object region estimated"),
        }[stream]
        value, offset = buffer.nearest(sync.stamp_ns(header), int(round(tol * 1e9)), wait_s=wait)
        if offset is None:  # the stream has sent nothing
            return None
        if value is None:
            self.stats.inc(f"{stream}_unmatched")
            # logged once (per tolerance), counted every frame
            self._fallback(f"{stream}: none within {stream}_max_dt={tol:g} s of an image's stamp: such frames {without}",
                           f" (this one: nearest {offset / 1e9:+.3f} s)")
            return None
        if shape is not None and value.shape[:2] != tuple(shape):
            self.stats.inc(f"{stream}_size_mismatch")
            self._fallback(f"{stream} is {value.shape[1]}x{value.shape[0]} but images are {shape[1]}x{shape[0]}: "
                           f"{stream} ignored (register it to the image)")
            return None
        self.stats.inc(f"{stream}_matched")
        return value

    def _out_header(self, msg_header) -> Header:
        """The outputs' header: the image's stamp, its frame (or ``frame_id_override``). An image without a frame_id
        gives outputs RViz and tf2 cannot place: said once as a named fallback (nothing is invented)."""
        h = Header()
        h.stamp = msg_header.stamp
        h.frame_id = self._frame_override or msg_header.frame_id
        if not h.frame_id:
            self._fallback("images have an empty header.frame_id: the outputs carry none, so RViz and tf2 cannot place "
                           "them; set frame_id_override (e.g. the camera's optical frame) or fix the camera driver")
        return h

    def _perceive(self, msg: Image, t_recv: float):
        """Decode + human perception of one frame; None when the frame is bad (logged and counted)."""
        t_start = time.monotonic()
        try:
            rgb = self._decode_image(msg)
        except conv.InputError as exc:
            self._bad(exc, frame=True)
            return None
        if self._undistort:
            if self._K_first_wait > 0:  # the first frame's CameraInfo (its distortion) before perception sees it
                self._wait_first_camera_info()
            rgb = self._rectified(rgb)
        t_decoded = time.monotonic()
        observation = None
        observe = getattr(self.estimator, "observe", None)
        if observe is not None:
            try:
                observation = observe(rgb)
            except Exception as exc:
                if type(exc).__name__ != "PipelineError":
                    raise  # a bug: internal_error with its traceback (the thread survives)
                self._bad(conv.InputError(f"perception: {exc}", "bad_input"), frame=True)  # the image is unusable
                return None
        return msg, t_recv, rgb, observation, t_start, t_decoded, time.monotonic()

    def _infer(self, msg: Image, t_recv: float, rgb, observation, t_start: float, t_decoded: float,
               t_observed: float, stop: threading.Event | None = None) -> None:
        """Estimate one perceived frame and publish it. ``stop``: the worker's stop event — a frame whose estimate
        outlived its node's teardown (a long inline cold fit) publishes nothing (its publishers are gone)."""
        t_infer = time.monotonic()
        gate = self._gate()
        if gate:  # paused / deactivated while this frame was perceived: dropped like the frames after it
            self.stats.inc(gate)
            return
        if self._resumed:
            self._resumed = False
            reset = getattr(self.estimator, "reset_tracking", None)
            if reset is not None:
                reset()
        h, w = rgb.shape[:2]
        if self._K_first_wait > 0:
            self._wait_first_camera_info()
        with self._state_lock:
            label, mesh, K, K_size = self._label, self._mesh, self._K, self._K_size
            if (not self._undistort and self._K_rect is not None and self._dist is not None
                    and lens.has_distortion(self._dist[1], self._dist[0])):
                K = self._K_rect  # a rectified image of a distorting camera: its camera is P (image_geometry)
        fit = bool(getattr(self.estimator, "reconstruct", False))
        # depth, object mask and detector box serve the fit, and the default model as input cues
        cues = fit or bool(getattr(getattr(self.estimator, "localizer", None), "uses_cues", False))
        depth = self._paired("depth", msg.header, (h, w)) if cues else None
        mask = self._paired("object_mask", msg.header, (h, w)) if cues else None
        if K is not None and K_size not in ((w, h), (0, 0)):
            self._fallback(f"camera_info is {K_size[0]}x{K_size[1]} but images are {w}x{h}: intrinsics ignored")
            K = None
        if self._undistort:  # registered to the image: resampled the same way (nearest: no blending across edges)
            depth = None if depth is None else self._rectified(depth, nearest=True)
            mask = None if mask is None else self._rectified(mask, nearest=True)
        kw = {"observation": observation} if observation is not None else {}
        if mask is not None:
            kw["object_mask"] = mask
        elif cues:  # a detector's box when there is no mask (a mask says more)
            box = self._object_box(msg.header, label, (h, w))
            if box is not None:
                kw["object_box"] = box
        header = self._out_header(msg.header)
        result = self.estimator.estimate(rgb, label, object_mesh=mesh or None, depth=depth, K=K, frame_tag=header, **kw)
        self._sync_fallbacks()
        if getattr(result, "cues", ""):
            self.stats.set_info("model_cues", result.cues)  # what the model read this frame, e.g. +box+depth
        if result.status in ("bad_input", "model_error"):  # skipped: an earlier frame's finished cold fit still goes out
            self._publish_late(result)
        if result.status == "bad_input":
            reason = "bad_mesh" if "mesh" in result.message else "bad_input"
            self._bad(conv.InputError(result.message, reason), frame=True)
            if reason == "bad_mesh" and mesh:
                with self._state_lock:
                    reverted = self._mesh == mesh
                    if reverted:
                        self._mesh, self._mesh_revert = "", mesh
                if reverted:  # the parameter follows on the executor thread (``_on_mesh_revert``)
                    self.stats.info["object_mesh"] = "(library)"
                    try:
                        self._mesh_revert_gc.trigger()
                    except Exception:  # noqa: BLE001 - torn down meanwhile (the worker outlived its join)
                        pass
                self.get_logger().warning(f"object_mesh '{mesh}' unusable; back to the library mesh for '{label}'")
            return
        if result.status == "model_error":  # NaN/inf from the localizer: nothing of it is published
            self._bad(RuntimeError(result.message), reason="model_error", frame=True)
            return
        result.timings["decode"] = 1e3 * (t_decoded - t_start)
        result.timings["wait"] = 1e3 * (t_start - t_recv)  # in the frame slot
        result.timings["wait_infer"] = 1e3 * (t_infer - t_observed)  # in the observed slot
        if stop is not None and stop.is_set():
            return
        self._publish(result, header, t_recv)

    def _publish(self, result, header: Header, t_recv: float) -> None:
        t0 = time.monotonic()
        thr = self._threshold
        # what planners use, now; the visuals (markers, overlay) go to the visuals thread
        pts, c, part = contact_points(result, "human", thr, with_parts=True)
        self.pub_human.publish(conv.make_contact_cloud(pts, c, header, part=part))
        pts, c = contact_points(result, "object", thr)
        self.pub_object.publish(conv.make_contact_cloud(pts, c, header))
        self.stats.set_info("contact_parts", _parts_in_contact(result, thr))
        if self._visual_slot.put((result, header)):
            self.stats.inc("markers_skipped")
        self._publish_reconstruction(result.reconstruction, header)
        self._publish_late(result)
        result.timings["publish"] = 1e3 * (time.monotonic() - t0)
        self.stats.inc("published")
        obs = result.observation
        search = getattr(obs, "hand_search", "none")
        if search != "none":  # video mode rate-limits the full-frame hand search (perception.human)
            self.stats.inc(f"hand_frame_search_{search}")
        search = getattr(obs, "person_search", "none")
        if search != "none":  # nobody in the full frame: the zoomed person search ran or waited (rate-limited)
            self.stats.inc(f"person_zoom_search_{search}")
        source = getattr(obs, "person_source", "none")
        if source in ("zoom", "roi"):  # the person was found only in a zoomed / followed crop
            self.stats.inc(f"person_found_{source}")
        self.stats.processed(result.status, time.monotonic() - t_recv, result.timings)

    def _publish_late(self, result) -> None:
        """The poses of a background cold fit of an earlier frame that finished (``result.late_reconstruction``), with
        that frame's header: handed over once, by whichever frame comes next — also one skipped as bad input or a
        model error."""
        late = getattr(result, "late_reconstruction", None)
        if late is not None:
            late_header, late_rec = late
            self._publish_reconstruction(late_rec, late_header, late=True)

    def _publish_reconstruction(self, rec, header: Header, late: bool = False) -> None:
        """Diagnostics of one reconstruction (reconstruction/<status>, warm (tracked) frames, resets to a cold fit,
        late: a background cold fit's) and, when ok, its object pose, grip poses and free grasp regions with
        ``header``."""
        if rec is None:
            return
        m = getattr(rec, "metrics", None) or {}
        self.stats.inc_all([f"reconstruction_{getattr(rec, 'status', 'unknown')}"]
                           + ["reconstruction_warm"] * bool(m.get("warm_start"))
                           + ["reconstruction_resets"] * bool(m.get("tracker_reset"))
                           + ["reconstruction_late"] * late)
        if getattr(rec, "status", "ok") != "ok":
            return
        if getattr(rec, "object_pose", None) is not None:
            # the pose of the fitted mesh the object marker shows (metric, centred on its vertex mean, scaled: the
            # pipeline sizes every mesh); the scale and centre it took from the input mesh go to /diagnostics
            # (recon.Reconstruction.object_mesh_transform: file pose = object_pose @ [s·I, -s·c])
            pose = _pose_from_matrix(rec.object_pose)
            self.pub_object_pose.publish(PoseStamped(header=header, pose=pose))
            T = getattr(rec, "object_mesh_transform", None)
            if T is not None:
                s = float(rec.object_scale)
                self.stats.set_info("object_scale", f"{s:.6g}")
                self.stats.set_info("object_mesh_centre", " ".join(f"{x:.6g}" for x in -np.asarray(T)[:3, 3] / s))
            if self._tf is not None:
                self._send_object_tf(pose, header)
        for key in ("grip_poses_none", "free_grasp_none"):  # why this frame's list is empty ("" when it is not)
            self.stats.set_info(f"reconstruction_{key}", str(m.get(key, "")))
        grips = getattr(rec, "human_grip_poses", None)
        if grips is not None:  # contact patches: dicts with a 4x4 "pose" (recon.outputs.grip_poses)
            pa = PoseArray(header=header)
            pa.poses = [_pose_from_matrix(g["pose"]) for g in grips]
            self.pub_grips.publish(pa)
        free = getattr(rec, "free_grasp_points", None)
        if free is not None:
            free = np.asarray(free, np.float32).reshape(-1, 3)
            normals = getattr(rec, "free_grasp_normals", None)  # the outward surface normal: a gripper's approach axis
            if normals is not None and np.shape(normals) != free.shape:
                normals = None
            self.pub_free.publish(conv.make_contact_cloud(free, np.zeros(len(free), np.float32), header,
                                                          normals=normals))

    def _tf_broadcaster(self):
        """tf2_ros.TransformBroadcaster on this node, or None (a named fallback) where tf2_ros is not importable — the
        pip install: tf2_ros / tf2_msgs are not on PyPI; a ROS install (the Docker image) has them."""
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError as exc:
            self._fallback(f"tf: the object pose is not broadcast on /tf (tf2_ros not importable: {exc}); use "
                           "~/object_pose")
            return None
        self.stats.info["object_frame_id"] = self._object_frame
        return TransformBroadcaster(self)

    def _send_object_tf(self, pose: Pose, header: Header) -> None:
        """The object pose as the transform image frame -> ``object_frame_id`` at the frame's stamp (a late cold fit's
        older stamp included: TF buffers keep ~10 s)."""
        from geometry_msgs.msg import TransformStamped

        t = TransformStamped(header=header, child_frame_id=self._object_frame)
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
            pose.position.x, pose.position.y, pose.position.z)
        t.transform.rotation = pose.orientation
        self._tf.sendTransform(t)
        self.stats.inc("reconstruction_tf_published")  # /diagnostics reconstruction/tf_published

    def _run_visuals(self, stop: threading.Event) -> None:
        """Visuals thread: markers and overlay of the newest result (see the module docstring)."""
        slot = self._visual_slot
        while not stop.is_set():
            item = slot.take(stop.is_set)
            if item is None:
                continue
            result, header = item
            t0 = time.monotonic()
            try:
                markers = overlay = False
                if self.pub_markers.get_subscription_count() > 0:
                    build = self._markers.build_raw if self._markers_raw else self._markers.build
                    self.pub_markers.publish(build(result, header))
                    markers = True
                raw, jpeg = (p.get_subscription_count() > 0 for p in (self.pub_overlay, self.pub_overlay_jpeg))
                if result.status == "ok" and self._publish_overlay and (raw or jpeg):
                    image = result.overlay(self._overlay_tile)
                    if raw:
                        self.pub_overlay.publish(conv.numpy_to_image(image, "rgb8", header))
                    if jpeg:
                        self.pub_overlay_jpeg.publish(CompressedImage(header=header, format="rgb8; jpeg compressed bgr8",
                                                                      data=conv.encode_jpeg(image[:, :, ::-1], 85)))
                    overlay = True
                if markers or overlay:
                    # the timing first: a /diagnostics message that counts these markers also has their stage time
                    self.stats.stage("visuals", 1e3 * (time.monotonic() - t0))
                if markers:
                    self.stats.inc("markers_published")
            except Exception as exc:  # a bug must not kill the thread silently
                self.stats.bad("internal_error", f"visuals: {type(exc).__name__}: {exc}")
                self.get_logger().error(f"visuals failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    def _diagnostics(self):
        """This moment's DiagnosticArray (``diagnostics.to_diagnostic_array``)."""
        return to_diagnostic_array(self.stats.snapshot(), f"{self.get_name()}: contact", self.get_fully_qualified_name(),
                                   self.get_clock().now().to_msg(), image_timeout=self._image_timeout,
                                   image_topic=self._image_sub.topic_name)

    def _publish_diagnostics(self) -> None:
        self.pub_diag.publish(self._diagnostics())

    def _teardown(self) -> None:
        """Stop the threads, cancel a background cold fit, destroy this node's own subscriptions, publishers and
        timers, and let go of an estimator the node built (a given one is kept). A second call does nothing."""
        if self._torn_down:
            return
        self._torn_down = True
        self._applying = False
        self._stop_event.set()
        # a background cold fit is cancelled at its next iteration (no fit outlives the node); an estimator the node was
        # given stays usable (a lifecycle node configures with it again): its track is reset (that cancels a running
        # cold fit too), not closed
        given = self.estimator is not None and self.estimator is self._given_estimator
        # a running fit (an inline cold fit takes seconds) stops at its next iteration, so that the worker comes back
        # for the join; request_cancel does not wait for the estimator's lock (reset_tracking would: a whole frame)
        cancel = getattr(getattr(self.estimator, "tracker", None), "request_cancel", None)
        if cancel is not None:
            cancel()
        with self._cv:
            self._cv.notify_all()
        for slot in (self._visual_slot, self._obs_slot):
            slot.wake()
        for t in (self._worker, self._perception, self._visuals):
            if t.is_alive():
                t.join(timeout=5.0)
        # after the threads: close releases perception, which the perception thread may be using; a given estimator
        # stays usable (a lifecycle node configures with it again): its track is reset, not closed
        stop = getattr(self.estimator, "reset_tracking" if given else "close", None)
        if stop is not None:
            stop()
        if not self._keep_parameter_checks:
            self.remove_on_set_parameters_callback(self._on_parameters)
        for sub in self._own_entities["subscriptions"]:
            self.destroy_subscription(sub)
        for pub in self._own_entities["publishers"]:
            self.destroy_publisher(pub)
        for timer in self._own_entities["timers"]:
            self.destroy_timer(timer)
        for srv in self._own_entities["services"]:
            self.destroy_service(srv)
        for gc in self._own_entities["guards"]:
            self.destroy_guard_condition(gc)
        self._tf = None
        self.estimator = self._given_estimator
        self._loaded = False
        self._unbridge_logging()


class ContactNode(_ContactNodeBase, Node):
    """The contact node: starts at once (the model loads on its worker thread; diagnostics say ``loading model``).
    ``estimator``: an already-built ContactEstimator (otherwise built from the parameters)."""

    def __init__(self, estimator=None, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._setup(estimator)
        except ConfigError:
            super().destroy_node()
            raise

    def destroy_node(self):
        self._teardown()
        return super().destroy_node()


class ContactLifecycleNode(_ContactNodeBase, LifecycleNode):
    """The contact node as a managed (lifecycle) node, for a lifecycle manager (nav2's, or ``ros2 lifecycle set``):

    * ``configure``: the parameters are read and checked, the model and the object's assets are loaded (seconds; the
      transition returns when they are), topics are created; a bad parameter or a model that cannot be loaded → the
      transition fails with one log line naming it, and the node stays unconfigured;
    * ``activate``: images are processed and the outputs published; ``deactivate``: images are dropped (counted as
      ``frames_inactive``; /diagnostics keeps going, state ``inactive``), the reconstruction's track restarts on the
      next activation;
    * ``cleanup`` / ``shutdown``: threads stopped, topics destroyed, the model let go (a given ``estimator`` is kept).
    """

    _load_failure = "configure failed: the node stays unconfigured"
    _keep_parameter_checks = True

    def __init__(self, estimator=None, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.fatal = None  # stays None: a model that cannot be loaded fails ``configure`` instead of ending the process
        self._configured = False
        self._given_estimator = estimator
        # unconfigured: the parameters are declared (a manager or `ros2 param set` sets them before configure, which
        # reads them) and every change is checked as when configured (refused with the reason), not yet applied; a
        # start-up value of the wrong type or range is left undeclared here and named by configure
        self.stats = NodeStats()
        self._bad_log: dict[str, tuple[float, int]] = {}
        self._bad_log_lock = threading.Lock()
        _declare(self, strict=False)
        self.add_on_set_parameters_callback(self._on_parameters)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        try:
            self._setup(self._given_estimator, start=False)
        except ConfigError as exc:
            self.get_logger().error(f"{exc}; not configured")
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        if not self._load_model():
            self._teardown()
            self._configured = False
            self.fatal = None  # a manager may fix the cause and configure again
            return TransitionCallbackReturn.FAILURE
        self._start_threads()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._resumed = True  # the scene moved on while inactive: the reconstruction starts a new track
        self._active = True
        self.stats.state = self._run_state()
        self.get_logger().info("activated: processing images")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._drop_waiting_frame("inactive")
        self.stats.state = self._run_state()
        self.get_logger().info("deactivated: images are dropped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition callback raised: release everything, so that the node is truly ``unconfigured`` afterwards."""
        self.get_logger().error(f"lifecycle error in state '{state.label}': releasing the model and topics")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._active = False
        if self._configured:
            self._configured = False
            self._teardown()

    def destroy_node(self):
        self._release()
        return super().destroy_node()


def _spin_once(executor, node, timeout_sec: float = 0.2) -> None:
    """One executor step. A callback that raises (a bug, or a message no check foresaw) does not end the node: counted
    (``bad_input/internal_error``) and logged with its traceback, and spinning goes on."""
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin_once(timeout_sec=timeout_sec)
    except (KeyboardInterrupt, ExternalShutdownException):
        raise
    except Exception as exc:
        node.stats.bad("internal_error", f"callback: {type(exc).__name__}: {exc}")
        node.get_logger().error(f"callback failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def _spin(node) -> int:
    """Spin ``node`` until Ctrl-C / SIGTERM (exit code 0) or until the plain node's model fails to load (``fatal``: one
    last /diagnostics message with the error, exit code 1); then destroy it and shut rclpy down."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        while rclpy.ok() and node.fatal is None:
            _spin_once(executor, node)
        if node.fatal is not None:
            node._publish_diagnostics()
            code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


def lifecycle_main(args=None) -> int:
    """Console script ``interactvlm-contact-lifecycle-node``: :class:`ContactLifecycleNode`, unconfigured until a
    lifecycle manager (or ``ros2 lifecycle set /interactvlm_contact configure``, then ``activate``) moves it on; a
    failed configure leaves it running, unconfigured. Ctrl-C / SIGTERM: shut down (threads stopped, model let go),
    exit code 0."""
    rclpy.init(args=args if args is not None else sys.argv)
    return _spin(ContactLifecycleNode())


def main(args=None) -> int:
    """Console script ``interactvlm-contact-node`` (takes ``--ros-args --params-file FILE -p name:=value``)."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = ContactNode()
    except ConfigError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"{exc}; not started")
        rclpy.try_shutdown()
        return 1
    return _spin(node)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
