"""Synthetic human–object interaction samples with geometric ground-truth contact.

One sample (``Generator.sample(seed)``), all randomness from ``numpy.random.default_rng(seed)``:

1. **body**: Anny with a random phenotype and an interaction pose (``_pose_for``; world-frame axis-angle per
   bone, posed by ``bodies.anny_model.AnnyPoser``), in the body frame (y up, facing +z, no template offset);
2. **object**: a category used in that interaction (``catalog``), a random real size, placed where the
   interaction puts it (palm, between palms, on forearms, at the foot, under the buttocks/feet, behind
   the back, on the head, under the hands) and **settled** along the approach direction by bisection
   until the deepest body vertex inside the object is ``PEN_TARGET`` (2 mm) deep — never more than
   ``PEN_TOL`` (6 mm) after settling (``trimesh`` Embree ``contains`` + ``closest_point``);
3. **GT contact**: body vertex ↔ object surface distance ≤ threshold (default 2 cm) and object vertex ↔
   body surface distance ≤ threshold, on the template topology / the normalised object mesh;
4. **camera image**: random pinhole camera looking at the person (azimuth ±75° from the front,
   elevation −5…30°, vertical FoV 40–65°), Embree ray casting of body+object → depth, person/object
   masks, Lambert+ambient shading of clothing-like per-part colours with noise, random backgrounds;
5. **landmarks**: the Anny→mediapipe regressor (``perception.landmarks``) projected with K; visibility
   1 iff in the image and not hidden behind a surface by more than 6 cm (joints lie inside the body);
6. **GT view masks**: ``contact`` looked up through the static per-pixel vertex maps of the canonical
   template (human views) and the normalised object (object views) at resolution R — a pixel is contact
   iff its visible face has ≥ 2 contact vertices (spec 3.7 ``min_vertices=2``).

A sample that cannot be made valid (no contact, penetration, contact missing the parts the interaction is about:
``REQUIRED_CONTACT``) is retried with the same RNG stream, so the
result is still a pure function of the seed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from interactvlm_ros.bodies.anny_model import PHENOTYPE_LABELS
from interactvlm_ros.bodies.anny_model import _align  # rotation taking direction a to direction b
from interactvlm_ros.synth import catalog
from interactvlm_ros.synth.raycast import cast, pinhole_rays
from interactvlm_ros.views import get_view_set

log = logging.getLogger(__name__)

# 1.1: two-hand/carry arm IK (1.0 held objects at arm's length, 97 % failed); 1.2: `sit` shins hang about
# vertically (1.1 folded the knee 150-200°, past any human knee); every other interaction draws the same numbers;
# 1.3: the camera image casts through the OpenCV pixel centres (1.2 cast through u + 0.5: image, depth and masks
# half a pixel off K); the per-vertex labels, poses and official-view masks are unchanged; 1.4: a placement whose
# contact misses the parts the interaction is about (``REQUIRED_CONTACT``: a "sit" touching only a foot, a two-hand
# hold touching one hand — 224 of synth_v3's 3000 samples) is retried like any invalid placement; every other seed
# gives the same sample as in 1.3
GENERATOR_VERSION = "synth-1.4"
PEN_TARGET = 0.002
PEN_TOL = 0.006
MIN_VERTICES = 2  # spec 3.7 (mv2 rule)
# the body parts (``bodies.parts.PART_NAMES``) an interaction must touch: each tuple is "any of these parts", every
# tuple must hold, with at least MIN_PART_CONTACT contact vertices
REQUIRED_CONTACT = {
    "hold_one_hand": [("left_hand", "right_hand")],
    "hold_two_hands": [("left_hand",), ("right_hand",)],
    "carry": [("left_hand", "left_forearm", "right_hand", "right_forearm")],
    "kick": [("left_foot", "right_foot")],
    "sit": [("buttocks", "left_thigh", "right_thigh")],
    "lean": [("back", "buttocks")],
    "ride": [("left_foot", "right_foot")],
    "wear_head": [("head",)],
    "operate_table": [("left_hand", "right_hand", "left_forearm", "right_forearm")],
}
MIN_PART_CONTACT = 5
DEG = np.pi / 180.0


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rotvec(Rm):
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(Rm).as_rotvec()


# =====================================================================================  static setup
# coarse parts for clothing colours and object placement, from each vertex's dominant skinning bone
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


def missing_contact(interaction: str, human_contact: np.ndarray, part_labels: np.ndarray,
                    part_names: list[str]) -> list[str]:
    """The ``REQUIRED_CONTACT`` groups of ``interaction`` that ``human_contact`` [N] (> 0 = contact) misses, each
    as "a|b"; [] when the contact is what the interaction means. ``part_labels`` [N] index ``part_names``."""
    g = np.asarray(human_contact) > 0
    counts = np.bincount(np.asarray(part_labels)[g], minlength=len(part_names))
    return ["|".join(grp) for grp in REQUIRED_CONTACT[interaction]
            if sum(int(counts[part_names.index(p)]) for p in grp) < MIN_PART_CONTACT]


def coarse_parts(bone_labels, dominant_bone: np.ndarray) -> np.ndarray:
    """int64 [N] coarse part id (``COARSE_PARTS``) of each vertex from its dominant skinning bone [N]."""
    dominant_bone = np.asarray(dominant_bone, np.int64)
    ids = np.zeros(len(dominant_bone), np.int64)
    for b, name in enumerate(bone_labels):
        for pid, (_, prefixes) in enumerate(PART_OF_BONE_PREFIX):
            if name.startswith(prefixes):
                ids[dominant_bone == b] = pid
                break
    return ids


@dataclass
class PosedBody:
    """A posed body in the body frame (metres, no template offset). vertices [N,3], joints [J,3] (bone heads)."""

    vertices: np.ndarray
    joints: np.ndarray
    pose_rotvecs: np.ndarray  # [J,3] world-frame axis-angle per bone (Anny frame), the generator's pose parameters
    phenotype: np.ndarray  # [6] in [0,1], PHENOTYPE_LABELS order


class Templates:
    """Everything computed once per process: the Anny body (``bodies.get_body_model("anny")``: canonical
    template, faces; its ``poser`` poses), the template's view maps, the landmark regressor, part ids."""

    def __init__(self, mask_res: int = 128):
        from interactvlm_ros.bodies import get_body_model
        from interactvlm_ros.perception.landmarks import get_regressor

        self.body = get_body_model("anny")
        self.poser = self.body.poser  # bodies.anny_model.AnnyPoser (builds Anny on first use)
        self.bone_labels = list(self.poser.bone_labels)
        self.J = len(self.bone_labels)
        self.faces = np.asarray(self.body.faces, np.int64)
        self.num_vertices = self.body.num_vertices
        self.parts = coarse_parts(self.bone_labels, self.poser.dominant_bone)
        self.regressor = get_regressor()
        if self.regressor.num_vertices != self.num_vertices:
            raise RuntimeError("landmark regressor and Anny topology disagree; regenerate perception/data/anny_landmarks.npz")
        self.mask_res = int(mask_res)
        self.template_vertices = np.asarray(self.body.template_vertices, np.float32)
        self.template_source = "bodies.get_body_model('anny')"
        self.template_hash = hashlib.sha1(np.ascontiguousarray(self.template_vertices.round(5)).tobytes()
                                          + self.faces.tobytes()).hexdigest()[:16]
        self.human_vids = self._view_vertex_ids(self.template_vertices, self.faces, "human")
        self._object_vids: dict[str, np.ndarray] = {}
        self._arm_rest: dict | None = None

    def arm_rest(self) -> dict:
        """Rest-pose arm geometry (body frame, default phenotype) per side for the two-bone arm IK:
        shoulder S, elbow E, palm centre P, palm normal n (``Generator._palm``), lengths L1=|E−S|, L2=|P−E|."""
        if self._arm_rest is None:
            V, J = self.poser.pose_world({}, None, offset=False)
            V, J = np.asarray(V, np.float64), np.asarray(J, np.float64)
            out = {}
            for s in "LR":
                S, E = J[self.bone(f"upperarm01.{s}")], J[self.bone(f"lowerarm01.{s}")]
                P, n = _palm_of(self.regressor, V, s)
                out[s] = dict(S=S, E=E, P=P, n=n, L1=float(np.linalg.norm(E - S)), L2=float(np.linalg.norm(P - E)))
            self._arm_rest = out
        return self._arm_rest

    def bone(self, name: str) -> int:
        if name not in self.poser.index:
            raise KeyError(f"Anny has no bone {name!r}")
        return self.poser.index[name]

    def pose(self, world_rotvecs: np.ndarray, phenotype: np.ndarray) -> PosedBody:
        """[J,3] world-frame rotation vectors (Anny frame; zero = follow the parent) + phenotype [6] → PosedBody."""
        world = {n: world_rotvecs[i] for i, n in enumerate(self.bone_labels) if np.any(world_rotvecs[i] != 0)}
        v, j = self.poser.pose_world(world, dict(zip(PHENOTYPE_LABELS, (float(x) for x in phenotype))), offset=False)
        return PosedBody(v, j, np.asarray(world_rotvecs, np.float32), np.asarray(phenotype, np.float32))

    def _view_vertex_ids(self, vertices, faces, view_set: str) -> np.ndarray:
        """[V,R,R,3] int64 vertex ids of the visible face per pixel (−1 background) on the official views:
        the core's view assets (the same maps the lifter uses; cached)."""
        from interactvlm_ros import assets as core_assets

        va = core_assets.build_view_assets(vertices, faces, view_set, self.mask_res)
        return np.asarray(va.vertex_ids, np.int64)

    def object_vids(self, category: str) -> np.ndarray:
        if category not in self._object_vids:
            v, f = catalog.normalized_mesh(category)
            self._object_vids[category] = self._view_vertex_ids(v, f, "object")
        return self._object_vids[category]


def _palm_of(regressor, V, s):
    """(palm centre [3], palm normal [3]) of hand s ("L"/"R") from the mediapipe hand landmarks of vertices V."""
    h = regressor.hands(V)[0 if s == "L" else 1]
    centre = (h[0] + h[5] + h[17] + h[9]) / 4.0
    n = np.cross(h[5] - h[0], h[17] - h[0])
    n /= np.linalg.norm(n)
    if s == "R":
        n = -n
    if (h[12] - centre) @ n < 0:  # the palm side is where the finger tips curl to
        n = -n
    return centre, n


def arm_ik(rest: dict, target: np.ndarray, normal: np.ndarray, pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone arm IK (hand-written: a closed-form law-of-cosines solve; no IK library is installed and Anny has none).

    rest: ``Templates.arm_rest()[side]``; target [3] palm centre, normal [3] wanted palm normal, pole [3] the side
    the elbow bends to — all body frame. Returns the *world* rotations (3×3, **Anny frame**) of ``upperarm01`` and
    ``lowerarm01``. Unreachable targets are pulled onto the reachable sphere (98 % of L1+L2)."""
    from scipy.spatial.transform import Rotation
    from interactvlm_ros.bodies.anny_model import ANNY_TO_BODY as M

    S, E, P, n0, L1, L2 = rest["S"], rest["E"], rest["P"], rest["n"], rest["L1"], rest["L2"]
    d = np.asarray(target, np.float64) - S
    dist = float(np.clip(np.linalg.norm(d), abs(L1 - L2) + 0.05, 0.98 * (L1 + L2)))
    dh = d / np.linalg.norm(d)
    ca = np.clip((L1 ** 2 + dist ** 2 - L2 ** 2) / (2 * L1 * dist), -1, 1)
    u = pole - (pole @ dh) * dh
    u /= np.linalg.norm(u)
    E2 = S + L1 * (ca * dh + np.sqrt(1 - ca ** 2) * u)
    T2 = S + dist * dh
    W1 = _align(E - S, E2 - S)
    d2 = (T2 - E2) / np.linalg.norm(T2 - E2)
    A = _align(P - E, d2)  # world rotations are absolute (not chained): rest forearm → new direction
    nn = A @ n0
    a_, b_ = nn - (nn @ d2) * d2, normal - (normal @ d2) * d2
    phi = np.arctan2(d2 @ np.cross(a_, b_), a_ @ b_)
    W2 = Rotation.from_rotvec(d2 * phi).as_matrix() @ A
    return M.T @ W1 @ M, M.T @ W2 @ M


def view_masks(contact: np.ndarray, vids: np.ndarray, min_vertices: int = MIN_VERTICES) -> np.ndarray:
    """GT masks uint8 [V,R,R] (0/1): a pixel is contact iff its visible face has ≥ min_vertices contact vertices."""
    c = np.asarray(contact) > 0.5
    valid = (vids >= 0).all(-1)
    hits = np.where(vids >= 0, c[np.clip(vids, 0, None)], False).sum(-1)
    return ((hits >= min_vertices) & valid).astype(np.uint8)


# =====================================================================================  geometry
@dataclass
class Placement:
    vertices: np.ndarray  # object vertices in body frame [No,3]
    scale: float
    R: np.ndarray
    t: np.ndarray


class ObjectShape:
    """A normalised object mesh with its Embree intersector and R-tree built once; queries take points in
    the body frame and a pose (scale, R, t) and answer in metres (points are mapped into the object frame
    instead of moving the mesh, so nothing is rebuilt while an object is being placed)."""

    _cache: dict[str, "ObjectShape"] = {}

    def __init__(self, category: str):
        import trimesh

        self.nv, self.nf = catalog.normalized_mesh(category)
        self.mesh = trimesh.Trimesh(self.nv.astype(np.float64), self.nf, process=False)
        self.radius = float(np.linalg.norm(self.nv, axis=1).max())
        self.mesh.contains(np.zeros((1, 3)))  # build the intersector
        _ = self.mesh.triangles_tree  # build the R-tree
        from scipy.spatial import cKDTree

        self.kd = cKDTree(self.nv.astype(np.float64))
        e = self.mesh.edges_unique_length
        self.max_edge = float(e.max()) if len(e) else 0.0

    @classmethod
    def get(cls, category: str) -> "ObjectShape":
        if category not in cls._cache:
            cls._cache[category] = cls(category)
        return cls._cache[category]

    @staticmethod
    def local(pts, scale, R, t):
        return (pts - t) @ R / scale

    def inside_and_distance(self, pts, scale, R, t, need_all=False):
        """(inside bool [n], unsigned distance to the surface [n] in m; NaN where not computed)."""
        from trimesh.proximity import closest_point

        loc = self.local(pts, scale, R, t)
        inside = self.mesh.contains(loc)
        dist = np.full(len(pts), np.nan)
        sel = inside.copy()
        if need_all is not False:
            # a surface point is within max_edge of a vertex: only points whose nearest vertex is within
            # (need_all + max_edge) can be within need_all of the surface → exact distances for those only
            dv, _ = self.kd.query(loc, distance_upper_bound=float(need_all) / scale + self.max_edge)
            sel |= np.isfinite(dv)
        if sel.any():
            _, d, _ = closest_point(self.mesh, loc[sel])
            dist[sel] = d * scale
        return inside, dist

    def vertices(self, scale, R, t):
        return (self.nv.astype(np.float64) * scale) @ R.T + t


class Scene:
    """Body (posed, body frame) + one object: penetration, settling and GT contact."""

    def __init__(self, body_vertices: np.ndarray, faces: np.ndarray):
        import trimesh

        self.V = body_vertices.astype(np.float64)
        self.F = faces
        self.body = trimesh.Trimesh(self.V, faces, process=False)

    def _near(self, shape, scale, t, margin):
        return np.nonzero(np.linalg.norm(self.V - t, axis=1) < shape.radius * scale + margin)[0]

    def penetration(self, shape: ObjectShape, scale, R, t) -> float:
        """Max depth (m) of body vertices inside the object; −1 when none is inside."""
        near = self._near(shape, scale, t, 0.01)
        if len(near) == 0:
            return -1.0
        inside, d = shape.inside_and_distance(self.V[near], scale, R, t)
        return float(d[inside].max()) if inside.any() else -1.0

    def settle(self, shape, scale, R, t0, direction, max_travel=0.6, iters=14):
        """From ``t0`` (object deep in the body) push the object along ``direction`` until the deepest
        body vertex inside it is PEN_TARGET deep (bisection; None if t0 is not penetrating or the far end is)."""
        d = np.asarray(direction, np.float64)
        d = d / np.linalg.norm(d)
        lo, hi = 0.0, max_travel
        if self.penetration(shape, scale, R, t0) <= PEN_TARGET:
            return None
        if self.penetration(shape, scale, R, t0 + hi * d) > PEN_TARGET:
            return None
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if self.penetration(shape, scale, R, t0 + mid * d) > PEN_TARGET:
                lo = mid
            else:
                hi = mid
        return t0 + hi * d

    def contacts(self, shape: ObjectShape, scale, R, t, thr: float):
        """(human_contact [Nh], object_contact [No], body-in-object depth, object-in-body depth) — metres."""
        from trimesh.proximity import closest_point

        hc = np.zeros(len(self.V), np.float32)
        near = self._near(shape, scale, t, thr + 0.01)
        pen_b = 0.0
        if len(near):
            inside, d = shape.inside_and_distance(self.V[near], scale, R, t, need_all=thr)
            hc[near[np.nan_to_num(d, nan=np.inf) <= thr]] = 1.0
            pen_b = float(d[inside].max()) if inside.any() else 0.0
        ov = shape.vertices(scale, R, t)
        oc = np.zeros(len(ov), np.float32)
        r = shape.radius * scale
        fmask = np.linalg.norm(self.V[self.F] - t, axis=2).min(1) < r + thr + 0.05
        pen_o = 0.0
        if fmask.any():
            import trimesh

            sub = trimesh.Trimesh(self.V, self.F[fmask], process=False)
            from scipy.spatial import cKDTree

            if not hasattr(self, "_kd"):
                self._kd = cKDTree(self.V)
                self._max_edge = float(self.body.edges_unique_length.max())
            dv, _ = self._kd.query(ov, distance_upper_bound=max(thr, 0.05) + self._max_edge)
            close = np.nonzero(np.isfinite(dv))[0]
            if len(close):
                _, d, _ = closest_point(sub, ov[close])
                oc[close[d <= thr]] = 1.0
                cand = close[d <= 0.05]
                if len(cand):
                    ins = self.body.contains(ov[cand])
                    if ins.any():
                        pen_o = float(d[d <= 0.05][ins].max())
        return hc, oc, pen_b, pen_o


# interaction sampling weights (v1.1): two-hand holds were starved in 1.0; balls are held/caught about as
# often as they are kicked (P(ball | hold_two_hands) = BALL_HOLD_SHARE)
INTERACTION_WEIGHTS = {"hold_one_hand": 1.5, "hold_two_hands": 2.0, "carry": 1.0, "kick": 1.0, "sit": 1.0,
                       "lean": 0.8, "ride": 0.8, "wear_head": 0.8, "operate_table": 0.8}
BALL_HOLD_SHARE = 0.4


# =====================================================================================  appearance
SKIN = np.array([[0.95, 0.80, 0.69], [0.88, 0.68, 0.55], [0.78, 0.57, 0.42], [0.62, 0.43, 0.30],
                 [0.45, 0.30, 0.20], [0.33, 0.22, 0.15]])


def _random_colour(rng, sat=(0.2, 0.9), val=(0.15, 0.95)):
    import colorsys

    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val)))


def _albedo(rng, parts: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Per-vertex clothing-like colours [N,3]: skin, shirt (sleeves), trousers/shorts, shoes, hair."""
    names = {n: i for i, n in enumerate(["head", "hand", "forearm", "upper_arm", "torso", "hips", "thigh", "shin", "foot"])}
    skin = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.9, 1.05)
    shirt, pants, shoes = _random_colour(rng), _random_colour(rng, val=(0.1, 0.7)), _random_colour(rng, val=(0.05, 0.5))
    col = np.tile(skin, (len(parts), 1))
    long_sleeves, shorts = rng.uniform() < 0.5, rng.uniform() < 0.25
    for p in ("torso", "upper_arm") + (("forearm",) if long_sleeves else ()):
        col[parts == names[p]] = shirt
    for p in ("hips", "thigh") + (() if shorts else ("shin",)):
        col[parts == names[p]] = pants
    col[parts == names["foot"]] = shoes
    # hair: top/back of the head
    head = parts == names["head"]
    top = V[head, 1].max()
    hair = head & ((V[:, 1] > top - rng.uniform(0.05, 0.09)) | ((V[:, 1] > top - 0.2) & (V[:, 2] < np.median(V[head, 2]) - 0.03)))
    col[hair] = _random_colour(rng, sat=(0.2, 0.7), val=(0.05, 0.45))
    if rng.uniform() < 0.4:  # stripes on the shirt
        sel = np.isin(parts, [names["torso"], names["upper_arm"]])
        f = rng.uniform(20, 60)
        col[sel] *= (0.75 + 0.25 * (np.sin(V[sel, 1] * f) > 0))[:, None]
    col *= rng.uniform(0.93, 1.07, size=(len(col), 1))
    return np.clip(col, 0, 1)


def _background(rng, H: int, W: int) -> np.ndarray:
    import cv2

    wall, floor = _random_colour(rng, sat=(0, 0.5), val=(0.3, 0.95)), _random_colour(rng, sat=(0, 0.5), val=(0.2, 0.8))
    horizon = int(H * rng.uniform(0.45, 0.85))
    img = np.empty((H, W, 3), np.float32)
    ramp = np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), H)[:, None, None]
    img[:] = wall
    img[horizon:] = floor
    img *= ramp
    for _ in range(rng.integers(0, 6)):  # furniture/door-like rectangles
        x0, y0 = rng.integers(0, W), rng.integers(0, H)
        w, h = rng.integers(W // 12, W // 2), rng.integers(H // 12, H // 1.5)
        img[y0:y0 + h, x0:x0 + w] = _random_colour(rng, val=(0.1, 0.95))
    noise = cv2.resize(rng.normal(0, 1, (max(2, H // 16), max(2, W // 16))).astype(np.float32), (W, H))
    img *= (1.0 + rng.uniform(0.02, 0.12) * noise)[..., None]
    return np.clip(img, 0, 1)


# =====================================================================================  generator
@dataclass
class GeneratorConfig:
    image_size: tuple[int, int] = (320, 240)  # W, H
    contact_threshold: float = 0.02
    mask_res: int = 128
    max_tries: int = 10  # 1.4 rejects more placements (REQUIRED_CONTACT); a seed valid within 6 tries is unchanged


class Generator:
    def __init__(self, config: GeneratorConfig | None = None):
        self.cfg = config or GeneratorConfig()
        self.T = Templates(self.cfg.mask_res)

    # ---------------------------------------------------------------- pose
    def _pose_for(self, rng, interaction: str, info: dict | None = None) -> tuple[np.ndarray, dict]:
        """World rotvecs [J,3] (Anny frame) + info for the object placement (``info`` in: optional
        ``width``, the object's extent between the hands in m)."""
        b, J = self.T, self.T.J
        rv = np.zeros((J, 3))
        u = lambda a, c: rng.uniform(a, c) * DEG  # noqa: E731
        info = dict(info or {})

        def arm(s, flex, abd, elbow):
            sg = 1.0 if s == "L" else -1.0
            rv[b.bone(f"upperarm01.{s}")] = _rotvec(_ry(-sg * abd) @ _rx(-flex))
            rv[b.bone(f"lowerarm01.{s}")] = _rotvec(_rx(-elbow))

        def leg(s, flex, abd, knee):
            sg = 1.0 if s == "L" else -1.0
            rv[b.bone(f"upperleg01.{s}")] = _rotvec(_ry(-sg * abd) @ _rx(-flex))
            rv[b.bone(f"lowerleg01.{s}")] = _rotvec(_rx(knee))

        def relaxed_arm(s):
            arm(s, u(-10, 25), u(-30, 5), u(0, 40))

        rv[b.bone("spine03")] = _rotvec(_rx(-u(-5, 10)) @ _rz(u(-8, 8)))
        rv[b.bone("neck01")] = _rotvec(_rx(-u(-10, 20)) @ _rz(u(-15, 15)))
        for s in "LR":
            leg(s, u(-5, 5), u(0, 8), u(0, 8))
        if interaction == "hold_one_hand":
            s = "L" if rng.uniform() < 0.5 else "R"
            arm(s, u(15, 75), u(-10, 25), u(20, 100))
            relaxed_arm("R" if s == "L" else "L")
            info["sides"] = (s,)
        elif interaction in ("hold_two_hands", "carry"):
            # two-bone IK to palm targets in front of the body (v1.0 flexed arms about the T-pose arm's own
            # axis — a twist — so the palms stayed ~1 m apart and 97 % of the placements failed)
            rest = self.T.arm_rest()
            S = 0.5 * (rest["L"]["S"] + rest["R"]["S"])
            width = float(info.get("width", rng.uniform(0.2, 0.45)))
            if interaction == "hold_two_hands":
                mode = "catch" if rng.uniform() < 0.5 else "hold"  # catch: arms raised in front
                dy = u(-5, 40) if mode == "catch" else u(-60, -10)
                reach = rng.uniform(0.3, 0.5) if mode == "catch" else rng.uniform(0.25, 0.42)
                c = S + np.array([rng.uniform(-0.04, 0.04), reach * np.sin(dy), reach * np.cos(dy) + 0.05])
                info["mode"] = mode
            else:  # carry: forearms roughly horizontal under the object, elbows at the sides
                c = S + np.array([rng.uniform(-0.03, 0.03), -rng.uniform(0.28, 0.42), rng.uniform(0.3, 0.42)])
            for s in "LR":
                sg = 1.0 if s == "L" else -1.0
                if interaction == "hold_two_hands":
                    tgt = c + np.array([sg * (0.5 * width + 0.01), rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02)])
                    normal = np.array([-sg, 0.0, 0.0]) + rng.normal(0, 0.15, 3)
                    pole = np.array([sg * 0.7, -1.0, -0.3])
                else:
                    tgt = c + np.array([sg * max(0.5 * width - rng.uniform(0.03, 0.08), 0.08), 0, 0])
                    normal = np.array([-sg * 0.5, 1.0, 0.0]) + rng.normal(0, 0.15, 3)
                    pole = np.array([sg * 0.3, -1.0, -0.6])
                W1, W2 = arm_ik(rest[s], tgt, normal / np.linalg.norm(normal), pole)
                rv[b.bone(f"upperarm01.{s}")] = _rotvec(W1)
                rv[b.bone(f"lowerarm01.{s}")] = _rotvec(W2)
            info["sides"] = ("L", "R")
        elif interaction == "kick":
            s = "L" if rng.uniform() < 0.5 else "R"
            leg(s, u(15, 55), u(-5, 10), u(0, 35))
            for a in "LR":
                relaxed_arm(a)
            info["sides"] = (s,)
        elif interaction in ("sit", "ride"):
            if interaction == "sit":  # thighs forward, shins hanging about vertical (world rotation ~0):
                for s in "LR":        # knee flexion = hip + shin = 65-120° (1.1 had the shin at 70-100°: 150-200°)
                    leg(s, u(80, 100), u(0, 15), u(-15, 20))
            else:  # on a skateboard: knees slightly bent, feet apart
                hip, knee = u(0, 25), 0.0
                for s in "LR":
                    knee = 2 * hip * rng.uniform(0.8, 1.2)
                    leg(s, hip, u(8, 20), knee)
            for a in "LR":
                relaxed_arm(a)
        elif interaction == "lean":
            rv[b.bone("spine03")] = _rotvec(_rx(u(0, 8)))
            for a in "LR":
                relaxed_arm(a)
        elif interaction == "wear_head":
            for a in "LR":
                relaxed_arm(a)
        elif interaction == "operate_table":
            rv[b.bone("spine03")] = _rotvec(_rx(-u(5, 25)))
            for s in "LR":
                arm(s, u(25, 55), u(-5, 10), u(20, 60))
        else:
            raise ValueError(f"unknown interaction {interaction!r}; known: {catalog.INTERACTIONS}")
        return rv, info

    # ---------------------------------------------------------------- placement
    def _palm(self, V, s):
        c, n = _palm_of(self.T.regressor, V, s)
        return c, n, self.T.regressor.hands(V)[0 if s == "L" else 1]

    def _place(self, rng, scene: Scene, V, interaction, category, info):
        """(t, scale, R) of the object in the body frame, or None. Each branch starts the object deep in
        the body part it touches and pushes it out along the approach direction (``Scene.settle``)."""
        shape = ObjectShape.get(category)
        nv = shape.nv
        cat = catalog.CATEGORIES[category]
        scale = info["scale"] if "scale" in info else rng.uniform(*cat.size)
        R = _ry(rng.uniform(-0.3, 0.3))
        lm = self.T.regressor.pose(V)
        ext = (nv.max(0) - nv.min(0)) * scale
        up = np.array([0, 1.0, 0])
        if interaction == "hold_one_hand":
            c, n, _ = self._palm(V, info["sides"][0])
            R = _align(up, up + rng.normal(0, 0.2, 3)) @ _ry(rng.uniform(0, 2 * np.pi))
            return scene.settle(shape, scale, R, c, n), scale, R
        if interaction == "carry":  # box resting on the forearms, then pushed toward the chest
            fore = (lm[13] + lm[15] + lm[14] + lm[16]) / 4.0
            fore = fore + np.array([0, 0, 0.5 * ext[2] + 0.05])  # in front of the chest, between the forearms
            t = scene.settle(shape, scale, R, fore, up)
            if t is None or t[1] > lm[11][1]:  # must rest below the shoulders
                return None
            t2 = scene.settle(shape, scale, R, t - np.array([0, 0, 0.35]), np.array([0, 0, 1.0]), max_travel=0.5)
            return (t2 if t2 is not None else t), scale, R
        if interaction == "hold_two_hands":  # grow the object between the palms until it touches them
            cL, _, _ = self._palm(V, "L")
            cR, _, _ = self._palm(V, "R")
            t = 0.5 * (cL + cR)
            lo, hi = 0.2 * scale, 2.5 * scale
            pen = lambda sc: scene.penetration(shape, sc, R, t)  # noqa: E731
            if pen(lo) > PEN_TARGET or pen(hi) <= PEN_TARGET:
                return None
            for _ in range(12):
                mid = 0.5 * (lo + hi)
                if pen(mid) > PEN_TARGET:
                    hi = mid
                else:
                    lo = mid
            if not (0.5 * cat.size[0] <= lo <= 1.5 * cat.size[1]):
                return None
            return t, lo, R
        if interaction == "kick":
            s = info["sides"][0]
            toe, heel = (lm[31], lm[29]) if s == "L" else (lm[32], lm[30])
            d = toe - heel
            d = d / np.linalg.norm(d) + np.array([0, 0.15, 0])
            return scene.settle(shape, scale, R, toe, d), scale, R
        if interaction in ("sit", "ride"):
            if interaction == "sit":
                sel = np.isin(self.T.parts, [5, 6])  # hips, thighs
                low = V[sel][V[sel, 1] < V[sel, 1].min() + 0.03]
                t0 = np.array([0.0, low[:, 1].min(), low[:, 2].mean() + rng.uniform(-0.05, 0.05)])
                if category == "chair":  # seat centre a little forward of the back rest
                    t0[2] += 0.05
            else:
                feet = V[self.T.parts == 8]
                t0 = np.array([0.0, feet[:, 1].min(), feet[:, 2].mean()])
            return scene.settle(shape, scale, R, t0, -up, max_travel=1.2), scale, R
        if interaction == "lean":
            torso = V[np.isin(self.T.parts, [4, 5])]
            t0 = np.array([0.0, torso[:, 1].mean() + rng.uniform(-0.1, 0.1), torso[:, 2].min()])
            return scene.settle(shape, scale, R, t0, np.array([0, 0, -1.0]), max_travel=0.5), scale, R
        if interaction == "wear_head":
            head = V[self.T.parts == 0]
            t0 = np.array([0.0, head[:, 1].max() - 0.02, head[:, 2].mean() - 0.01])
            R = _rx(rng.uniform(-0.25, 0.1))
            return scene.settle(shape, scale, R, t0, up), scale, R
        if interaction == "operate_table":
            hands = V[self.T.parts == 1]
            t0 = np.array([0.0, hands[:, 1].min(), hands[:, 2].mean() + 0.5 * ext[2] - 0.12])
            return scene.settle(shape, scale, R, t0, -up, max_travel=1.2), scale, R
        raise ValueError(interaction)

    # ---------------------------------------------------------------- camera + render
    def _camera(self, rng, pts: np.ndarray):
        W, H = self.cfg.image_size
        fov = rng.uniform(40, 65) * DEG
        f = 0.5 * H / np.tan(0.5 * fov)
        K = np.array([[f, 0, W / 2 + rng.uniform(-0.03, 0.03) * W], [0, f, H / 2 + rng.uniform(-0.03, 0.03) * H], [0, 0, 1]])
        centre = 0.5 * (pts.min(0) + pts.max(0))
        radius = 0.5 * float((pts.max(0) - pts.min(0)).max())
        az, el = rng.uniform(-75, 75) * DEG, rng.uniform(-5, 30) * DEG
        half = min(0.5 * fov, np.arctan(0.5 * W / f))
        dist = radius / np.tan(half) * rng.uniform(1.0, 1.3)
        C = centre + dist * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        z = centre + rng.normal(0, 0.05, 3) - C
        z /= np.linalg.norm(z)
        x = np.cross(np.array([0, -1.0, 0]), z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        roll = rng.normal(0, 3) * DEG
        Rc = np.stack([x, y, z], 1) @ _rz(roll)  # columns: camera axes in world
        cam_to_world = np.eye(4)
        cam_to_world[:3, :3], cam_to_world[:3, 3] = Rc, C
        return K, cam_to_world

    def _render(self, rng, Vb, Vo, fo, K, c2w, body_albedo):
        import cv2
        import trimesh

        W, H = self.cfg.image_size
        Nb = len(Vb)
        verts = np.concatenate([Vb, Vo])
        faces = np.concatenate([self.T.faces, fo + Nb])
        buf = cast(verts, faces, *pinhole_rays(K, c2w, H, W), (H, W), cam_z=c2w[:3, 2], cam_origin=c2w[:3, 3])
        hit = buf.face_ids >= 0
        nb_faces = len(self.T.faces)
        person = hit & (buf.face_ids < nb_faces)
        obj = hit & (buf.face_ids >= nb_faces)
        mesh = trimesh.Trimesh(verts, faces, process=False)
        vn = np.asarray(mesh.vertex_normals)
        obj_col = _random_colour(rng, val=(0.2, 0.95))
        albedo_v = np.concatenate([body_albedo, np.tile(obj_col, (len(Vo), 1)) * rng.uniform(0.9, 1.1, (len(Vo), 1))])
        vid = np.clip(buf.vertex_ids, 0, None)
        w = np.clip(buf.bary, 0, None)[..., None]
        n = (vn[vid] * w).sum(-2)
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
        alb = (albedo_v[vid] * w).sum(-2)
        view = buf.points - c2w[:3, 3]
        view /= np.maximum(np.linalg.norm(view, axis=-1, keepdims=True), 1e-8)
        n = np.where(((n * view).sum(-1) > 0)[..., None], -n, n)  # face the camera
        L = c2w[:3, :3] @ np.array([rng.uniform(-0.8, 0.8), rng.uniform(-1.2, -0.2), -1.0])  # light from the camera side, above
        L /= np.linalg.norm(L)
        amb = rng.uniform(0.3, 0.55)
        diff = np.clip(-(n * L).sum(-1), 0, 1)
        shade = amb + (1 - amb) * diff
        img = _background(rng, H, W)
        fg = np.clip(alb * shade[..., None] * rng.uniform(0.85, 1.15), 0, 1)
        img[hit] = fg[hit]
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.8))
        img += rng.normal(0, rng.uniform(0.005, 0.02), img.shape).astype(np.float32)
        image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        return image, buf.depth.astype(np.float32), person, obj

    # ---------------------------------------------------------------- sample
    def sample(self, seed: int, interaction: str | None = None, category: str | None = None,
               camera_motion: tuple[float, float] = (0.0, 0.0)) -> dict:
        """One sample (deterministic per seed). ``camera_motion`` = (degrees, metres): the seed's camera turned by
        that angle about the vertical axis through the scene's centre, then moved that far along its own x axis —
        the same scene seen from a moving camera (tracking benchmarks and tests: frame k uses k × the step)."""
        if interaction is not None and interaction not in catalog.INTERACTIONS:
            raise ValueError(f"unknown interaction {interaction!r}; known: {catalog.INTERACTIONS}")
        if category is not None and category not in catalog.CATEGORIES:
            raise ValueError(f"unknown object category {category!r}; known: {sorted(catalog.CATEGORIES)}")
        rng = np.random.default_rng(int(seed))
        cfg = self.cfg
        last = "?"
        for _attempt in range(cfg.max_tries):
            if interaction:
                inter = interaction
            else:
                w = np.array([INTERACTION_WEIGHTS[i] for i in catalog.INTERACTIONS])
                inter = catalog.INTERACTIONS[rng.choice(len(w), p=w / w.sum())]
            cats = catalog.categories_for(inter)
            if category:
                cat = category
            elif inter == "hold_two_hands" and "ball" in cats and rng.uniform() < BALL_HOLD_SHARE:
                cat = "ball"
            else:
                others = [c for c in cats if not (inter == "hold_two_hands" and c == "ball")] or cats
                cat = others[rng.integers(len(others))]
            if inter not in catalog.CATEGORIES[cat].interactions:
                raise ValueError(f"category {cat!r} is not used for {inter!r}; its interactions: "
                                 f"{catalog.CATEGORIES[cat].interactions}")
            pheno = np.array([rng.uniform(0, 1), rng.uniform(0.45, 0.9), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8),
                              rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.7)])
            pinfo = {}
            if inter in ("hold_two_hands", "carry"):  # the object size decides where the hands go
                scale = rng.uniform(*catalog.CATEGORIES[cat].size)
                nv = ObjectShape.get(cat).nv
                pinfo = {"scale": scale, "width": float(scale * (nv[:, 0].max() - nv[:, 0].min()))}
            rv, info = self._pose_for(rng, inter, pinfo)
            body = self.T.pose(rv, pheno)
            V = body.vertices.astype(np.float64)
            scene = Scene(V, self.T.faces)
            placed = self._place(rng, scene, V, inter, cat, info)
            if placed is None or placed[0] is None:
                last = "object could not be placed in contact"
                continue
            t, scale, R = placed
            shape = ObjectShape.get(cat)
            hc, oc, pen_b, pen_o = scene.contacts(shape, scale, R, t, cfg.contact_threshold)
            if hc.sum() < 5 or oc.sum() < 3:
                last = f"too little contact ({int(hc.sum())} body / {int(oc.sum())} object vertices)"
                continue
            if pen_b > PEN_TOL or pen_o > 0.02:
                last = f"penetration {pen_b * 1e3:.1f} mm / {pen_o * 1e3:.1f} mm"
                continue
            missing = missing_contact(inter, hc, self.T.body.part_labels, self.T.body.part_names)
            if missing:  # e.g. a bench settled under one foot is not a "sit"
                last = f"{inter} without contact on {', '.join(missing)}"
                continue
            return self._finish(rng, seed, inter, cat, body, V, shape, scale, R, t, hc, oc, pen_b, pen_o,
                                camera_motion)
        raise RuntimeError(f"seed {seed}: no valid sample after {cfg.max_tries} tries (last: {last})")

    def _finish(self, rng, seed, inter, cat, body, V, shape, scale, R, t, hc, oc, pen_b, pen_o,
                camera_motion=(0.0, 0.0)) -> dict:
        W, H = self.cfg.image_size
        Vo = shape.vertices(scale, R, t)
        nf = shape.nf
        K, c2w = self._camera(rng, V)
        deg, metres = (float(x) for x in camera_motion)
        if deg or metres:  # after the camera's draws: everything else (colours, light, label) stays the seed's
            centre = 0.5 * (V.min(0) + V.max(0))
            Ry = _ry(deg * DEG)
            c2w = c2w.copy()
            c2w[:3, 3] = centre + Ry @ (c2w[:3, 3] - centre)
            c2w[:3, :3] = Ry @ c2w[:3, :3]
            c2w[:3, 3] += metres * c2w[:3, 0]
        albedo = _albedo(rng, self.T.parts, V)
        image, depth, person, objmask = self._render(rng, V, Vo, nf, K, c2w, albedo)
        w2c = np.linalg.inv(c2w)
        to_cam = lambda X: X @ w2c[:3, :3].T + w2c[:3, 3]  # noqa: E731

        def project(Xc):
            uv = (Xc @ K.T)
            return uv[..., :2] / np.maximum(uv[..., 2:3], 1e-6)

        def visibility(Xc, uv, tol=0.06):
            inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H) & (Xc[..., 2] > 0.05)
            ui = np.clip(uv[..., 0].astype(int), 0, W - 1)
            vi = np.clip(uv[..., 1].astype(int), 0, H - 1)
            d = depth[vi, ui]
            return inside & ((d == 0) | (Xc[..., 2] <= d + tol))

        reg = self.T.regressor
        lm3 = to_cam(reg.pose(V).astype(np.float64))
        uv = project(lm3)
        lm2 = np.concatenate([uv, visibility(lm3, uv)[:, None]], 1).astype(np.float32)
        hd3 = to_cam(reg.hands(V).astype(np.float64))
        huv = project(hd3)
        hvis = visibility(hd3, huv, tol=0.03)
        hvis &= (hvis.mean(1, keepdims=True) >= 0.5)  # a hand mostly hidden counts as not visible
        hand2 = np.concatenate([huv, hvis[..., None]], -1).astype(np.float32)
        ys, xs = np.nonzero(objmask)
        bbox = (np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) if len(xs)
                else np.zeros(4, np.float32))
        pose_cam = np.eye(4)
        pose_cam[:3, :3] = w2c[:3, :3] @ (R * scale)
        pose_cam[:3, 3] = w2c[:3, :3] @ t + w2c[:3, 3]
        cat_obj = catalog.CATEGORIES[cat]
        labels = (cat,) + cat_obj.synonyms
        label = labels[0] if rng.uniform() < 0.5 else labels[rng.integers(len(labels))]
        return {
            "image": image, "K": K.astype(np.float32), "depth": depth, "person_mask": person, "object_mask": objmask,
            "object_bbox": bbox, "landmarks_2d": lm2, "landmarks_3d": lm3.astype(np.float32),
            "hand_landmarks_2d": hand2, "human_contact": hc.astype(np.float32), "object_contact": oc.astype(np.float32),
            "human_view_masks": view_masks(hc, self.T.human_vids), "object_view_masks": view_masks(oc, self.T.object_vids(cat)),
            "object_label": np.array(label), "object_category": np.array(cat), "object_id": np.array(cat),
            "interaction": np.array(inter), "body_pose": body.pose_rotvecs.astype(np.float32),
            "phenotype": body.phenotype.astype(np.float32), "object_pose_cam": pose_cam.astype(np.float32),
            "object_scale": np.float32(scale), "human_vertices_cam": to_cam(V).astype(np.float32),
            "seed": np.int64(seed), "max_penetration": np.float32(max(pen_b, pen_o)),
        }


# =====================================================================================  dataset
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def split_ranges(seed: int, n: int) -> dict[str, list[int]]:
    """Seed ranges [start, stop) per split for a dataset of n samples starting at seed."""
    out, start = {}, seed
    names = list(SPLIT_FRACTIONS)
    for i, name in enumerate(names):
        stop = seed + n if i == len(names) - 1 else start + int(round(SPLIT_FRACTIONS[name] * n))
        out[name] = [start, stop]
        start = stop
    return out


def split_of(sample_seed: int, category: str, ranges: dict[str, list[int]]) -> str:
    if category in catalog.HELD_OUT_CATEGORIES:
        return "test_unseen_category"
    for name, (a, b) in ranges.items():
        if a <= sample_seed < b:
            return name
    raise ValueError(f"seed {sample_seed} outside the dataset's split ranges {ranges}")


def _worker(args):
    """Generate ``seeds`` on one torch thread (at most 2 workers on the 2-core target); the caller's thread count is
    restored (the first chunk runs in the calling process)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate_chunk(*args)
    finally:
        torch.set_num_threads(prev)


def _die_with_parent(parent: int) -> None:
    """Initializer of the extra worker: it ends when the process that started it does (Linux ``PR_SET_PDEATHSIG``).
    A ``synth --workers 2`` stopped by SIGTERM/SIGKILL left its worker generating the rest of its seeds and then
    idling forever (and racing a rerun into the same folder)."""
    import ctypes
    import signal

    try:
        if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM)) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (AttributeError, OSError, TypeError) as exc:  # not Linux
        log.warning("synth worker: cannot end with its parent (%s); stopping synth with SIGKILL leaves it running", exc)
        return
    if os.getppid() != parent:  # the parent was gone before the line above
        os._exit(1)


def _pool():
    """The one extra generator process (spawned: no forked torch/Embree state), tied to this process's life."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    return ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                               initargs=(os.getpid(),))


def _generate_chunk(cfg, seeds, out):
    gen = Generator(cfg)
    results = []
    for s in seeds:
        path = Path(out) / "samples" / f"{s:06d}.npz"
        if path.exists():
            try:
                with np.load(path) as d:
                    results.append((int(s), str(d["object_category"]), str(d["interaction"])))
                continue
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # truncated copy, disk error
                log.warning("%s is unreadable (%s: %s); generating it again", path, type(exc).__name__, exc)
        try:
            sample = gen.sample(s)
        except RuntimeError as exc:  # a seed with no valid configuration is skipped and recorded
            log.warning("%s", exc)
            results.append((int(s), None, str(exc)))
            continue
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **sample)
        os.replace(tmp, path)
        results.append((int(s), str(sample["object_category"]), str(sample["interaction"])))
    return results, gen.T.template_hash, gen.T.template_source, gen.T.num_vertices


class DatasetOptionsError(ValueError):
    """``write_dataset`` into a folder whose samples were made with other options (the message names the fix)."""


def _previous_meta(out: Path) -> dict:
    """meta.json of an earlier run into ``out`` ({} when there is none or it cannot be read)."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def write_dataset(out: str | Path, n: int, seed: int = 0, config: GeneratorConfig | None = None,
                  workers: int = 1, ranges: dict | None = None) -> dict:
    """Generate samples seed..seed+n-1 into ``out`` (resumable: existing sample files are kept).

    The sample file index is ``seed + i`` (``samples/{seed+i:06d}.npz``). ``workers`` ≤ 2 (1 extra process)."""
    cfg = config or GeneratorConfig()
    out = Path(out)
    old = _previous_meta(out)
    for key, mine in (("contact_threshold", cfg.contact_threshold), ("image_size", list(cfg.image_size)),
                      ("mask_resolution", cfg.mask_res)):  # kept samples must be what meta.json will say
        if key in old and old[key] != mine:
            raise DatasetOptionsError(f"{out / 'meta.json'}: the samples in {out} were made with {key} {old[key]}, "
                                      f"not {mine}; use the same options to continue this dataset, or another --out")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    (out / "objects").mkdir(exist_ok=True)
    workers = max(1, min(int(workers), 2))
    seeds = list(range(seed, seed + n))
    t0 = time.perf_counter()
    chunks = [seeds[i::workers] for i in range(workers)]
    if workers == 1:
        parts = [_worker((cfg, chunks[0], str(out)))]
    else:  # exactly one extra process; this process works on the other half meanwhile
        with _pool() as ex:
            fut = ex.submit(_worker, (cfg, chunks[1], str(out)))
            mine = _worker((cfg, chunks[0], str(out)))
            parts = [mine, fut.result()]
    failed = sorted((r for p in parts for r in p[0] if r[1] is None), key=lambda r: r[0])
    rows = sorted((r for p in parts for r in p[0] if r[1] is not None), key=lambda r: r[0])
    ranges = ranges or split_ranges(seed, n)
    splits: dict[str, list[int]] = {k: [] for k in list(SPLIT_FRACTIONS) + ["test_unseen_category"]}
    for s, cat, _ in rows:
        splits[split_of(s, cat, ranges)].append(s)
    failed_old = {}
    old = _previous_meta(out) or old  # as it is now: another --split run may have finished while this one ran
    if (old.get("splits") or {}).get("seed_ranges") == ranges:  # the same dataset (e.g. another --split of it):
        mine = set(seeds)  # keep the seeds an earlier run listed outside this run's seeds (and still on disk)
        for k, v in (old["splits"].get("indices") or {}).items():
            splits.setdefault(k, [])
            splits[k] = sorted(set(splits[k]) | {int(s) for s in v if int(s) not in mine
                                                  and (out / "samples" / f"{int(s):06d}.npz").is_file()})
        failed_old = {k: v for k, v in (old.get("failed_seeds") or {}).items() if int(k) not in mine}
    first = min(a for a, _ in ranges.values())
    last = max(b for _, b in ranges.values())
    for cat in sorted({r[1] for r in rows}):
        v, f = catalog.normalized_mesh(cat)
        np.savez_compressed(out / "objects" / f"{cat}.npz", vertices=v, faces=f, category=np.array(cat),
                            synonyms=np.array(list(catalog.CATEGORIES[cat].synonyms)))
    meta = {
        "generator_version": GENERATOR_VERSION, "seed": first, "n": last - first,
        "contact_threshold": cfg.contact_threshold,
        "image_size": list(cfg.image_size), "mask_resolution": cfg.mask_res, "min_vertices": MIN_VERTICES,
        "view_sets": {"human": [asdict(v) for v in get_view_set("human").views],
                      "object": [asdict(v) for v in get_view_set("object").views],
                      "human_view_set": "human (4MV-Z_Vitru order)", "object_view_set": "object (demo, rendered at 1.5)"},
        "body": {"model": "anny", "num_vertices": int(parts[0][3]), "template_hash": parts[0][1],
                 "template_source": parts[0][2]},
        "categories": {c: list(catalog.CATEGORIES[c].synonyms) for c in catalog.CATEGORIES},
        "interactions": list(catalog.INTERACTIONS),
        "splits": {"seed_ranges": ranges, "held_out_categories": list(catalog.HELD_OUT_CATEGORIES),
                   "rule": "held-out category → test_unseen_category; otherwise the split whose seed range holds the seed",
                   "indices": splits},
        "counts": {k: len(v) for k, v in splits.items()},
        "failed_seeds": {**failed_old, **{str(r[0]): r[2] for r in failed}},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    tmp = out / f"meta.json.{os.getpid()}.tmp"  # renamed: a reader (another run, train's refresh) sees all or nothing
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "meta.json")
    return meta
