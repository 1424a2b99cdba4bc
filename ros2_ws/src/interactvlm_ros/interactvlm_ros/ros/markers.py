"""MarkerArray / point clouds of a ContactResult, placed in the camera's optical frame.

Markers (all in the input image's header frame, stamp echoed)::

    id 0, action DELETEALL             clears the previous frame's markers
    ns human/mesh      TRIANGLE_LIST   body mesh, per-vertex colour grey -> red by contact probability
    ns human/contacts  SPHERE_LIST     display-mesh vertices with contact >= threshold (2 cm spheres)
    ns object/mesh     TRIANGLE_LIST   object mesh, coloured the same way
    ns object/contacts SPHERE_LIST
    ns human/labels    TEXT_VIEW_FACING one per body part in contact ("left hand 0.99": the part's highest contact),
                       id = the part's index in ``bodies.parts.PART_NAMES``, drawn at the centre of the part's
                       contact vertices, moved 8 cm towards the camera so the mesh does not hide it
    ns object/label    TEXT_VIEW_FACING the object label in use ("cup"; "tripod (unknown label)" when the label
                       is not recognised — the model's judgement where it gives one, else the object library's:
                       ``ContactResult.label_known``), above the object

The two label namespaces appear only when there is something to write (a part in contact; a label).

Placement. When the result carries a reconstruction, its camera-frame vertices are used as they are.
Otherwise the canonical meshes are drawn at a fixed, documented pose in the optical frame (z forward,
x right, y down): rotated 180° about x (the canonical y-up, +z-facing body stands upright facing the
camera), body origin at (0, 0, 2.5) m, object scaled to 0.4 m (longest side) at (1.2, 0, 2.5) m, i.e.
to the right of the body in the image.

Display meshes are decimated to ``max_faces`` (quadric decimation via trimesh/fast_simplification,
each display vertex takes the contact of its nearest original vertex); the point clouds always carry
every contact vertex at full resolution. The placed triangle points of static meshes are cached, so a frame
only rebuilds the colour arrays (indexing into a 64-entry palette). The node publishes the array as CDR bytes
written from these numpy arrays (:mod:`.cdr`, checked against rclpy's serializer at start-up).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from ..bodies.parts import PART_ID, PART_NAMES
from .cdr import MarkerSpec, encode_marker_array, to_message

LOG = logging.getLogger("interactvlm_ros.ros.markers")

NAMESPACES = ("human/mesh", "human/contacts", "object/mesh", "object/contacts")
LABEL_NAMESPACES = ("human/labels", "object/label")  # present when there is a part in contact / a label
#: 180° about x: canonical (y up, facing +z) -> optical frame (y down, facing the camera)
R_CANON_TO_OPTICAL = np.diag([1.0, -1.0, -1.0]).astype(np.float32)
HUMAN_OFFSET = np.array([0.0, 0.0, 2.5], np.float32)
OBJECT_OFFSET = np.array([1.2, 0.0, 2.5], np.float32)
OBJECT_SIZE = 0.4  # metres, longest side of the displayed (normalised) object
CONTACT_SPHERE = 0.02
PALETTE_LEVELS = 64
# visualization_msgs/Marker constants (the module must import without ROS for the encoders' arrays)
TRIANGLE_LIST, SPHERE_LIST, TEXT_VIEW_FACING, ADD, DELETEALL = 11, 7, 9, 0, 3
LABEL_HEIGHT = 0.04  # metres, height of an upper-case letter in RViz
LABEL_TOWARDS_CAMERA = 0.08  # metres a part label is moved from its contact patch towards the camera
WHITE = (1.0, 1.0, 1.0, 1.0)
GREY = np.array([0.75, 0.75, 0.75], np.float32)
RED = np.array([1.0, 0.15, 0.1], np.float32)


def contact_colors(p: np.ndarray) -> np.ndarray:
    """[N] probabilities -> [N,3] RGB in [0,1], grey (0) to red (1), linear."""
    p = np.clip(np.nan_to_num(np.asarray(p, np.float32)), 0.0, 1.0)[:, None]
    return GREY * (1 - p) + RED * p


def canonical_to_camera(vertices: np.ndarray, offset: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Place canonical vertices in the optical frame at ``offset`` (see module docstring)."""
    return (np.asarray(vertices, np.float32) * scale) @ R_CANON_TO_OPTICAL.T + offset


@dataclass
class DisplayMesh:
    """A (possibly decimated) display copy of a mesh: vertices [M,3], faces [G,3], and
    ``source_index`` [M]: the original vertex each display vertex takes its contact from."""

    vertices: np.ndarray
    faces: np.ndarray
    source_index: np.ndarray


def _mesh_key(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(vertices, np.float32).tobytes())
    h.update(np.ascontiguousarray(faces, np.int64).tobytes())
    h.update(str(max_faces).encode())
    return h.hexdigest()


def display_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> DisplayMesh:
    """Decimate to at most ``max_faces`` faces (0 = keep all). Falls back to the full mesh (logged)
    when fast_simplification is not installed."""
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int64)
    if max_faces <= 0 or len(f) <= max_faces:
        return DisplayMesh(v, f, np.arange(len(v)))
    try:
        import trimesh
        from scipy.spatial import cKDTree

        m = trimesh.Trimesh(v, f, process=False).simplify_quadric_decimation(face_count=int(max_faces))
        dv = np.asarray(m.vertices, np.float32)
        df = np.asarray(m.faces, np.int64)
        if len(df) == 0:
            raise ValueError("decimation produced no faces")
        _, idx = cKDTree(v).query(dv)
        return DisplayMesh(dv, df, np.asarray(idx, np.int64))
    except Exception as exc:
        LOG.warning("fallback: display mesh not decimated (%d faces kept): %s", len(f), exc)
        return DisplayMesh(v, f, np.arange(len(v)))


class MarkerBuilder:
    """Builds the markers of a result as :class:`~.cdr.MarkerSpec` arrays, then either as a MarkerArray
    message (:meth:`build`) or as its serialized CDR bytes (:meth:`build_raw`, what the node publishes when
    :func:`~.cdr.self_check` passes). Caches display meshes and the placed triangle points of static meshes."""

    def __init__(self, max_faces: int = 2000, threshold: float = 0.5):
        self.max_faces = int(max_faces)
        self.threshold = float(threshold)
        levels = np.linspace(0.0, 1.0, PALETTE_LEVELS, dtype=np.float32)
        self._palette = np.concatenate([contact_colors(levels), np.ones((PALETTE_LEVELS, 1), np.float32)], 1)
        self._display: dict[str, DisplayMesh] = {}
        self._points: dict[tuple, np.ndarray] = {}
        self._recent: list[tuple[np.ndarray, np.ndarray, int, str]] = []  # (v, f, max_faces, key) copies, newest first

    def _colors(self, p: np.ndarray) -> np.ndarray:
        """[N] probabilities -> [N,4] RGBA (a 64-level palette, alpha 1)."""
        q = np.rint(np.clip(np.nan_to_num(p), 0, 1) * (PALETTE_LEVELS - 1)).astype(np.int64)
        return self._palette[q]

    def _display_for(self, vertices, faces) -> tuple[str, DisplayMesh]:
        key = self._key_by_value(vertices, faces)  # each result owns a copy of its mesh: compared by value
        dm = self._display.get(key)
        if dm is None:
            if len(self._display) > 8:
                self._display.clear()
                self._points.clear()
            dm = self._display[key] = display_mesh(vertices, faces, self.max_faces)
        return key, dm

    def _key_by_value(self, vertices, faces) -> str:
        """Content key of a mesh: compared with the 4 most recent meshes first (≈ 0.02 ms for the 13.7k-vertex body),
        hashed only when new (≈ 2 ms) — every result carries its own copy of the template, so identity never hits."""
        v, f = np.asarray(vertices), np.asarray(faces)
        for i, (rv, rf, mf, key) in enumerate(self._recent):
            if mf == self.max_faces and rv.shape == v.shape and rf.shape == f.shape and np.array_equal(rv, v) \
                    and np.array_equal(rf, f):
                if i:
                    self._recent.insert(0, self._recent.pop(i))
                return key
        key = _mesh_key(vertices, faces, self.max_faces)
        self._recent.insert(0, (v.copy(), f.copy(), self.max_faces, key))
        del self._recent[4:]
        return key

    def _mesh_marker(self, ns, vertices, faces, contact, place, cam_vertices=None) -> MarkerSpec:
        key, dm = self._display_for(vertices, faces)
        if cam_vertices is not None:  # reconstruction: geometry changes every frame
            points = np.asarray(cam_vertices, np.float64)[dm.source_index][dm.faces].reshape(-1, 3)
        else:
            pkey = (key, place)
            points = self._points.get(pkey)
            if points is None:
                offset, scale = place
                cam = canonical_to_camera(dm.vertices, np.asarray(offset, np.float32), scale)
                points = self._points[pkey] = cam[dm.faces].reshape(-1, 3).astype(np.float64)
        c = np.zeros(len(dm.vertices), np.float32) if contact is None else np.asarray(contact, np.float32)[dm.source_index]
        return MarkerSpec(ns, TRIANGLE_LIST, ADD, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0), points,
                          self._colors(c[dm.faces].reshape(-1)))

    def _contact_marker(self, ns, vertices, faces, cam_vertices, contact) -> MarkerSpec:
        """Spheres at the *display* mesh's vertices with contact >= threshold (the cloud has them all)."""
        m = MarkerSpec(ns, SPHERE_LIST, ADD, (CONTACT_SPHERE,) * 3, (1.0, 1.0, 1.0, 1.0))
        if contact is not None and cam_vertices is not None:
            _, dm = self._display_for(vertices, faces)
            c = np.asarray(contact, np.float32)[dm.source_index]
            sel = np.nonzero(c >= self.threshold)[0]
            m.points = np.asarray(cam_vertices, np.float64)[dm.source_index[sel]]
            m.colors = self._colors(c[sel])
        return m

    def specs(self, result) -> list[MarkerSpec]:
        """The markers of ``result`` (any status: non-ok results give just the DELETEALL)."""
        out = [MarkerSpec(action=DELETEALL)]
        if result is None or result.status != "ok":
            return out
        for side, offset, scale in (("human", HUMAN_OFFSET, 1.0), ("object", OBJECT_OFFSET, OBJECT_SIZE)):
            verts = getattr(result, f"{side}_vertices")
            faces = getattr(result, f"{side}_faces")
            contact = getattr(result, f"{side}_contact")
            if verts is None or faces is None:
                continue
            cam = camera_vertices(result, side)
            recon_cam = cam if _recon_vertices(result, side) is not None else None
            place = (tuple(float(x) for x in offset), float(scale))
            out.append(self._mesh_marker(f"{side}/mesh", verts, faces, contact, place, recon_cam))
            out.append(self._contact_marker(f"{side}/contacts", verts, faces, cam, contact))
        out.extend(self.part_labels(result))
        out.extend(self.object_label(result))
        return out

    def part_labels(self, result) -> list[MarkerSpec]:
        """TEXT_VIEW_FACING markers (ns ``human/labels``), one per body part whose highest contact is >= threshold:
        "left hand 0.99", at the centre of that part's contact vertices in the camera frame, moved
        ``LABEL_TOWARDS_CAMERA`` towards the camera. None without human contact or part ids."""
        pts, c, parts = contact_points(result, "human", self.threshold, with_parts=True)
        keep = parts >= 0
        pts, c, parts = pts[keep], c[keep], parts[keep]
        out = []
        for pid in np.unique(parts):
            sel = parts == pid
            centre = pts[sel].astype(np.float64).mean(0)
            dist = float(np.linalg.norm(centre))
            if dist > 2 * LABEL_TOWARDS_CAMERA:
                centre = centre * (1.0 - LABEL_TOWARDS_CAMERA / dist)
            name = PART_NAMES[int(pid)].replace("_", " ")
            out.append(MarkerSpec("human/labels", TEXT_VIEW_FACING, ADD, (0.0, 0.0, LABEL_HEIGHT), WHITE,
                                  id=int(pid), position=tuple(centre), text=f"{name} {float(c[sel].max()):.2f}"))
        return out

    def object_label(self, result) -> list[MarkerSpec]:
        """A TEXT_VIEW_FACING marker (ns ``object/label``) naming the object label in use, centred above the object
        (optical frame: y down) — " (unknown label)" added when the label is not recognised (``result.label_known``: the
        model's judgement where it gives one, else the object library's)."""
        label = str(getattr(result, "object_label", "") or "").strip()
        cam = camera_vertices(result, "object")
        if not label or cam is None or len(cam) == 0:
            return []
        lo, hi = cam.min(0).astype(np.float64), cam.max(0).astype(np.float64)
        pos = ((lo[0] + hi[0]) / 2, lo[1] - 1.5 * LABEL_HEIGHT, (lo[2] + hi[2]) / 2)
        text = label if getattr(result, "label_known", True) else f"{label} (unknown label)"
        return [MarkerSpec("object/label", TEXT_VIEW_FACING, ADD, (0.0, 0.0, LABEL_HEIGHT), WHITE,
                           position=pos, text=text)]

    def build(self, result, header):
        """MarkerArray message of ``result``, every marker with ``header``."""
        return to_message(self.specs(result), header)

    def build_raw(self, result, header) -> bytes:
        """The same MarkerArray as serialized CDR bytes (for ``Publisher.publish``; see :mod:`.cdr`)."""
        return encode_marker_array(self.specs(result), int(header.stamp.sec), int(header.stamp.nanosec),
                                   str(header.frame_id))


def _recon_vertices(result, side):
    rec = getattr(result, "reconstruction", None)
    if rec is None or getattr(rec, "status", "ok") != "ok":
        return None
    v = getattr(rec, f"{side}_vertices_cam", None)
    expected = getattr(result, f"{side}_vertices")
    if v is None or expected is None or len(v) != len(expected):
        return None
    return np.asarray(v, np.float32)


def camera_vertices(result, side: str) -> np.ndarray | None:
    """Vertices of ``side`` ('human'|'object') in the camera frame: reconstruction if present, else the
    documented fixed placement of the canonical mesh."""
    rec = _recon_vertices(result, side)
    if rec is not None:
        return rec
    verts = getattr(result, f"{side}_vertices")
    if verts is None:
        return None
    if side == "human":
        return canonical_to_camera(verts, HUMAN_OFFSET, 1.0)
    return canonical_to_camera(verts, OBJECT_OFFSET, OBJECT_SIZE)


def contact_points(result, side: str, threshold: float, with_parts: bool = False):
    """(points [K,3] in the camera frame, contact [K]) of vertices with contact >= threshold. ``with_parts``: also
    their body-part ids [K] int64, an index into ``bodies.parts.PART_NAMES`` (``result.part_ids``, mapped by name
    when the result names its parts otherwise; -1 where the result has no part ids, for an id outside the vocabulary,
    and on the object side)."""
    contact = getattr(result, f"{side}_contact", None) if result is not None else None
    cam = camera_vertices(result, side) if result is not None else None
    if contact is None or cam is None or len(cam) != len(contact):
        empty = (np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
        return (*empty, np.zeros(0, np.int64)) if with_parts else empty
    sel = np.nonzero(np.asarray(contact) >= threshold)[0]
    out = (cam[sel].astype(np.float32), np.asarray(contact, np.float32)[sel])
    if not with_parts:
        return out
    ids = getattr(result, "part_ids", None) if side == "human" else None
    if ids is None or len(ids) != len(contact):
        return (*out, np.full(len(sel), -1, np.int64))
    parts = np.asarray(ids, np.int64)[sel]
    names = list(getattr(result, "part_names", None) or PART_NAMES)
    if names != PART_NAMES:  # the shared vocabulary's index
        lut = np.array([PART_ID.get(str(n), -1) for n in names] + [-1], np.int64)
        parts = lut[np.where((parts >= 0) & (parts < len(names)), parts, len(names))]
    else:  # an id outside the vocabulary names no part: -1 (unknown), as in the branch above
        parts = np.where((parts >= 0) & (parts < len(PART_NAMES)), parts, -1)
    return (*out, parts)


def check_marker_array(arr) -> list[str]:
    """Problems that make RViz reject or mis-draw markers (empty list = valid). Used by the tests and
    by the node's self-check."""
    from visualization_msgs.msg import Marker

    problems = []
    if not arr.markers or arr.markers[0].action != Marker.DELETEALL:
        problems.append("first marker is not DELETEALL")
    seen = set()
    for m in arr.markers[1:]:
        tag = f"{m.ns}/{m.id}"
        if (m.ns, m.id) in seen:
            problems.append(f"{tag}: duplicate ns/id")
        seen.add((m.ns, m.id))
        q = m.pose.orientation
        n = (q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2) ** 0.5
        if abs(n - 1.0) > 1e-3:
            problems.append(f"{tag}: orientation not a unit quaternion (|q|={n:.3f})")
        # RViz's MarkerCommon::processMessage drops the whole marker when its pose, scale or color is not finite
        p, s, c = m.pose.position, m.scale, m.color
        for what, vals in (("pose", (p.x, p.y, p.z, q.x, q.y, q.z, q.w)), ("scale", (s.x, s.y, s.z)),
                           ("color", (c.r, c.g, c.b, c.a))):
            if not np.all(np.isfinite(vals)):
                problems.append(f"{tag}: non-finite {what} (RViz rejects the marker)")
        if m.colors and not np.all(np.isfinite([v for k in m.colors for v in (k.r, k.g, k.b, k.a)])):
            problems.append(f"{tag}: non-finite colours")
        if m.type == Marker.TRIANGLE_LIST:
            if not m.points:  # RViz: "TriMesh marker [...] has no points." (an error, the marker is not drawn)
                problems.append(f"{tag}: TRIANGLE_LIST without points")
            if len(m.points) % 3:
                problems.append(f"{tag}: TRIANGLE_LIST with {len(m.points)} points (not a multiple of 3)")
            if (m.scale.x, m.scale.y, m.scale.z) != (1.0, 1.0, 1.0):
                problems.append(f"{tag}: mesh scale {m.scale.x, m.scale.y, m.scale.z} != 1")
        if m.type in (Marker.SPHERE_LIST, Marker.POINTS) and min(m.scale.x, m.scale.y, m.scale.z) <= 0:
            problems.append(f"{tag}: non-positive point scale")
        if m.type == Marker.TEXT_VIEW_FACING:
            if not m.text:
                problems.append(f"{tag}: TEXT_VIEW_FACING without text")
            if m.scale.z <= 0:
                problems.append(f"{tag}: text height scale.z <= 0")
            p = m.pose.position
            if not np.all(np.isfinite([p.x, p.y, p.z])):
                problems.append(f"{tag}: non-finite text position")
        if m.colors and len(m.colors) != len(m.points):
            problems.append(f"{tag}: {len(m.colors)} colours for {len(m.points)} points")
        if m.color.a <= 0 or any(c.a <= 0 for c in m.colors):
            problems.append(f"{tag}: alpha <= 0 (invisible)")
        vals = [v for p in m.points for v in (p.x, p.y, p.z)]
        if vals and not np.all(np.isfinite(vals)):
            problems.append(f"{tag}: non-finite point coordinates")
    return problems
