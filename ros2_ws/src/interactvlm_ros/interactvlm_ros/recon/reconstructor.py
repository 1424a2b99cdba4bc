"""``Reconstructor``: posed human + object in the camera frame with contacts; ``Tracker``: per-frame warm start.

One frame (``Reconstructor.fit``)::

    checks: K (bad_intrinsics), depth (bad_depth), observation (no_person), object mask (object_not_visible)
    BodyFitter   landmarks (+ 3-D landmarks, + depth)            -> Anny mesh [N,3] in the camera frame
    ObjectFitter contacts + object mask (+ depth) + penetration  -> object pose 4x4, mesh [M,3]
    outputs      grip poses (object contact patches), free grasp points, metrics  -> Reconstruction

The contacts come from any localizer: arrays on the Anny template topology (human, 13718) and on the
object mesh's vertices, or a ``ContactResult`` (pipeline) carrying them. Nothing here depends on which
model produced them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interactvlm_ros.pipeline import Fallbacks
from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter, BodyState, FitCancelled
from interactvlm_ros.recon.camera import (DepthError, IntrinsicsError, default_intrinsics, validate_K,
                                          validate_depth)
from interactvlm_ros.recon.geometry import is_closed
from interactvlm_ros.recon.object_fit import ObjectFitConfig, ObjectFitter

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_person", "object_not_visible", "bad_depth", "bad_intrinsics", "diverged", "bad_input",
            "cold_start_pending",  # Tracker(background=True) while a cold fit runs in its thread
            "cancelled",  # Tracker: the frame's fit was cancelled (reset / close while it ran)
            "failed")  # the fit raised (a bug): ContactEstimator inline, or a background cold fit's late result
DEFAULT_OBJECT_SIZE = 0.25  # m, longest side, when nothing tells the real size (logged fallback)


@dataclass
class Reconstruction:
    """Result of one frame. Camera optical frame (x right, y down, z forward), metres.

    human_vertices_cam [N,3], human_faces [F,3], human_contact [N] (as given); object_vertices_cam [M,3],
    object_faces, object_contact [M] | None — of the mesh the fit used: one of more than ``objects.PIPELINE_MAX_FACES``
    faces is decimated first (a named fallback; each kept vertex takes the object_contact given for its nearest input
    vertex); human_grip_poses: list of dicts (pose 4x4, centre, normal, ...) —
    contact patches on the object; free_grasp_points [P,3] (+ free_grasp_normals) — object surface away from the
    person.

    object_pose 4x4, rigid (rotation + translation): camera ← the *fitted* object mesh's frame, i.e. the input mesh
    as the fit used it — metric, and, whenever ``fit`` sized it (``object_size`` given, or a ``ContactResult``'s mesh,
    which is always sized: by its file's extent when metric, else by label), centred on its vertex mean and scaled to
    that size; ``object_vertices_cam`` = that mesh moved by object_pose. It is then NOT the pose of the input mesh
    file: ``object_mesh_transform`` 4x4 (a similarity, uniform scale ``object_scale`` — 1.0 for a metric mesh sized
    by its own extent, which is still centred) maps the input mesh's own coordinates (the file, or the arrays given)
    to the frame object_pose maps from — identity when the mesh was used as it is (a mesh without ``object_size``),
    None when no mesh was read; for a ``ContactResult``'s normalised mesh it includes the pipeline's normalisation
    (``ContactResult.object_normalization``), so it maps the mesh file's own coordinates — and
    ``object_pose_mesh_file`` = object_pose @ object_mesh_transform maps the input mesh's own coordinates to the camera (``trimesh.load(file, process=False).apply_transform(object_pose_mesh_file)``
    gives object.ply's vertices)."""

    status: str
    message: str = ""
    human_vertices_cam: np.ndarray | None = None
    human_faces: np.ndarray | None = None
    human_contact: np.ndarray | None = None
    object_vertices_cam: np.ndarray | None = None
    object_faces: np.ndarray | None = None
    object_contact: np.ndarray | None = None
    object_pose: np.ndarray | None = None
    human_grip_poses: list = field(default_factory=list)
    free_grasp_points: np.ndarray | None = None
    free_grasp_normals: np.ndarray | None = None
    K: np.ndarray | None = None
    body_state: BodyState | None = None
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    object_mesh_transform: np.ndarray | None = None  # 4x4 similarity: object_pose's frame ← input mesh coordinates

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def object_scale(self) -> float | None:
        """The uniform scale the fit applied to the input object mesh (1.0: not scaled, though maybe centred — see
        ``object_mesh_transform``; None: no mesh read)."""
        if self.object_mesh_transform is None:
            return None if self.object_pose is None else 1.0
        return float(np.cbrt(np.linalg.det(np.asarray(self.object_mesh_transform, np.float64)[:3, :3])))

    @property
    def object_pose_mesh_file(self) -> np.ndarray | None:
        """4x4 similarity camera ← the input object mesh's own coordinates (its file's): object_pose @
        object_mesh_transform; None without an object pose. Not rigid when the fit rescaled the mesh."""
        if self.object_pose is None:
            return None
        P = np.asarray(self.object_pose, np.float64)
        return P if self.object_mesh_transform is None else P @ np.asarray(self.object_mesh_transform, np.float64)

    def to_json(self) -> dict:
        """JSON-safe dict (``json.dumps(..., allow_nan=False)`` works): numpy values as Python ones, and a non-finite
        number (e.g. ``contact_distance_m`` when no human vertex is in contact) as None — NaN is not JSON."""
        def arr(x):
            return None if x is None else np.asarray(x).tolist()

        return json_safe({
            "status": self.status, "message": self.message, "frame": "camera_optical (x right, y down, z forward), metres",
            "K": arr(self.K), "object_pose": arr(self.object_pose),
            # the pose of the input mesh file itself (object_pose is the centred, metric fitted mesh's): see the class
            "object_scale": self.object_scale, "object_pose_mesh_file": arr(self.object_pose_mesh_file),
            "human_grip_poses": [{k: (arr(v) if isinstance(v, np.ndarray) else v) for k, v in g.items()}
                                 for g in self.human_grip_poses],
            "free_grasp_points": int(0 if self.free_grasp_points is None else len(self.free_grasp_points)),
            "body": None if self.body_state is None else {
                "translation": arr(self.body_state.t), "rotation": arr(self.body_state.R),
                "phenotype": arr(self.body_state.phenotype)},
            "metrics": {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in self.metrics.items()},
            "timings_ms": self.timings,
        })


def json_safe(x):
    """``x`` with numpy scalars/arrays as Python values, tuples as lists and non-finite floats as None (recursively)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


@dataclass
class ReconInit:
    """Warm start: the previous frame's body state and object pose, and its fitted body vertices [N,3] (camera frame)
    so the object can first be carried along with the body region it touches (``carry_with_body``)."""

    body: BodyState | None = None
    object_pose: np.ndarray | None = None
    human_vertices: np.ndarray | None = None

    @classmethod
    def from_reconstruction(cls, rec: "Reconstruction") -> "ReconInit | None":
        if rec is None or not rec.ok:
            return None
        return cls(rec.body_state.copy() if rec.body_state is not None else None,
                   None if rec.object_pose is None else np.array(rec.object_pose),
                   None if rec.human_vertices_cam is None else np.array(rec.human_vertices_cam))


def carry_with_body(object_pose: np.ndarray, prev_vertices: np.ndarray, vertices: np.ndarray,
                    human_contact: np.ndarray, thr: float = 0.5, min_vertices: int = 10) -> np.ndarray:
    """The previous object pose moved by the rigid motion of the body region in contact (weighted by contact,
    ``recon.geometry.umeyama``) between the previous and this frame's fitted bodies (same topology): a held object
    moves with the hand, a sat-on chair with the seat. Fewer than ``min_vertices`` contact vertices: the whole
    body's motion. -> 4x4."""
    from interactvlm_ros.recon.geometry import umeyama

    w = np.where(np.asarray(human_contact) > thr, np.asarray(human_contact, np.float64), 0.0)
    if (w > 0).sum() < min_vertices:
        w = np.ones(len(vertices))
    R, t = umeyama(prev_vertices, vertices, w)
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, t
    return M @ np.asarray(object_pose, np.float64)


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    if mesh is None:
        raise ValueError("no object mesh: pass object_mesh (path, (vertices, faces) or a mesh object)")
    if isinstance(mesh, (str, Path)):
        import trimesh

        p = Path(mesh)
        if not p.is_file():
            raise ValueError(f"object_mesh {p} does not exist")
        try:  # a file trimesh cannot read (an image, a corrupt mesh) raises anything: bad_input, not a crash
            m = trimesh.load(p, force="mesh", process=False)
            return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"object_mesh {p} cannot be read as a mesh ({type(exc).__name__}: {exc}); give a "
                             "ply/obj/stl/glb mesh file") from None
    if isinstance(mesh, tuple) and len(mesh) == 2:
        return np.asarray(mesh[0], np.float64), np.asarray(mesh[1], np.int64)
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    raise ValueError(f"object_mesh of type {type(mesh).__name__}: expected a path, (vertices, faces) or a mesh")


def _inward_wound(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """True for a closed mesh (every edge shared by exactly two faces: ``geometry.is_closed``) whose faces are wound so
    that its signed volume is negative: its face normals point inwards. Open meshes (volume undefined) are left as they
    are (``outputs.grip_poses`` turns their grip normals to the person's side)."""
    f = np.asarray(faces, np.int64)
    if len(f) < 4 or f.min() < 0 or f.max() >= len(vertices):
        return False
    v = np.asarray(vertices, np.float64)
    a, b, c = (v[f[:, k]] - v.mean(0) for k in range(3))
    if float(np.einsum("ij,ij->", a, np.cross(b, c))) >= 0.0:
        return False
    return is_closed(f, len(v), v)


_WINDING_CACHE: list = []  # (vertices, faces, inward) of the last meshes, compared by value


def _inward_wound_cached(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """:func:`_inward_wound`, once per mesh (its own 4-entry cache, compared by value; not ``outputs``' per-mesh
    cache, whose slots hold the meshes the outputs use): a tracked object is fitted every frame, and the test costs
    ~5-10 ms on a 20k-face mesh."""
    v, f = np.asarray(vertices), np.asarray(faces)
    for cv, cf, inward in _WINDING_CACHE:
        if cv.shape == v.shape and cf.shape == f.shape and np.array_equal(cv, v) and np.array_equal(cf, f):
            return inward
    inward = _inward_wound(v, f)
    _WINDING_CACHE.insert(0, (v.copy(), f.copy(), inward))
    del _WINDING_CACHE[4:]
    return inward


def _catalog_size(label: str | None) -> tuple[float, float, str] | None:
    """(min, max, category) of the synthetic catalog's longest-side range (m) for a label, or None."""
    if not label:
        return None
    from interactvlm_ros.synth import catalog

    key = label.strip().lower()
    for c in catalog.CATEGORIES.values():
        if key == c.name or key in c.synonyms:
            return float(c.size[0]), float(c.size[1]), c.name
    return None


def object_size_for(label: str | None, source: str | None) -> tuple[float | None, str]:
    """Real longest side (m) of an object from its source mesh file, else the synthetic catalog's size range by label,
    else the object library's (metric) mesh of a ``library:<category>`` source. (None, why) when unknown.

    The file's extent is taken as metres only when it is plausible: within 0.01–5 m and, when the label has a catalog
    size, within a factor 3 of the catalog's range (a mesh in millimetres or centimetres is not); otherwise ``why``
    says which extent was not used."""
    cat = _catalog_size(label)
    note = ""
    if source:
        p = Path(str(source).split(":", 1)[-1]) if not Path(str(source)).is_file() else Path(str(source))
        if p.is_file():
            try:
                ext = _file_extent(p)
            except Exception as exc:  # noqa: BLE001 - unreadable source: try the label
                log.debug("object size from %s failed: %s", p, exc)
            else:
                if 0.01 < ext < 5.0 and (cat is None or cat[0] / 3 <= ext <= 3 * cat[1]):
                    return ext, f"extent of {p.name}"
                note = f"; the extent {ext:.4g} of {p.name} is not a plausible size in metres"
    if cat is not None:
        return float(np.mean(cat[:2])), f"catalog size of '{cat[2]}'{note}"
    lib = _library_size(source)
    if lib is not None:
        return lib[0], f"the object library's '{lib[1]}' mesh{note}"
    return None, f"unknown{note}"


_EXTENT_CACHE: dict = {}  # (path, mtime, ctime, inode, size) -> longest side of the file's mesh
_EXTENT_LOCK = threading.Lock()


def _file_extent(p: Path) -> float:
    """Longest bbox side of a mesh file, read once per file version: the pipeline's mesh is sized from its file every
    frame (a 1.3 M-face scan took 0.6 s to read)."""
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)
    with _EXTENT_LOCK:  # a warm fit and a background cold fit may size meshes at once
        ext = _EXTENT_CACHE.get(key)
    if ext is None:
        v, _ = _mesh_arrays(p)
        ext = float((v.max(0) - v.min(0)).max())
        with _EXTENT_LOCK:
            while len(_EXTENT_CACHE) >= 16:
                _EXTENT_CACHE.pop(next(iter(_EXTENT_CACHE)))
            _EXTENT_CACHE[key] = ext
    return ext


def _library_size(source: str | None) -> tuple[float, str] | None:
    """(longest side in m, category) of the object library's mesh named by a ``library:<category>`` source (the library's
    meshes are metric, ``catalog.json`` ``extent_m``), or None — also for the generic stand-in of an unknown label."""
    if not source or not str(source).startswith("library:"):
        return None
    from interactvlm_ros.objects import GENERIC, library

    name = str(source).split(":", 1)[1]
    entry = library().entries.get(name)
    if name == GENERIC or entry is None or not entry.get("extent_m"):
        return None
    return float(max(entry["extent_m"])), name


class Reconstructor:
    """Fit the human (Anny) and the object in the camera frame. See the module docstring.

    Args:
        body_config / object_config: iteration counts and loss weights.
        device: "cpu" or "cuda" (object silhouette through nvdiffrast on CUDA).
        max_reproj_rel: body 2-D landmark error (fraction of the person's bbox diagonal) above which
            the fit is reported ``diverged``.
        max_penetration: object-in-body depth (m) above which the result is ``diverged``.
    """

    def __init__(self, body_config: BodyFitConfig | None = None, object_config: ObjectFitConfig | None = None,
                 device: str = "cpu", max_reproj_rel: float = 0.1, max_penetration: float = 0.03):
        self.body_fitter = BodyFitter(config=body_config)
        self.object_fitter = ObjectFitter(object_config, device=device)
        # set → a running fit raises FitCancelled at its next iteration (Tracker: background cold fits, shutdown)
        self.cancel = threading.Event()
        self.body_fitter.cancel = self.object_fitter.cancel = self.cancel
        self.max_reproj_rel = float(max_reproj_rel)
        self.max_penetration = float(max_penetration)
        self.fallbacks = Fallbacks()
        self._decimated = None  # (key, vertices, faces, nearest input vertex) of the last mesh over the face budget

    def _fallback(self, text: str, label: bool = False) -> None:
        if self.fallbacks.note(text, label):
            log.warning("fallback: %s", text)

    def object_size(self, label: str | None, source: str | None) -> tuple[float, str]:
        """(longest side in m, where it came from) of a mesh whose own scale is not known to be metric (a normalised
        pipeline mesh, a user's mesh file): ``object_size_for``, else ``DEFAULT_OBJECT_SIZE``. A size that is not the
        mesh file's own extent is a named fallback ("object size by label ..." or the default)."""
        size, why = object_size_for(label, source)
        if size is None:
            note = why.partition("; ")[2]
            self._fallback(f"object size unknown for '{label or ''}'{'; ' + note if note else ''}; assuming a longest "
                           f"side of {DEFAULT_OBJECT_SIZE} m (pass object_size)", label=True)
            return DEFAULT_OBJECT_SIZE, f"default {DEFAULT_OBJECT_SIZE} m"
        if not why.startswith("extent of"):
            self._fallback(f"object size by label: {why}; using {size:.3f} m (pass object_size for the real size)",
                           label=True)
        return size, why

    # ---------------------------------------------------------------------------------------------
    def _camera_and_person(self, H: int, W: int, observation, K, depth):
        """(K, depth in metres, None) for a frame the fit can use, else (K, depth, the failed Reconstruction):
        ``bad_intrinsics``, ``bad_depth``, ``no_person``. Milliseconds: also the background tracker's check before
        it starts a cold fit (seconds) of a frame that cannot be fitted."""
        if K is None:
            K = default_intrinsics(H, W)
            self._fallback("no camera intrinsics: default fx = fy = 1.2·max(W, H), principal point at the centre")
        try:
            K = validate_K(K, H, W)
        except IntrinsicsError as exc:
            return K, depth, Reconstruction("bad_intrinsics", str(exc))
        if abs(K[0, 2] / W - 0.5) > OFF_CENTRE or abs(K[1, 2] / H - 0.5) > OFF_CENTRE:  # legal (a crop), but the usual
            # sign of a K for another resolution (a 1280x720 calibration on 640x480 images): named once per image
            # size — the point itself is not in the text, or a moving crop (camera_info roi) listed one per frame
            self._fallback(f"K's principal point is far (more than {OFF_CENTRE:.0%} of a side) from the centre of the "
                           f"{W}x{H} image: is K for another resolution? (scale fx, fy, cx, cy with the image; fine "
                           "for a crop)")
        if depth is not None:
            try:
                depth = validate_depth(depth, H, W)
            except DepthError as exc:
                return K, depth, Reconstruction("bad_depth", str(exc), K=K)
        if observation is None or not getattr(observation, "found", False):
            return K, depth, Reconstruction("no_person", "no person observed in the image", K=K)
        kp2d = np.asarray(observation.keypoints_2d, np.float64)
        if kp2d.shape != (33, 3) or not np.isfinite(kp2d).all() or (kp2d[:, 2] > 0.5).sum() < 6:
            return K, depth, Reconstruction("no_person", "fewer than 6 visible body landmarks; cannot fit a body", K=K)
        return K, depth, None

    def unfittable(self, image, observation, K=None, depth=None) -> "Reconstruction | None":
        """The failed Reconstruction (``bad_input`` image, ``bad_intrinsics``, ``bad_depth``, ``no_person``) a fit of
        this frame would return at once, else None; milliseconds."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            return Reconstruction("bad_input", f"image must be HxWx3 RGB, got shape {image.shape}")
        return self._camera_and_person(image.shape[0], image.shape[1], observation, K, depth)[2]

    def fit(self, image: np.ndarray, observation: Any, human_contact: Any = None, object_contact=None,
            object_mesh=None, depth=None, K=None, init: ReconInit | Reconstruction | None = None,
            object_mask=None, object_size: float | None = None, object_label: str | None = None,
            object_box=None) -> Reconstruction:
        """One frame.

        image uint8 [H,W,3]; observation: ``HumanObservation`` (keypoints_2d [33,3] px, keypoints_3d [33,3] | None,
        hands_2d [2,21,3], mask [H,W] | None); human_contact [N] on the Anny topology, or a ``ContactResult``
        (then object_contact / object mesh / label come from it); object_contact [M] | None; object_mesh:
        path | (vertices, faces) | mesh — metric unless ``object_size`` (longest side, m) is given;
        depth [H,W] metres (0/NaN invalid) | None; K [3,3] | None (default intrinsics, logged);
        object_mask [H,W] bool | None (None: estimated near the contact, heuristic, depth term only);
        object_box (x0, y0, x1, y1) pixels | None: a detector's box around the object, used when there is no
        ``object_mask`` — its region (minus the person) selects the depth points and the object may not project
        outside box ∪ person (``ObjectFitConfig.w_box``); a box is not a silhouette, so no mask/centroid terms;
        init: previous ``Reconstruction`` / ``ReconInit`` for a warm start."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            return Reconstruction("bad_input", f"image must be HxWx3 RGB, got shape {image.shape}")
        H, W = image.shape[:2]
        if object_size is not None:
            try:
                object_size = float(object_size)
            except (TypeError, ValueError):
                object_size = float("nan")
            if not (np.isfinite(object_size) and object_size > 0):
                return Reconstruction("bad_input", f"object_size {object_size} m: the object's longest side must be a "
                                      "finite length > 0 (or None: the mesh is metric)")
        # ---- contacts from a ContactResult
        given_transform = None  # the given mesh arrays ← the input mesh file's coordinates (a ContactResult's mesh)
        if human_contact is not None and hasattr(human_contact, "human_contact"):
            cr = human_contact
            human_contact = cr.human_contact
            if object_contact is None:
                object_contact = cr.object_contact
            if object_mesh is None and getattr(cr, "object_vertices", None) is not None:
                object_mesh = (cr.object_vertices, cr.object_faces)
                given_transform = getattr(cr, "object_normalization", None)  # normalised vertices ← the file's
                if object_size is None:  # pipeline meshes are normalised (longest side 1)
                    object_size, why = self.object_size(getattr(cr, "object_label", None),
                                                        getattr(cr, "object_source", None))
                    timings["object_size_source"] = why  # type: ignore[assignment]
            object_label = object_label or getattr(cr, "object_label", None)
        # ---- intrinsics, depth, person
        K, depth, failed = self._camera_and_person(H, W, observation, K, depth)
        if failed is not None:
            return failed
        kp2d = np.asarray(observation.keypoints_2d, np.float64)
        # ---- object mask
        if object_mask is not None:
            object_mask = np.asarray(object_mask, bool)
            if object_mask.shape != (H, W):
                return Reconstruction("bad_input", f"object_mask is {object_mask.shape}, the image is {(H, W)}", K=K)
            if object_mask.sum() < 10:
                return Reconstruction("object_not_visible", "the object mask is empty (object not in view)", K=K)
        box_px = None
        if object_box is not None and object_mask is None:  # a mask, when both are given, says more
            try:
                box_px = box_pixels(object_box, H, W)
            except ValueError as exc:
                return Reconstruction("bad_input", str(exc), K=K)
            if box_px is None:
                return Reconstruction("object_not_visible", f"the object box {list(object_box)} covers < 10 pixels "
                                      f"of the {W}x{H} image", K=K)
        # ---- contacts / mesh
        poser = self.body_fitter.poser
        if human_contact is None:
            return Reconstruction("bad_input", "human_contact is required (per-vertex, Anny topology)", K=K)
        hc = np.asarray(human_contact, np.float64).reshape(-1)
        if len(hc) != poser.N:
            return Reconstruction("bad_input", f"human_contact has {len(hc)} entries; the reconstruction fits Anny "
                                  f"({poser.N} vertices) — use body='anny' in the pipeline", K=K)
        if not np.isfinite(hc).all():
            return Reconstruction("bad_input", "human_contact contains NaN/inf", K=K)
        try:
            ov, of = _mesh_arrays(object_mesh)
        except ValueError as exc:
            return Reconstruction("bad_input", str(exc), K=K)
        if len(ov) < 4 or len(of) < 1 or not np.isfinite(ov).all():
            return Reconstruction("bad_input", "object mesh is empty or has NaN vertices", K=K)
        n_input = len(ov)
        try:
            ov, of, nearest = self._within_budget(ov, of)
        except ValueError as exc:  # MeshError: face indices out of range
            return Reconstruction("bad_input", str(exc), K=K)
        if _inward_wound_cached(ov, of):  # a closed mesh listed clockwise: its normals (grip poses' z, the fit's
            of = np.ascontiguousarray(of[:, ::-1])  # visibility and contact normals) would point into the object
            self._fallback("object mesh faces are wound inwards (negative volume); flipped to outward normals")
        mesh_transform = np.eye(4)  # the fitted mesh's frame ← the input mesh's coordinates (Reconstruction)
        if object_size is not None:  # centred on its vertex mean, longest side object_size (objects.normalize_mesh's)
            from interactvlm_ros import objects

            try:
                centre, ext = objects.normalization(ov)
            except ValueError as exc:  # MeshError: all vertices coincide
                return Reconstruction("bad_input", str(exc), K=K)
            mesh_transform = objects.similarity(float(object_size) / ext, centre)
            ov = (ov - centre) * (float(object_size) / ext)
        if given_transform is not None:  # a pipeline mesh is normalised: the file's own coordinates are one step back
            mesh_transform = mesh_transform @ np.asarray(given_transform, np.float64)
        oc = None
        if object_contact is not None:
            oc = np.asarray(object_contact, np.float64).reshape(-1)
            if len(oc) != n_input:
                return Reconstruction("bad_input", f"object_contact has {len(oc)} entries, the object mesh {n_input} "
                                      "vertices", K=K)
            if not np.isfinite(oc).all():  # as human_contact: a NaN read as no contact put free points on the grip
                return Reconstruction("bad_input", "object_contact contains NaN/inf", K=K)
            if nearest is not None:  # the decimated mesh's vertices take the contact of the nearest input vertex
                oc = oc[nearest]
        if isinstance(init, Reconstruction):
            init = ReconInit.from_reconstruction(init)

        # ---- body
        t = time.perf_counter()
        person_mask = getattr(observation, "mask", None)
        if person_mask is not None:
            person_mask = np.asarray(person_mask, bool)
            if person_mask.shape != (H, W):
                person_mask = None
        kp3d = getattr(observation, "keypoints_3d", None)
        hands = getattr(observation, "hands_2d", None)
        body = self.body_fitter.fit(kp2d, K, kp3d=None if kp3d is None else np.asarray(kp3d, np.float64),
                                    hands2d=hands, depth=depth, person_mask=person_mask,
                                    init=None if init is None else init.body)
        timings["body"] = 1e3 * (time.perf_counter() - t)
        metrics = {f"body_{k}": v for k, v in body.metrics.items()}
        hv = body.vertices
        if body.metrics.get("diverged") or not np.isfinite(hv).all() or body.metrics["reproj_rel"] > self.max_reproj_rel:
            return Reconstruction("diverged", f"body fit diverged (2-D error {body.metrics.get('reproj_rel', float('nan')):.3f} "
                                  f"of the person's size > {self.max_reproj_rel})", K=K, metrics=metrics, timings=timings)

        # ---- the object's region: the given mask (a silhouette), a detector's box, or estimated near the contact
        mask_for_fit = object_mask
        if box_px is not None:  # a box is not a silhouette: the box term instead (ObjectFitter, box=)
            mask_for_fit = box_mask(box_px, H, W)
            if person_mask is not None and (mask_for_fit & ~person_mask).sum() >= 10:
                mask_for_fit &= ~person_mask
            metrics["object_mask"] = f"box {list(box_px)} (box term, depth points)"
        elif object_mask is None:  # a guessed region only selects depth points (ObjectFitter, guessed=True)
            mask_for_fit = self._estimate_object_mask(hv, hc, ov, K, H, W, person_mask)
            if mask_for_fit is None:
                return Reconstruction("object_not_visible", "the contact region projects outside the image",
                                      K=K, metrics=metrics, timings=timings)
            metrics["object_mask"] = "estimated (disk around the contact minus the person; its depth points near the contact)"
        else:
            metrics["object_mask"] = "given"
        warm = None
        if init is not None and init.object_pose is not None:
            warm = [np.asarray(init.object_pose, np.float64)]
            if init.human_vertices is not None and np.shape(init.human_vertices) == hv.shape:
                # candidates: carried along with the body (a held object follows the moving hand), and as it was
                # (a chair the person gets up from stays); the object fit refines the one of lower loss
                warm.insert(0, carry_with_body(init.object_pose, init.human_vertices, hv, hc))
        t = time.perf_counter()
        obj = self.object_fitter.fit(ov, of, oc, hv, body.faces, hc, K, (H, W), mask_for_fit, person_mask, depth,
                                     init_pose=warm, box=box_px, guessed=object_mask is None and box_px is None)
        timings["object"] = 1e3 * (time.perf_counter() - t)
        metrics.update({f"object_{k}": v for k, v in obj.metrics.items()})
        if warm is not None and len(warm) == 2:
            metrics["object_warm_start"] = ("carried with the body",
                                            "previous pose")[obj.metrics.get("warm_start_index", 0)]
        why = "object fit produced a non-finite pose" if obj.metrics.get("diverged") else None
        if why is None:
            centre_z = float(np.mean(np.asarray(obj.vertices, np.float64)[:, 2]))
            if not centre_z > 0:  # e.g. a mesh far too large for its place (not in metres): never an ok pose
                why = (f"object fit put the object's centre behind the camera (z = {centre_z:.2f} m); check the object "
                       "mesh's units or pass object_size")
        if why is not None:
            return Reconstruction("diverged", why, K=K, human_vertices_cam=hv, human_faces=body.faces, human_contact=hc,
                                  body_state=body.state, metrics=metrics, timings=timings)
        # ---- outputs
        t = time.perf_counter()
        from interactvlm_ros.recon.metrics import contact_distance, penetration_depth
        from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses

        metrics["penetration_m"] = penetration_depth(obj.vertices, of, hv, body.faces)
        metrics["contact_distance_m"] = contact_distance(ov, of, hv, hc, object_pose=obj.pose, max_points=32)
        oc32 = None if oc is None else oc.astype(np.float32)
        if metrics["penetration_m"] > self.max_penetration:  # no pose, grips or free points; the meshes show where
            timings["outputs"] = 1e3 * (time.perf_counter() - t)
            timings["total"] = 1e3 * (time.perf_counter() - t0)
            return Reconstruction("diverged", f"object penetrates the body by {100 * metrics['penetration_m']:.1f} cm "
                                  f"(> {100 * self.max_penetration:.0f} cm)", hv, body.faces, hc.astype(np.float32),
                                  obj.vertices, of, oc32, K=K, body_state=body.state, metrics=metrics, timings=timings,
                                  object_mesh_transform=mesh_transform)
        frame = (ov, obj.pose)  # patches / normals from the per-object cache (rigid motion keeps them)
        grips = grip_poses(obj.vertices, of, oc, hv, hc, object_frame=frame)
        free_p, free_n = free_grasp_points(obj.vertices, of, hv, hc, object_frame=frame, obj_contact=oc)
        # why a planner gets nothing (an empty list alone does not say): metrics, result.json, the node's /diagnostics
        if not grips:
            metrics["grip_poses_none"] = ("no contact patch of >= 3 object vertices (contact > 0.3, or within 2 cm of "
                                          "the person's contact), or its normals cancel (contact all round the object, "
                                          "or on both faces of a thin part)")
        if free_p is None or not len(free_p):
            metrics["free_grasp_none"] = "every object vertex is in contact or within 3 cm of the person's contact"
        timings["outputs"] = 1e3 * (time.perf_counter() - t)
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        return Reconstruction("ok", "", hv, body.faces, hc.astype(np.float32), obj.vertices, of, oc32, obj.pose, grips,
                              free_p, free_n, K, body.state, metrics, timings, object_mesh_transform=mesh_transform)

    def _within_budget(self, ov: np.ndarray, of: np.ndarray):
        """(vertices, faces, nearest): the mesh as it is (nearest None) when it has at most
        ``objects.PIPELINE_MAX_FACES`` faces, else decimated to that (a named fallback) — the fit's and the outputs'
        cost grows with the mesh (a 1.3 M-face scan: minutes and GB) — with nearest [M] the input vertex nearest each
        kept vertex (for a per-vertex object_contact given on the input mesh). Decimated once per mesh (compared by
        value): a tracked object is fitted every frame."""
        from interactvlm_ros import objects

        budget = objects.PIPELINE_MAX_FACES
        if len(of) <= budget:
            return ov, of, None
        key = (_array_digest(ov, of), budget)
        done = self._decimated  # one read: a background cold fit may replace the slot meanwhile
        if done is None or done[0] != key:
            from scipy.spatial import cKDTree

            m = objects.validate_mesh(ov, of, "object mesh", max_faces=budget)  # quadric; size and origin kept
            dv = np.asarray(m.vertices, np.float64)
            done = self._decimated = (key, dv, m.faces, cKDTree(ov).query(dv)[1])
        _, dv, df, nearest = done
        self._fallback(f"object mesh of {len(of)} faces decimated to {len(df)} (quadric decimation; "
                       f"objects.PIPELINE_MAX_FACES = {budget}): the fitted object mesh, its contact and the grip and "
                       "free points are of the decimated mesh", label=True)
        return dv, df, nearest

    @staticmethod
    def _estimate_object_mask(hv, hc, ov, K, H, W, person_mask) -> np.ndarray | None:
        """Heuristic object region: a disk around the projected human-contact centroid, radius = the
        object's projected bounding radius, minus the person mask. None when it falls outside the image."""
        import cv2

        sel = hc > 0.5
        if sel.sum() < 3:
            sel = np.argsort(-hc)[:20]
        c = np.asarray(hv)[sel].mean(0)
        if c[2] <= 0.05:
            return None
        r = float(np.linalg.norm(ov - ov.mean(0), axis=1).max())
        u, v = K[0, 0] * c[0] / c[2] + K[0, 2], K[1, 1] * c[1] / c[2] + K[1, 2]
        rp = max(3, int(round(1.2 * r * K[0, 0] / c[2])))
        m = np.zeros((H, W), np.uint8)
        cv2.circle(m, (int(round(u)), int(round(v))), rp, 1, -1)
        m = m.astype(bool)
        if person_mask is not None:
            m &= ~person_mask
        return m if m.sum() >= 10 else None


def box_pixels(box, H: int, W: int) -> tuple[int, int, int, int] | None:
    """A box (x0, y0, x1, y1) in pixels (x1, y1 exclusive, as a detector's corners) → its whole-pixel corners clipped
    to the image, or None when it covers fewer than 10 image pixels. ValueError naming the problem for a box that is
    not four finite numbers with x0 < x1, y0 < y1."""
    try:
        b = np.asarray(box, np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"object_box {box!r} is not numeric ({exc}); give x0,y0,x1,y1 in pixels") from None
    if b.size != 4 or not np.isfinite(b).all():
        raise ValueError(f"object_box must be four finite numbers x0,y0,x1,y1 (pixels), got {box!r}")
    x0, y0, x1, y1 = b
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"object_box {b.tolist()} has x1 <= x0 or y1 <= y0; give the corners x0,y0,x1,y1")
    c0, r0 = int(np.clip(np.floor(x0), 0, W)), int(np.clip(np.floor(y0), 0, H))
    c1, r1 = int(np.clip(np.ceil(x1), 0, W)), int(np.clip(np.ceil(y1), 0, H))
    return (c0, r0, c1, r1) if (c1 - c0) * (r1 - r0) >= 10 else None


def box_mask(box_px: tuple[int, int, int, int], H: int, W: int) -> np.ndarray:
    """bool [H,W], True inside the whole-pixel box ``box_pixels`` gave."""
    c0, r0, c1, r1 = box_px
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def _array_digest(*arrays) -> str:
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _track_key(image, human_contact, kw: dict) -> tuple:
    """What a warm start needs unchanged: the image size, the intrinsics, the object mesh (by value: a path, or a
    digest of its arrays), its size and label. ``Tracker.update`` starts a new track when it changes."""
    mesh, size, label = kw.get("object_mesh"), kw.get("object_size"), kw.get("object_label")
    if mesh is None and human_contact is not None and getattr(human_contact, "object_vertices", None) is not None:
        mesh = (human_contact.object_vertices, human_contact.object_faces)
        label = label or getattr(human_contact, "object_label", None)
    if isinstance(mesh, (str, Path)):
        mesh_id = ("path", str(mesh))
    elif isinstance(mesh, tuple) and len(mesh) == 2:
        mesh_id = ("arrays", _array_digest(mesh[0], mesh[1]))
    elif mesh is not None and hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        mesh_id = ("arrays", _array_digest(mesh.vertices, mesh.faces))
    else:
        mesh_id = None
    K = kw.get("K")
    try:
        k_id = None if K is None else tuple(np.round(np.asarray(K, np.float64).ravel(), 6).tolist())
    except (TypeError, ValueError):
        k_id = ("unreadable", repr(K))
    return (tuple(np.shape(image)[:2]), k_id, mesh_id, size, label)


#: principal point further than this fraction of the image size from its centre: a named fallback (K for another
#: resolution?). Real cameras are within a few %; a 2x-resolution K puts it at the image's edge or corner.
OFF_CENTRE = 0.3


class Tracker:
    """Per-frame reconstruction with warm start from the previous solution and a reset (cold fit) when
    the warm fit degrades (status not ok, body 2-D error above ``reset_reproj_rel``, or penetration).

    ``update(...)`` takes the same arguments as ``Reconstructor.fit`` (minus ``init``). ``metrics["warm_start"]``: an
    ok result of a warm fit (never a failed frame nor a cold fit), in both modes.

    ``background=True`` (a camera stream): a cold fit (first frame, after a lost track or a degraded warm fit;
    seconds on a CPU) runs in a thread of the tracker's own on the frame that needed it, and ``update`` returns at
    once with status ``cold_start_pending`` (no poses) until it has finished; the next frame then warm-starts from it,
    and ``take_completed()`` hands over the finished cold fit once, with the ``tag`` its frame was given (the node
    publishes its poses with that frame's header) — also one that raised, as status ``failed`` (logged with its
    traceback; the next frame starts another cold fit). A warm fit that is ``ok`` but above ``reset_reproj_rel`` is
    returned as it is, marked ``tracker_reset`` and ``cold_start_running``, while its frame's cold re-fit runs: that
    re-fit only restarts the track (its frame has its pose already; not handed over). The caller's other work (the
    node's contact estimation) goes on meanwhile. Warm fits run in the caller's thread as before.

    ``reset()`` forgets the track: a cold fit still running is cancelled, a finished one not yet taken is dropped.
    ``request_cancel()`` (from any thread, e.g. without the lock a caller holds around ``update``) stops the fit
    running now — background, or inline in ``update``, whose frame then reports ``cancelled`` — at its next
    iteration; the ``reset(cancelled=True)`` that follows it clears the request. ``close()`` stops the thread
    (shutdown)."""

    def __init__(self, reconstructor: Reconstructor | None = None, reset_reproj_rel: float = 0.05,
                 background: bool = False):
        self.reconstructor = reconstructor or Reconstructor()
        self.reset_reproj_rel = float(reset_reproj_rel)
        self.background = bool(background)
        self.last: Reconstruction | None = None
        self.resets = 0
        self.frames = 0
        self.cold_fits = 0  # background cold fits started
        self._cv = threading.Condition()
        self._job = None  # the background cold fit being run: (args, kw, generation, tag, answered); None when idle
        self._job_started = 0.0
        self._completed = None  # (tag, Reconstruction) of the last finished background cold fit, until taken
        self._generation = 0  # bumped by reset(): a cold fit started before it is discarded
        self._thread: threading.Thread | None = None
        self._closed = False
        self._key = None  # (image size, K, object mesh, size, label) of the track: a change resets it

    def reset(self, cancelled: bool = False) -> None:
        """Forget the track. ``cancelled``: the reset answering a ``request_cancel()``, whose request it clears (a
        background cold fit still running clears it when it has stopped), so that the next fit runs."""
        with self._cv:
            self.last = None
            self._completed = None  # a finished cold fit of the old track is not handed over either
            self._generation += 1
            if self._job is not None:  # its frame's object/camera no longer apply: stop it
                self.reconstructor.cancel.set()
            elif cancelled and not self._closed:
                self.reconstructor.cancel.clear()

    def request_cancel(self) -> None:
        """Stop the fit running now (a background cold fit, or an inline one in ``update`` in another thread) at its
        next iteration; a fit starting before ``reset(cancelled=True)`` stops at once. Follow it with that reset."""
        self.reconstructor.cancel.set()

    @property
    def cold_running(self) -> bool:
        with self._cv:
            return self._job is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no background cold fit is running (tests); True when none is."""
        with self._cv:
            return self._cv.wait_for(lambda: self._job is None, timeout)

    def take_completed(self):
        """The background cold fit finished since the last call, once: (tag, Reconstruction), else None."""
        with self._cv:
            done, self._completed = self._completed, None
            return done

    def close(self, timeout: float = 5.0) -> None:
        """Shutdown: any running fit (background, or inline in another thread) is cancelled at its next iteration
        (ms) and the background thread ends; later fits of this tracker report ``cancelled``."""
        with self._cv:
            self._closed = True
            self.reconstructor.cancel.set()
            self._cv.notify_all()
            th = self._thread
        if th is not None:
            th.join(timeout)

    def update(self, image, observation, human_contact=None, tag=None, track_key=None, **kw) -> Reconstruction:
        """One frame. The track restarts (cold fit) when the object mesh, its size or label, K or the image size
        change: ``track_key`` names them when the caller already has a cheap key (the pipeline: its object cache key,
        image size, K); otherwise they are compared here (the mesh by a digest of its arrays, every frame)."""
        self.frames += 1
        key = _track_key(image, human_contact, kw) if track_key is None else ("caller", track_key)
        if key != self._key:  # another object mesh (or size) or camera: the previous poses are in other frames
            if self._key is not None:
                log.info("tracker: the object mesh, its size, the intrinsics or the image size changed; new track")
                self.reset()
            self._key = key
        if self.background:
            return self._update_background(image, observation, human_contact, tag, **kw)
        init = ReconInit.from_reconstruction(self.last)
        try:
            rec = self.reconstructor.fit(image, observation, human_contact, init=init, **kw)
            if init is not None and self._degraded(rec) and rec.status in ("ok", "diverged"):
                self.resets += 1  # degraded warm fit → cold fit
                rec = self.reconstructor.fit(image, observation, human_contact, init=None, **kw)
                rec.metrics["tracker_reset"] = True
        except FitCancelled as exc:
            self.last = None
            return self._cancelled(exc)
        rec.metrics["warm_start"] = rec.ok and init is not None and not rec.metrics.get("tracker_reset", False)
        self.last = rec if rec.ok else None
        return rec

    def _degraded(self, rec: Reconstruction) -> bool:
        return not rec.ok or rec.metrics.get("body_reproj_rel", 1.0) > self.reset_reproj_rel

    def _pending(self, message: str, **metrics) -> Reconstruction:
        return Reconstruction("cold_start_pending", message,
                              metrics={"warm_start": False, "cold_start_running": True, **metrics})

    @staticmethod
    def _cancelled(exc: FitCancelled) -> Reconstruction:
        return Reconstruction("cancelled", f"{exc}: the track was reset (or the tracker closed) while it ran",
                              metrics={"warm_start": False})

    def _update_background(self, image, observation, human_contact, tag, **kw) -> Reconstruction:
        with self._cv:
            if self._closed:
                return Reconstruction("bad_input", "the tracker was closed")
            if self._job is not None:
                return self._pending(f"a cold fit has been running in the background for "
                                     f"{time.monotonic() - self._job_started:.1f} s")
            init = ReconInit.from_reconstruction(self.last)
            generation = self._generation
        rec = None
        if init is not None:
            try:
                rec = self.reconstructor.fit(image, observation, human_contact, init=init, **kw)
            except FitCancelled as exc:
                with self._cv:
                    self.last = None
                return self._cancelled(exc)
            if not self._degraded(rec) or rec.status not in ("ok", "diverged"):
                # tracked; or a frame a cold fit could not fix either (no person, bad depth ...): reported as it is
                rec.metrics["warm_start"] = rec.ok
                with self._cv:
                    if self._generation == generation:
                        self.last = rec if rec.ok else None
                return rec
            self.resets += 1  # degraded warm fit → a cold fit of this frame, in the background
        answered = rec is not None and rec.ok  # ok, but above reset_reproj_rel: the frame keeps its warm result
        if not answered:  # a frame a fit refuses at once (bad depth/K, no person): said now, not one frame late, and no
            failed = self.reconstructor.unfittable(image, observation, K=kw.get("K"), depth=kw.get("depth"))
            if failed is not None:  # thread started per such frame
                failed.metrics["warm_start"] = False
                return failed
        with self._cv:
            self.last = None
            self.cold_fits += 1
            self._job = ((image, observation, human_contact), kw, generation, tag, answered)
            self._job_started = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_cold, name="interactvlm_cold_fit", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        if answered:
            rec.metrics.update(warm_start=True, tracker_reset=True, cold_start_running=True)
            return rec
        return self._pending("cold fit started in the background", tracker_reset=rec is not None)

    def _run_cold(self) -> None:
        """The background thread: one cold fit at a time (``_job``), until ``close()``."""
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    self._job = None
                    self._cv.notify_all()
                    return
                (image, observation, human_contact), kw, generation, tag, answered = self._job
            try:
                rec = self.reconstructor.fit(image, observation, human_contact, init=None, **kw)
                if not rec.ok:  # its frame was answered "cold_start_pending": say how it ended
                    log.info("background cold fit ended '%s': %s", rec.status, rec.message)
            except FitCancelled:
                rec = None
            except Exception as exc:  # a bug: its frame's result is 'failed' (as inline); the next frame starts another
                log.warning("background cold fit failed: %s: %s", type(exc).__name__, exc, exc_info=True)
                rec = Reconstruction("failed", f"reconstruction failed: {type(exc).__name__}: {exc}")
            if rec is not None:
                rec.metrics["warm_start"] = False
                rec.metrics["cold_start_background_s"] = time.monotonic() - self._job_started
            with self._cv:
                if self._generation == generation and rec is not None:  # not reset meanwhile
                    self.last = rec if rec.ok else None
                    if not answered:  # a re-fit of a frame answered ok (warm) only restarts the track
                        self._completed = (tag, rec)
                if not self._closed:
                    self.reconstructor.cancel.clear()
                self._job = None
                self._cv.notify_all()
