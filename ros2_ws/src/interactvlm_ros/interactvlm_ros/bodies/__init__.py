"""Body models: canonical "Vitruvian" template mesh, vertex part labels, posing.

``get_body_model(spec)`` with ``spec``:

* ``"anny"`` (default) — Anny (CC0, ships in its wheel). The canonical template, faces, part labels, bone
  labels, joints and a keypoint regressor ship precomputed in ``bodies/data/anny_vitruvian.npz`` (made by
  ``python -m interactvlm_ros.bodies.make_anny_template``), so loading takes milliseconds; the posable model
  (``pose()``) is built lazily (~4 s with a warm cache, ~55 s and ~800 MB the first time, cache pinned in
  ``paths.cache_dir("anny")``).
* ``"smplh:PATH"`` / ``"smplx:PATH"`` — SMPL-H / SMPL-X through the ``smplx`` package from the user's model
  files (``PATH`` = the ``.pkl``/``.npz`` file or a folder holding ``SMPLH_NEUTRAL.pkl`` /
  ``SMPLX_NEUTRAL.npz`` directly or in a ``smplh``/``smplx`` sub-folder). Template = the official Vitruvian
  pose (spec 3.5): betas 0, all body joints identity except left hip +30° about z and right hip −30° about z.
  ``smplh`` (6890 vertices) is the body the official human assets were made with.

``BodyModel`` (INTERFACES.md): ``name``, ``template_vertices`` float32 [N,3] (y up, facing +z, metres, pelvis
near (0, −0.22, 0) so the official human views frame it), ``faces`` int64 [F,3], ``part_labels`` int16 [N]
(index into ``part_names``), ``part_names``, ``num_vertices``, ``pose(...)``, ``keypoints(vertices)``,
``keypoint_names``, ``bone_labels``.
"""
from __future__ import annotations

import functools
import json
import logging
import threading
from pathlib import Path

import numpy as np

from .. import paths

log = logging.getLogger(__name__)

TEMPLATE_PATH = paths.package_data("bodies", "data", "anny_vitruvian.npz")
from .parts import PART_NAMES  # noqa: E402  (the shared part vocabulary)


class BodyError(ValueError):
    """A body model cannot be built (bad spec, missing model file); the message says what to fix."""


class BodyModel:
    """Common interface. Subclasses fill the template arrays and implement ``pose``."""

    name: str
    template_vertices: np.ndarray
    faces: np.ndarray
    part_labels: np.ndarray
    part_names: list[str]
    keypoint_names: list[str] = []
    bone_labels: list[str] = []

    @property
    def num_vertices(self) -> int:
        return int(self.template_vertices.shape[0])

    def part_vertex_ids(self, part: str) -> np.ndarray:
        """Vertex ids [k] of a part name (``part_names``)."""
        if part not in self.part_names:
            raise KeyError(f"{self.name}: no part {part!r}; parts: {', '.join(self.part_names)}")
        return np.nonzero(self.part_labels == self.part_names.index(part))[0]

    def pose(self, *args, **kwargs) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def keypoints(self, vertices: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vertices={self.num_vertices}, faces={len(self.faces)})"


# ------------------------------------------------------------------------------------------- Anny
class AnnyBody(BodyModel):
    """Anny in the canonical Vitruvian pose (template from the shipped npz; posing builds Anny lazily).

    Extra attributes: ``bone_labels`` list[str] (104 Anny bones), ``bone_parents`` int16 [J],
    ``template_joints`` float32 [J,3] (bone heads in the template pose), ``dominant_bone`` int16 [N],
    ``vitruvian_rotvecs`` float32 [J,3] (body-frame local rotation vectors of the template pose),
    ``keypoint_names`` (bone names of ``keypoints``), ``meta`` (how the template was made)."""

    def __init__(self, template_path: Path | str = TEMPLATE_PATH):
        path = Path(template_path)
        if not path.is_file():
            raise BodyError(f"Anny template {path} is missing; regenerate it with "
                            "'python -m interactvlm_ros.bodies.make_anny_template' (needs the anny package)")
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        self.name = "anny"
        self.template_vertices = d["vertices"].astype(np.float32)
        self.faces = d["faces"].astype(np.int64)
        self.part_labels = d["part_labels"].astype(np.int16)
        self.part_names = [str(s) for s in d["part_names"]]
        self.bone_labels = [str(s) for s in d["bone_labels"]]
        self.bone_parents = d["bone_parents"].astype(np.int16)
        self.template_joints = d["joints"].astype(np.float32)
        self.dominant_bone = d["dominant_bone"].astype(np.int16)
        self.vitruvian_rotvecs = d["vitruvian_local_rotvecs"].astype(np.float32)
        self.keypoint_names = [str(s) for s in d["keypoint_bones"]]
        self._reg = (d["regressor_rows"], d["regressor_cols"], d["regressor_vals"])
        self.meta = json.loads(str(d["meta"]))
        self._reg_dense = None
        self._poser = None
        self._lock = threading.Lock()

    @property
    def poser(self):
        """The posable model (``anny_model.AnnyPoser``), built on first use."""
        with self._lock:
            if self._poser is None:
                from .anny_model import AnnyPoser

                self._poser = AnnyPoser()
                if self._poser.num_vertices != self.num_vertices or not np.array_equal(self._poser.faces, self.faces):
                    raise BodyError(f"the installed anny package's topology ({self._poser.num_vertices} vertices) differs "
                                    f"from the shipped template ({self.num_vertices}); regenerate it with "
                                    "'python -m interactvlm_ros.bodies.make_anny_template'")
        return self._poser

    def pose(self, rotations=None, phenotype: dict | None = None, world: bool = False, transl=None,
             from_vitruvian: bool = False, return_joints: bool = False):
        """Posed vertices float32 [N,3] (or [B,N,3] for batched rotations) in the template's frame/placement.

        rotations: dict bone name → rotation vector [3], or array [J,3] / [B,J,3] (body frame, radians);
            local (relative to the parent bone, Anny "local-ref") unless ``world=True`` (absolute rotation of
            each bone relative to rest; unspecified bones follow their parent).
        phenotype: dict over gender, age, muscle, weight, height, proportions (0..1; default 0.5).
        transl: [3] or [B,3] added to the placement (metres).
        from_vitruvian: start from the template pose (local rotations are composed onto it) instead of rest.
        return_joints: also return bone heads float32 [(B,)J,3] (and bone transforms via ``poser`` directly).
        """
        poser = self.poser
        rv = poser._as_array(rotations)
        if from_vitruvian:
            if world:
                raise ValueError("from_vitruvian=True takes local rotations; use world=False")
            from scipy.spatial.transform import Rotation

            base = Rotation.from_rotvec(np.broadcast_to(self.vitruvian_rotvecs, rv.shape).reshape(-1, 3))
            rv = (base * Rotation.from_rotvec(rv.reshape(-1, 3))).as_rotvec().reshape(rv.shape)
        out = poser(rv, phenotype=phenotype, world=world, transl=transl)
        squeeze = not (rotations is not None and not isinstance(rotations, dict) and np.ndim(rotations) == 3)
        v = out.vertices[0] if squeeze else out.vertices
        if return_joints:
            return v, (out.joints[0] if squeeze else out.joints)
        return v

    def keypoints(self, vertices: np.ndarray) -> np.ndarray:
        """Joint positions float32 [(B,)K,3] of ``keypoint_names`` regressed from (posed) vertices [(B,)N,3]
        (convex vertex weights around each joint fitted on the template; error on posed meshes in docs)."""
        r, c, w = self._reg
        if self._reg_dense is None:
            R = np.zeros((len(self.keypoint_names), self.num_vertices), np.float32)
            np.add.at(R, (r, c), w)
            self._reg_dense = R
        v = np.asarray(vertices, np.float32)
        if v.shape[-2:] != (self.num_vertices, 3):
            raise ValueError(f"anny keypoints: vertices must be [(B,){self.num_vertices},3], got {v.shape}")
        return np.einsum("kn,...nc->...kc", self._reg_dense, v).astype(np.float32)


# ---------------------------------------------------------------------------------- SMPL-H / SMPL-X
SMPL_FILES = {"smplh": ("SMPLH_NEUTRAL.pkl", "SMPLH_NEUTRAL.npz"), "smplx": ("SMPLX_NEUTRAL.npz", "SMPLX_NEUTRAL.pkl")}
# SMPL joint index → part (22 body joints shared by SMPL-H/SMPL-X; hand/face joints are mapped by name below)
SMPL_JOINT_PARTS = {
    0: "pelvis", 1: "left_thigh", 2: "right_thigh", 3: "trunk", 4: "left_shin", 5: "right_shin", 6: "trunk",
    7: "left_foot", 8: "right_foot", 9: "trunk", 10: "left_foot", 11: "right_foot", 12: "neck", 13: "trunk",
    14: "trunk", 15: "head", 16: "left_upper_arm", 17: "right_upper_arm", 18: "left_forearm", 19: "right_forearm",
    20: "left_hand", 21: "right_hand",
}
SMPL_KEYPOINTS = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                  "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                  "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"]


def _resolve_smpl_file(kind: str, path: str) -> Path:
    names = SMPL_FILES[kind]
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for folder in (p, p / kind, p / kind.upper()):
            for n in names:
                if (folder / n).is_file():
                    return folder / n
    raise BodyError(f"{kind}: no model file at '{path}'. Expected the file itself or a folder containing "
                    f"{names[0]} (or {names[1]}), directly or in '{kind}/' (e.g. {Path(path) / kind / names[0]}). "
                    f"Download it from the official {kind.upper()} website after registering.")


class SmplBody(BodyModel):
    """SMPL-H / SMPL-X (neutral, betas 0) through ``smplx``; template = official Vitruvian pose (spec 3.5).

    Part labels from the dominant linear-blend-skinning joint (``SMPL_JOINT_PARTS``; trunk/pelvis split
    front/back by the vertex normal). ``pose(body_pose=[21,3] axis-angle, global_orient=[3], betas=[10],
    transl=[3], ...)`` forwards to the smplx model (other smplx keyword arguments pass through)."""

    def __init__(self, kind: str, path: str):
        try:
            import smplx
            import torch
        except ImportError as exc:  # pragma: no cover - install-dependent
            raise BodyError(f"{kind} needs the 'smplx' package: pip install smplx") from exc
        self.name = kind
        self.model_file = _resolve_smpl_file(kind, path)
        ext = self.model_file.suffix.lstrip(".")
        kw = dict(gender="neutral", use_pca=False, flat_hand_mean=True, ext=ext, num_betas=10)
        try:  # the class of `kind`: smplx.create takes the type from a file's name ('model.npz' → unknown type,
            # SMPLH_NEUTRAL.pkl given as smplx: → a SMPL-H model)
            self.model = (smplx.SMPLH if kind == "smplh" else smplx.SMPLX)(str(self.model_file), **kw)
        except Exception as exc:  # noqa: BLE001 - smplx raises many kinds; name the file
            raise BodyError(f"{kind}: cannot load '{self.model_file}' with smplx ({type(exc).__name__}: {exc}); "
                            f"is it the {SMPL_FILES[kind][0]} model file?") from exc
        self._torch = torch
        self.faces = np.asarray(self.model.faces, np.int64)
        body_pose = np.zeros((21, 3), np.float32)
        body_pose[0, 2] = np.radians(30.0)  # left hip +30° about z
        body_pose[1, 2] = -np.radians(30.0)  # right hip −30° about z
        self.vitruvian_body_pose = body_pose
        v, j = self._forward(body_pose=body_pose)
        self.template_vertices = v
        self.template_joints = j[:22]
        self.keypoint_names = list(SMPL_KEYPOINTS)
        self.bone_labels = list(SMPL_KEYPOINTS)
        self.part_names = list(PART_NAMES)
        self.part_labels = self._parts()

    def _forward(self, **kw):
        torch = self._torch
        t = {k: torch.as_tensor(np.asarray(v, np.float32)).reshape(1, -1) for k, v in kw.items() if v is not None}
        with torch.no_grad():
            out = self.model(return_verts=True, **t)
        return out.vertices[0].cpu().numpy().astype(np.float32), out.joints[0].cpu().numpy().astype(np.float32)

    def _parts(self) -> np.ndarray:
        import trimesh

        w = self.model.lbs_weights.cpu().numpy()
        dom = np.argmax(w, axis=1)
        parents = self.model.parents.cpu().numpy()
        root = dom.copy()  # hand/face joints (≥22) → their body ancestor
        for i in range(len(root)):
            j = int(root[i])
            while j >= 22:
                j = int(parents[j])
            root[i] = j
        front = trimesh.Trimesh(self.template_vertices, self.faces, process=False).vertex_normals[:, 2] >= 0
        labels = np.zeros(len(root), np.int16)
        for j, part in SMPL_JOINT_PARTS.items():
            sel = root == j
            if part == "trunk":
                labels[sel & front], labels[sel & ~front] = PART_NAMES.index("torso"), PART_NAMES.index("back")
            elif part == "pelvis":
                labels[sel & front], labels[sel & ~front] = PART_NAMES.index("hips"), PART_NAMES.index("buttocks")
            else:
                labels[sel] = PART_NAMES.index(part)
        return labels

    def pose(self, body_pose=None, global_orient=None, betas=None, transl=None, return_joints: bool = False, **kw):
        """Vertices float32 [N,3] for axis-angle ``body_pose`` [21,3] (default: the Vitruvian pose)."""
        bp = self.vitruvian_body_pose if body_pose is None else np.asarray(body_pose, np.float32).reshape(21, 3)
        v, j = self._forward(body_pose=bp, global_orient=global_orient, betas=betas, transl=transl, **kw)
        return (v, j[:22]) if return_joints else v

    def keypoints(self, vertices: np.ndarray) -> np.ndarray:
        """The 22 SMPL body joints [K,3] regressed from vertices with the model's ``J_regressor``."""
        Jr = self.model.J_regressor.cpu().numpy()
        return np.einsum("kn,...nc->...kc", Jr[:22], np.asarray(vertices, np.float32)).astype(np.float32)


# ------------------------------------------------------------------------------------------ factory
@functools.lru_cache(maxsize=8)
def _cached(spec: str) -> BodyModel:
    if spec == "anny":
        return AnnyBody()
    kind, sep, path = spec.partition(":")
    if kind in ("smplh", "smplx") and sep and path:
        return SmplBody(kind, path)
    raise BodyError(f"unknown body model '{spec}': use 'anny', 'smplh:/path/to/SMPLH_NEUTRAL.pkl' or "
                    "'smplx:/path/to/models'")


def get_body_model(spec: str = "anny") -> BodyModel:
    """The body model for ``spec`` (``"anny"``, ``"smplh:PATH"``, ``"smplx:PATH"``), cached per spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise BodyError(f"body model spec must be a non-empty string, got {spec!r}")
    return _cached(spec.strip())


__all__ = ["AnnyBody", "BodyError", "BodyModel", "PART_NAMES", "SmplBody", "TEMPLATE_PATH", "get_body_model"]
