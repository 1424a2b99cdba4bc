"""Posable Anny body (``anny`` wheel, CC0), built lazily; the frame conversion to the body frame.

Anny's frame: z up, facing −y, person's left at +x. Body frame (the package's canonical frame, same as the
synthetic generator's ``synth.anny_body``): y up, facing +z, left at +x — ``x' = x, y' = z, z' = −y``.
Pose parameters ("local-ref" parameterisation): one 4×4 delta per bone, expressed in the bone's rest
reference frame (aligned with Anny's world axes) and applied in the parent's posed frame, so a pose given
as world-frame rotations ``W_i`` (Anny frame) becomes ``local_i = W_parent(i)ᵀ·W_i``; bones without a world
rotation follow their parent rigidly.

Building the model the first time takes ~55 s and ~800 MB under ``paths.cache_dir("anny")``; later ~3-4 s.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from .. import paths

log = logging.getLogger(__name__)

ANNY_TO_BODY = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)  # x'=x, y'=z, z'=-y
CANONICAL_Y_OFFSET = -0.22  # body-frame shift of the canonical template (pelvis near the origin, like SMPL)
PHENOTYPE_LABELS = ("gender", "age", "muscle", "weight", "height", "proportions")

_MODEL = None
_LOCK = threading.Lock()


def _warp_cache_fallback() -> None:
    """Anny's skinning initialises NVIDIA Warp, which compiles its kernels into ``~/.cache/warp/<version>``: with a
    read-only or missing home that raised PermissionError out of ``anny.Anny()`` even with INTERACTVLM_CACHE_DIR set.
    When warp's own location cannot be created (and the user chose none: ``WARP_CACHE_PATH``,
    ``warp.config.kernel_cache_dir``), the kernels go to ``paths.cache_dir("warp")`` instead (logged)."""
    import os

    try:
        import warp.config
        from warp._src.thirdparty import appdirs
    except ImportError:  # no warp (anny then skins in torch) or another warp layout: warp decides
        return
    if warp.config.kernel_cache_dir is not None or "WARP_CACHE_PATH" in os.environ:
        return
    default = appdirs.user_cache_dir(appname="warp", appauthor="NVIDIA", version=warp.config.version)
    try:
        if not os.path.isabs(default):  # no home: "~/.cache/warp" would be made in the working directory
            raise OSError(f"no home directory ({default!r})")
        os.makedirs(default, exist_ok=True)  # what warp.init() does first
        return
    except OSError as exc:
        warp.config.kernel_cache_dir = str(paths.cache_dir("warp"))  # warp.init() adds the version folder
        log.warning("fallback: warp kernel cache %s unavailable (%s); compiling Anny's skinning kernels under %s",
                    default, exc, warp.config.kernel_cache_dir)


def load_anny():
    """The Anny model (default topology, 13718 vertices), once per process, cache pinned in ``paths.cache_dir("anny")``."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import anny
            except ImportError as exc:
                raise ImportError("posing the Anny body needs the anny package: pip install anny") from exc
            anny.paths.set_anny_cache_path(paths.cache_dir("anny"))
            _warp_cache_fallback()
            log.info("building the Anny model (first time ~55 s, cache in %s)", paths.cache_dir("anny"))
            _MODEL = anny.Anny()
            _MODEL.eval()
        return _MODEL


def same_quad_mesh(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two triangulations of one quad mesh differ at most in the diagonal chosen for some quads: the
    same number of faces, and every differing face pairs with a neighbouring differing face (the other half of
    its quad, as Anny emits them) covering the same 4 vertices in both."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    diff = np.nonzero((a != b).any(1))[0]
    todo = set(int(i) for i in diff)
    while todo:
        i = min(todo)
        if i + 1 not in todo:
            return False
        qa, qb = set(a[i]) | set(a[i + 1]), set(b[i]) | set(b[i + 1])
        if len(qa) != 4 or qa != qb:
            return False
        todo -= {i, i + 1}
    return True


def package_faces(model) -> np.ndarray:
    """int64 [F,3] faces of the package's Anny triangulation: the shipped template's (``bodies/data``).

    Anny splits each quad along a diagonal picked from float vertex positions (``get_triangular_faces``), so
    near-square quads can flip between installs — seen: 6 of 13.7k quads flipped with the same anny 0.6.2 wheel on
    a fresh machine. Models, view assets and caches are keyed to one triangulation, so every poser uses the
    shipped one. Raises ``BodyError`` when the installed Anny differs in more than those diagonals (then the
    template must be regenerated: ``python -m interactvlm_ros.bodies.make_anny_template``). Without a shipped
    template (while making it) Anny's own triangulation is returned."""
    from . import TEMPLATE_PATH, BodyError

    own = model.get_triangular_faces().cpu().numpy().astype(np.int64)
    if not TEMPLATE_PATH.is_file():
        return own
    with np.load(TEMPLATE_PATH) as d:
        shipped = d["faces"].astype(np.int64)
        n_shipped = int(d["vertices"].shape[0])
    n = int(model.template_vertices.shape[0])
    if n != n_shipped or not same_quad_mesh(shipped, own):
        raise BodyError(f"the installed anny package's topology ({n} vertices, {len(own)} faces) differs from the "
                        f"shipped template {TEMPLATE_PATH} ({n_shipped} vertices, {len(shipped)} faces) in more than "
                        "quad diagonals; regenerate it with 'python -m interactvlm_ros.bodies.make_anny_template' "
                        "(then retrain/re-package the default model)")
    if not np.array_equal(shipped, own):
        log.info("anny split %d quads along the other diagonal than the shipped template; using the template's",
                 int((shipped != own).any(1).sum()) // 2)
    return shipped


def _rotvec_to_matrix(rv) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(rv, np.float64)).as_matrix()


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b."""
    from scipy.spatial.transform import Rotation

    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    s, c = np.linalg.norm(v), float(a @ b)
    if s < 1e-12:
        return np.eye(3) if c > 0 else Rotation.from_rotvec(np.pi * np.array([0, 0, 1.0])).as_matrix()
    return Rotation.from_rotvec(v / s * np.arctan2(s, c)).as_matrix()


class AnnyPoser:
    """Runs Anny's forward with world-frame bone rotations; outputs in the body frame (metres)."""

    def __init__(self):
        self.model = load_anny()
        self.bone_labels = [str(b) for b in self.model.bone_labels]
        self.index = {n: i for i, n in enumerate(self.bone_labels)}
        par = self.model.bone_parents
        self.parents = [int(p) for p in (par.tolist() if hasattr(par, "tolist") else par)]
        for i, p in enumerate(self.parents):
            if i > 0 and p >= i:
                raise RuntimeError("Anny bone order is not parent-first; AnnyPoser assumes it is")
        self.faces = package_faces(self.model)
        self.num_vertices = int(self.model.template_vertices.shape[0])
        w = self.model.vertex_bone_weights.cpu().numpy()
        ids = self.model.vertex_bone_indices.cpu().numpy()
        self.dominant_bone = ids[np.arange(len(ids)), np.argmax(w, axis=1)].astype(np.int64)

    def local_from_world(self, world: dict) -> np.ndarray:
        """{bone: 3x3 world rotation (Anny frame)} → [J,4,4] local deltas (unset bones follow their parent)."""
        J = len(self.bone_labels)
        Wm = [np.eye(3)] * J
        out = np.tile(np.eye(4), (J, 1, 1))
        for i, name in enumerate(self.bone_labels):
            p = self.parents[i]
            pw = Wm[p] if (i > 0 and p >= 0) else np.eye(3)
            R = world.get(name)
            if R is not None and np.shape(R) == (3,):
                R = _rotvec_to_matrix(R)
            Wm[i] = pw if R is None else np.asarray(R, np.float64)
            out[i, :3, :3] = pw.T @ Wm[i]
        return out

    def forward(self, deltas: np.ndarray, phenotype: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """deltas [J,4,4] (or [B,J,4,4]) local → (vertices [.., N,3], joints [.., J,3]) in the body frame (no offset)."""
        import torch

        d = torch.as_tensor(np.asarray(deltas), dtype=torch.float32)
        batched = d.ndim == 4
        if not batched:
            d = d[None]
        B = d.shape[0]
        ph = {k: 0.5 for k in PHENOTYPE_LABELS}
        for k, v in (phenotype or {}).items():
            if k not in PHENOTYPE_LABELS:
                raise ValueError(f"unknown Anny phenotype {k!r}; use {PHENOTYPE_LABELS}")
            ph[k] = v
        pk = {k: torch.as_tensor(np.broadcast_to(np.asarray(v, np.float32), (B,)).copy()) for k, v in ph.items()}
        with torch.no_grad():
            out = self.model(pose_parameters=d, phenotype_kwargs=pk)
        verts = out["vertices"].cpu().numpy().astype(np.float64) @ ANNY_TO_BODY.T
        joints = out["bone_poses"][..., :3, 3].cpu().numpy().astype(np.float64) @ ANNY_TO_BODY.T
        if not batched:
            verts, joints = verts[0], joints[0]
        return verts, joints

    def pose_world(self, world: dict, phenotype: dict | None = None, offset: bool = True):
        """World-frame rotations (Anny frame; matrices or rotvecs) → (vertices [N,3], joints [J,3]) float32, body frame,
        with the canonical y offset when ``offset``."""
        v, j = self.forward(self.local_from_world(world), phenotype)
        if offset:
            v = v + np.array([0, CANONICAL_Y_OFFSET, 0])
            j = j + np.array([0, CANONICAL_Y_OFFSET, 0])
        return v.astype(np.float32), j.astype(np.float32)


class PosedAnny:
    """vertices float32 [B,N,3], joints float32 [B,J,3] (body frame, template placement)."""

    def __init__(self, vertices, joints):
        self.vertices, self.joints = vertices, joints


def _body_to_anny_rotvec(rv: np.ndarray) -> np.ndarray:
    """Rotation vectors in the body frame → Anny frame (v_body = M·v_anny, M proper ⇒ rv_anny = Mᵀ·rv_body)."""
    return np.asarray(rv, np.float64) @ ANNY_TO_BODY


def _as_array(self, rotations) -> np.ndarray:
    """None | {bone: rotvec[3]} | [J,3] | [B,J,3] (body frame) → float64 [B,J,3]."""
    J = len(self.bone_labels)
    if rotations is None:
        return np.zeros((1, J, 3))
    if isinstance(rotations, dict):
        out = np.zeros((1, J, 3))
        for k, v in rotations.items():
            if k not in self.index:
                raise KeyError(f"Anny has no bone {k!r} (see BodyModel.bone_labels)")
            out[0, self.index[k]] = np.asarray(v, np.float64).reshape(3)
        return out
    a = np.asarray(rotations, np.float64)
    if a.shape == (J, 3):
        return a[None]
    if a.ndim == 3 and a.shape[1:] == (J, 3):
        return a
    raise ValueError(f"Anny rotations must be a dict or [J,3]/[B,J,3] with J={J}; got shape {a.shape}")


def _call(self, rv, phenotype: dict | None = None, world: bool = False, transl=None) -> PosedAnny:
    """Body-frame rotation vectors [B,J,3] (local per bone, or world with ``world=True``) → PosedAnny."""
    rv = _as_array(self, rv)
    ra = _body_to_anny_rotvec(rv)
    deltas = np.tile(np.eye(4), (rv.shape[0], rv.shape[1], 1, 1))
    for b in range(rv.shape[0]):
        if world:
            deltas[b] = self.local_from_world({n: ra[b, i] for i, n in enumerate(self.bone_labels) if np.any(ra[b, i] != 0)})
        else:
            deltas[b, :, :3, :3] = _rotvec_to_matrix(ra[b])
    v, j = self.forward(deltas, phenotype)
    off = np.array([0, CANONICAL_Y_OFFSET, 0])
    if transl is not None:
        off = off + np.asarray(transl, np.float64).reshape(-1, 1, 3)
    return PosedAnny((v + off).astype(np.float32), (j + off).astype(np.float32))


AnnyPoser._as_array = _as_array
AnnyPoser.__call__ = _call


def local_rotvecs_from_world(poser: AnnyPoser, world: dict) -> np.ndarray:
    """World rotations (Anny frame) → body-frame *local* rotation vectors [J,3] (the ``pose()`` input)."""
    from scipy.spatial.transform import Rotation

    d = poser.local_from_world(world)
    ra = Rotation.from_matrix(d[:, :3, :3]).as_rotvec()
    return ra @ ANNY_TO_BODY.T  # Anny → body frame


def vitruvian_world_rotations(poser: AnnyPoser, phenotype: dict | None = None) -> dict:
    """World rotations (Anny frame) for the Vitruvian pose: arms straight along ±x, legs straight, abducted 30°."""
    _, rest = poser.forward(np.tile(np.eye(4), (len(poser.bone_labels), 1, 1)), phenotype)
    jn = rest @ ANNY_TO_BODY  # body → Anny frame (inverse of the orthogonal map)
    W = {}
    deg30 = np.deg2rad(30.0)
    for s, sg in (("L", 1.0), ("R", -1.0)):
        sh, el, wr = (jn[poser.index[f"{n}.{s}"]] for n in ("upperarm01", "lowerarm01", "wrist"))
        Wu = _align(el - sh, np.array([sg, 0, 0.0]))
        W[f"upperarm01.{s}"] = Wu
        W[f"lowerarm01.{s}"] = _align(Wu @ (wr - el), np.array([sg, 0, 0.0])) @ Wu
        hip, kn, an = (jn[poser.index[f"{n}.{s}"]] for n in ("upperleg01", "lowerleg01", "foot"))
        target = np.array([sg * np.sin(deg30), 0, -np.cos(deg30)])
        Wt = _align(kn - hip, target)
        W[f"upperleg01.{s}"] = Wt
        W[f"lowerleg01.{s}"] = _align(Wt @ (an - kn), target) @ Wt
    return W
