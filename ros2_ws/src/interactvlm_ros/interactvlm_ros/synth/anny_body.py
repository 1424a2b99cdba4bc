"""Posable Anny body for the synthetic generator (thin layer over ``anny.Anny``).

Coordinates. Anny's native frame is z up, the body facing −y, the person's left at +x (Blender).
Everything this module returns is in the project's body frame: **y up, facing +z, left at +x**
(``to_body_frame``: x' = x, y' = z, z' = −y, a +90° rotation about x), the frame of the canonical
"Vitruvian" template (``bodies``, INTERFACES.md).

Posing. Anny's default pose parameterisation ("local-ref") takes, per bone, a 4×4 delta in the bone's
reference orientation, which at rest is aligned with the world axes; a child's delta is applied in its
parent's posed frame. ``PoseBuilder`` lets a pose be written as *world-frame* rotation vectors per bone
(axis-angle, Anny frame: x = person's left, y = backwards, z = up) and converts them to the local
deltas: ``local_i = W_parent(i)ᵀ · W_i`` (bones without an entry follow their parent rigidly).
Sign cheat-sheet (measured on the model, Anny frame): shoulder/hip flexion (limb forward) = −x,
elbow flexion = −x, knee flexion = +x, left-arm/left-leg abduction = −y (right: +y).

Building the model the first time takes ~55 s and writes ~800 MB under ``paths.cache_dir("anny")``;
later loads take ~4 s. One forward (13718 vertices) takes ~15 ms on a CPU core.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from interactvlm_ros import paths

log = logging.getLogger(__name__)

ANNY_TO_BODY = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)  # x'=x, y'=z, z'=-y
PHENOTYPE_LABELS = ("gender", "age", "muscle", "weight", "height", "proportions")

_MODEL = None
_MODEL_LOCK = threading.Lock()


def to_body_frame(x: np.ndarray) -> np.ndarray:
    """Anny frame (z up, facing −y) → body frame (y up, facing +z); x [...,3]."""
    return np.asarray(x) @ ANNY_TO_BODY.T


def load_anny():
    """The Anny model (default rig/topology, 13718 vertices), built once per process, cache pinned
    under ``paths.cache_dir("anny")``."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            try:
                import anny
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("the synthetic generator needs the Anny body model: pip install anny") from exc
            import torch

            torch.set_num_threads(1)
            anny.paths.set_anny_cache_path(paths.cache_dir("anny"))
            _MODEL = anny.Anny()
            _MODEL.eval()
        return _MODEL


def _rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(rv, np.float64)).as_matrix()


@dataclass
class PosedBody:
    """A posed body in the body frame (metres). vertices [N,3], faces [F,3], joints [J,3] (bone heads)."""

    vertices: np.ndarray
    faces: np.ndarray
    joints: np.ndarray
    pose_rotvecs: np.ndarray  # [J,3] world-frame axis-angle per bone (Anny frame), the generator's pose parameters
    phenotype: np.ndarray  # [6] in [0,1], PHENOTYPE_LABELS order


class PoseBuilder:
    """Turns world-frame per-bone rotations into Anny local deltas and runs the model."""

    def __init__(self):
        import torch

        self.model = load_anny()
        self.bone_labels = list(self.model.bone_labels)
        self.index = {n: i for i, n in enumerate(self.bone_labels)}
        parents = self.model.bone_parents
        self.parents = [int(p) for p in (parents.tolist() if hasattr(parents, "tolist") else parents)]
        for i, p in enumerate(self.parents):
            if p >= i and i != 0:
                raise RuntimeError("Anny bone order is not parent-first; PoseBuilder assumes it is")
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        self.num_vertices = int(self.model.template_vertices.shape[0])
        w = self.model.vertex_bone_weights.cpu().numpy()
        ids = self.model.vertex_bone_indices.cpu().numpy()
        self.dominant_bone = ids[np.arange(len(ids)), np.argmax(w, axis=1)].astype(np.int64)  # [N]
        self._torch = torch

    def bone(self, name: str) -> int:
        if name not in self.index:
            raise KeyError(f"Anny has no bone {name!r}")
        return self.index[name]

    def local_deltas(self, world_rotvecs: np.ndarray) -> np.ndarray:
        """[J,3] world-frame rotvecs (zeros = follow parent) → [J,4,4] local deltas."""
        J = len(self.bone_labels)
        Wm = np.zeros((J, 3, 3))
        out = np.tile(np.eye(4), (J, 1, 1))
        for i in range(J):
            p = self.parents[i]
            parent_W = Wm[p] if (i > 0 and p >= 0) else np.eye(3)
            rv = world_rotvecs[i]
            Wm[i] = _rotvec_to_matrix(rv) if np.any(rv != 0) else parent_W
            out[i, :3, :3] = parent_W.T @ Wm[i]
        return out

    def __call__(self, world_rotvecs: np.ndarray, phenotype: np.ndarray) -> PosedBody:
        torch = self._torch
        deltas = torch.as_tensor(self.local_deltas(world_rotvecs), dtype=torch.float32)[None]
        pheno = {k: torch.tensor([float(v)]) for k, v in zip(PHENOTYPE_LABELS, phenotype)}
        with torch.no_grad():
            out = self.model(pose_parameters=deltas, phenotype_kwargs=pheno)
        verts = to_body_frame(out["vertices"][0].cpu().numpy().astype(np.float64))
        joints = to_body_frame(out["bone_poses"][0, :, :3, 3].cpu().numpy().astype(np.float64))
        return PosedBody(verts.astype(np.float32), self.faces, joints.astype(np.float32),
                         np.asarray(world_rotvecs, np.float32), np.asarray(phenotype, np.float32))


# ---------------------------------------------------------------- coarse parts for clothing colours
PART_OF_BONE_PREFIX = (
    ("head", ("neck", "head", "eye")),
    ("hand", ("wrist", "finger", "metacarpal")),
    ("forearm", ("lowerarm",)),
    ("upper_arm", ("upperarm", "shoulder", "clavicle")),
    ("torso", ("spine", "root")),
    ("hips", ("pelvis",)),
    ("thigh", ("upperleg",)),
    ("shin", ("lowerleg",)),
    ("foot", ("foot", "toe")),
)
COARSE_PARTS = [p for p, _ in PART_OF_BONE_PREFIX]


def coarse_parts(builder: PoseBuilder) -> np.ndarray:
    """int [N] coarse part id (``COARSE_PARTS``) of each vertex from its dominant skinning bone."""
    ids = np.zeros(builder.num_vertices, np.int64)
    for b, name in enumerate(builder.bone_labels):
        for pid, (_, prefixes) in enumerate(PART_OF_BONE_PREFIX):
            if name.startswith(prefixes):
                ids[builder.dominant_bone == b] = pid
                break
    return ids
