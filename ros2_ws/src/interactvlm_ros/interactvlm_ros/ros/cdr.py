"""CDR (XCDR1, little-endian) encoding of ``visualization_msgs/MarkerArray`` straight from numpy arrays.

Why by hand: rclpy's publish converts a message by reading every field of every nested message through
Python attribute access. A display mesh of 2000 faces is 6000 ``Point`` + 6000 ``ColorRGBA`` objects, and
that conversion held one core's GIL for ~10 ms a frame — 28 % of a core at 20 Hz, on the same 2 cores as
perception (measured with py-spy on the node under 30 Hz input). No library serialises numpy arrays into a
ROS message's CDR, and ``Publisher.publish`` accepts the serialized bytes (``publish_raw``), so the arrays are
written directly: points as one float64 block, colours as one float32 block.

Correctness is not assumed: :func:`self_check` encodes a sample array both ways (this encoder and
``rclpy.serialization.serialize_message``) and compares the bytes; the node uses this encoder only when they
are equal and otherwise publishes messages (a named fallback in the log and in /diagnostics). The layout
follows the installed ``visualization_msgs/msg/Marker.msg`` (ROS 2 Jazzy/Kilted field list)::

    Header header; string ns; int32 id, type, action; Pose pose; Vector3 scale; ColorRGBA color;
    Duration lifetime; bool frame_locked; Point[] points; ColorRGBA[] colors; string texture_resource;
    CompressedImage texture; UVCoordinate[] uv_coordinates; string text; string mesh_resource;
    MeshFile mesh_file; bool mesh_use_embedded_materials

Rules (XCDR1 / Fast CDR "DDS_CDR"): a 4-byte encapsulation header ``00 01 00 00``; every primitive aligned
to its size relative to the first payload byte; strings = uint32 length (with the NUL) + bytes + NUL;
sequences = uint32 count + elements (no alignment padding when empty).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

ENCAPSULATION_LE = b"\x00\x01\x00\x00"


@dataclass
class MarkerSpec:
    """One marker as arrays; the encoders fill the rest (identity orientation, zero lifetime, no texture/mesh).

    points [N,3] float64 in the header's frame, colors [N,4] float32 RGBA in [0,1] (N may be 0); ``id`` tells
    markers of one namespace apart; ``position`` is the pose's position (TEXT_VIEW_FACING: where the text is
    drawn); ``text`` the TEXT_VIEW_FACING string.
    """

    ns: str = ""
    type: int = 0
    action: int = 0
    scale: tuple = (0.0, 0.0, 0.0)
    color: tuple = (0.0, 0.0, 0.0, 0.0)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    id: int = 0
    position: tuple = (0.0, 0.0, 0.0)
    text: str = ""


class _Writer:
    def __init__(self):
        self.parts: list[bytes] = []
        self.n = 0  # offset from the first payload byte (alignment origin)
        self.padding: list[tuple[int, int]] = []  # (payload offset, length) of alignment padding

    def _put(self, b: bytes) -> None:
        self.parts.append(b)
        self.n += len(b)

    def _align(self, a: int) -> None:
        r = -self.n % a
        if r:
            self.padding.append((self.n, r))
            self._put(b"\x00" * r)

    def pack(self, fmt: str, align: int, *values) -> None:
        self._align(align)
        self._put(struct.pack("<" + fmt, *values))

    def string(self, s: str) -> None:
        # rclpy hands a string to the serializer as a C string: an embedded NUL ends it (the rest is not sent)
        b = s.encode("utf-8").split(b"\x00", 1)[0] + b"\x00"
        self.pack("I", 4, len(b))
        self._put(b)

    def block(self, arr: np.ndarray, dtype: str, align: int) -> None:
        """A sequence of fixed-size structs of one primitive type: count, then one contiguous block."""
        self.pack("I", 4, len(arr))
        if len(arr):
            self._align(align)
            self._put(np.ascontiguousarray(arr, dtype).tobytes())

    def header(self, sec: int, nanosec: int, frame_id: str) -> None:
        self.pack("iI", 4, sec, nanosec)
        self.string(frame_id)

    def payload(self) -> bytes:
        return ENCAPSULATION_LE + b"".join(self.parts)


def encode_marker_array(specs: list[MarkerSpec], sec: int, nanosec: int, frame_id: str) -> bytes:
    """Serialized ``MarkerArray`` of ``specs``, every marker with the header (sec, nanosec, frame_id)."""
    return _write_marker_array(specs, sec, nanosec, frame_id).payload()


def _write_marker_array(specs, sec, nanosec, frame_id) -> _Writer:
    w = _Writer()
    w.pack("I", 4, len(specs))
    for s in specs:
        w.header(sec, nanosec, frame_id)
        w.string(s.ns)
        w.pack("iii", 4, int(s.id), int(s.type), int(s.action))
        w.pack("7d", 8, *(float(v) for v in s.position), 0.0, 0.0, 0.0, 1.0)  # pose: position, orientation (x, y, z, w)
        w.pack("3d", 8, *(float(v) for v in s.scale))
        w.pack("4f", 4, *(float(v) for v in s.color))
        w.pack("iI", 4, 0, 0)  # lifetime
        w.pack("?", 1, False)  # frame_locked
        w.block(np.asarray(s.points).reshape(-1, 3), "<f8", 8)
        w.block(np.asarray(s.colors).reshape(-1, 4), "<f4", 4)
        w.string("")  # texture_resource
        w.header(0, 0, "")  # texture: CompressedImage header, format, data
        w.string("")
        w.pack("I", 4, 0)
        w.pack("I", 4, 0)  # uv_coordinates
        w.string(s.text)  # text
        w.string("")  # mesh_resource
        w.string("")  # mesh_file.filename
        w.pack("I", 4, 0)  # mesh_file.data
        w.pack("?", 1, False)  # mesh_use_embedded_materials
    return w


def to_message(specs: list[MarkerSpec], header):
    """The same ``MarkerArray`` as rclpy message objects (tests, RViz checks, and the fallback path)."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    arr = MarkerArray()
    for s in specs:
        m = Marker()
        m.header = header
        m.ns = s.ns
        m.id = int(s.id)
        m.type = int(s.type)
        m.action = int(s.action)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in s.position)
        m.pose.orientation.w = 1.0
        m.text = str(s.text)
        m.scale.x, m.scale.y, m.scale.z = (float(v) for v in s.scale)
        m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in s.color)
        m.points = [Point(x=x, y=y, z=z) for x, y, z in np.asarray(s.points, np.float64).reshape(-1, 3).tolist()]
        m.colors = [ColorRGBA(r=r, g=g, b=b, a=a)
                    for r, g, b, a in np.asarray(s.colors, np.float32).reshape(-1, 4).tolist()]
        arr.markers.append(m)
    return arr


def self_check() -> str | None:
    """None when :func:`encode_marker_array` equals rclpy's serializer on a sample covering every branch
    (empty and non-empty sequences, odd string lengths, every marker kind the node sends); else the reason.

    Equal = same length, same bytes except alignment padding (rclpy leaves padding uninitialised), and rclpy
    deserializes our bytes to a message equal to the original."""
    try:
        from builtin_interfaces.msg import Time
        from rclpy.serialization import deserialize_message, serialize_message
        from std_msgs.msg import Header
        from visualization_msgs.msg import MarkerArray

        rng = np.random.default_rng(0)
        specs = [
            MarkerSpec(action=3),
            MarkerSpec("human/mesh", 11, 0, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0),
                       rng.normal(size=(6, 3)), rng.uniform(size=(6, 4)).astype(np.float32)),
            MarkerSpec("human/contacts", 7, 0, (0.02, 0.02, 0.02), (1.0, 1.0, 1.0, 1.0)),
            MarkerSpec("o/c", 7, 0, (0.02, 0.02, 0.02), (1.0, 1.0, 1.0, 1.0),
                       rng.normal(size=(1, 3)), rng.uniform(size=(1, 4)).astype(np.float32)),
            MarkerSpec("human/labels", 9, 0, (0.0, 0.0, 0.04), (1.0, 1.0, 1.0, 1.0), id=7,
                       position=(0.25, -0.5, 2.25), text="left hand 0.99"),
            MarkerSpec("object/label", 9, 0, (0.0, 0.0, 0.04), (1.0, 1.0, 1.0, 1.0), id=1,
                       position=(1.0, -0.25, 2.0), text="mug\u00b7"),  # an odd-length, non-ASCII string
        ]
        for frame in ("cam", "camera_optical_frame"):
            header = Header(stamp=Time(sec=1234567, nanosec=89), frame_id=frame)
            msg = to_message(specs, header)
            ref = np.frombuffer(bytes(serialize_message(msg)), np.uint8).copy()
            w = _write_marker_array(specs, 1234567, 89, frame)
            ours = np.frombuffer(w.payload(), np.uint8).copy()
            if len(ours) != len(ref):
                return f"CDR encoder wrote {len(ours)} bytes, rclpy {len(ref)}"
            for off, n in w.padding:
                k = len(ENCAPSULATION_LE) + off
                ref[k:k + n] = ours[k:k + n]
            diff = np.nonzero(ours != ref)[0]
            if len(diff):
                return f"CDR encoder differs from rclpy's at byte {int(diff[0])} of {len(ref)}"
            if deserialize_message(ours.tobytes(), MarkerArray) != msg:
                return "rclpy does not read the encoded MarkerArray back to the same message"
        return None
    except Exception as exc:  # no rclpy, a different message layout, ...
        return f"{type(exc).__name__}: {exc}"
