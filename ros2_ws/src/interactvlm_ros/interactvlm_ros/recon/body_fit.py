"""Fit the Anny body to one image's landmarks (+ optional depth) in the camera frame.

Shapes: J = Anny bones (104), B = fitted bones (``FIT_BONES``), S = fitted vertex subset, K = 75
landmarks (33 mediapipe Pose, 21 left hand, 21 right hand), N = 13718 Anny vertices.

Model (camera optical frame, metres)::

    v_cam = R_g · A2B · LBS(rest(phenotype), FK(deltas(rotvecs)))  +  t

``A2B`` maps Anny's native frame (z up, facing −y) to the body frame (y up, facing +z); ``R_g`` / ``t``
are the global rotation / translation; ``rotvecs`` [B,3] are Anny ``local-ref`` deltas (axis-angle)
of the fitted bones; phenotype [6] in [0,1] (``PHENOTYPE_LABELS``) through a sigmoid.

Speed: the fit evaluates only S ≈ 1.5k vertices (the landmark regressor's vertices + an area-uniform
sample of the surface for the depth term) by linear blend skinning written here (Anny's own forward
skins all N vertices, ~20 ms; our subset forward+backward is a few ms). The full mesh is skinned once
at the end with Anny's own forward; ``test_recon_speed_helpers`` checks the subset equals Anny's output.
Warm starts keep the phenotype: ``FixedShapeSkinning`` then runs the kinematics over the 16 fitted bones only
(exact, ~2x cheaper per evaluation). Hand-written parts (subset rest shape + LBS, the fixed-shape skinning)
are needed because Anny has no "skin these vertices only" or "these bones only" entry point.

Losses (weights in ``BodyFitConfig``): 2-D landmark reprojection (robust, in units of the person's
bbox diagonal), 3-D hip-centred landmarks when perception gives world landmarks, depth of the visible
surface sample vs the depth image inside the person mask, pose prior (L2 + elbow/knee hinge limits),
phenotype prior, and a temporal term towards the previous frame when warm-started.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from interactvlm_ros.bodies.anny_model import ANNY_TO_BODY, PHENOTYPE_LABELS  # Anny frame → body frame
from interactvlm_ros.assets import vertex_normals
from interactvlm_ros.recon.geometry import nearest_index, rotvec_to_matrix, sample_surface, umeyama

log = logging.getLogger(__name__)

FIT_BONES = (
    "spine03", "spine01", "neck01", "head",
    "upperarm01.L", "upperarm01.R", "lowerarm01.L", "lowerarm01.R", "wrist.L", "wrist.R",
    "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R", "foot.L", "foot.R",
)
# hinge joints: (bone, axis index in the local-ref delta, sign of the allowed flexion)
# measured on the model (synthetic generator's pose conventions): elbow flexion = −x, knee flexion = +x (Anny frame)
HINGES = (("lowerarm01.L", 0, -1.0), ("lowerarm01.R", 0, -1.0), ("lowerleg01.L", 0, 1.0), ("lowerleg01.R", 0, 1.0))
NUM_POSE = 33
DT = torch.float64  # Anny's buffers are float64
L_SH, R_SH, L_HIP, R_HIP = 11, 12, 23, 24
TORSO = (11, 12, 23, 24)


class FitCancelled(RuntimeError):
    """Raised inside a fit's iterations once its ``cancel`` event is set (``Reconstructor.cancel``: a background cold
    fit stopped by ``Tracker.reset`` / ``close``, e.g. at shutdown)."""


def check_cancel(event: threading.Event | None, what: str) -> None:
    if event is not None and event.is_set():
        raise FitCancelled(f"{what} cancelled")


def solve_translation(P: np.ndarray, kp2d: np.ndarray, K: np.ndarray, z: float | None = None,
                      min_visible: int = 4) -> np.ndarray | None:
    """Camera translation t that puts the body-relative landmarks P [33,3] (camera-aligned, before translation) on the
    rays of their visible 2-D landmarks kp2d [33,3] (u, v, visibility): linear least squares in (tx, ty, tz); with
    ``z`` given, tz = z and (tx, ty) are the per-landmark solutions' medians. Without ``min_visible`` visible
    landmarks the torso's four are used when ``min_visible`` ≤ 1, else None; None when the solution is not in front of
    the camera (tz ≤ 0.2 m)."""
    vis = kp2d[:NUM_POSE, 2] > 0.5
    use = [i for i in range(NUM_POSE) if vis[i]]
    if len(use) < max(min_visible, 1):
        if min_visible > 1:
            return None
        use = list(TORSO)
    P = np.asarray(P, np.float64)[use]
    xn = (kp2d[use, 0] - K[0, 2]) / K[0, 0]
    yn = (kp2d[use, 1] - K[1, 2]) / K[1, 1]
    if z is not None:
        t = np.array([np.median(xn * (P[:, 2] + z) - P[:, 0]), np.median(yn * (P[:, 2] + z) - P[:, 1]), float(z)])
    else:
        A = np.zeros((2 * len(use), 3))
        b = np.zeros(2 * len(use))
        A[0::2, 0], A[0::2, 2], b[0::2] = -1.0, xn, P[:, 0] - xn * P[:, 2]
        A[1::2, 1], A[1::2, 2], b[1::2] = -1.0, yn, P[:, 1] - yn * P[:, 2]
        t, *_ = np.linalg.lstsq(A, b, rcond=None)
    if not np.isfinite(t).all() or t[2] <= 0.2:
        return None
    return t


@dataclass
class BodyFitConfig:
    iters_cold: int = 400
    iters_warm: int = 12
    lr: float = 0.045
    warm_lr_scale: float = 0.1  # warm steps at 0.0045 (as before the cold lr went to 0.045)
    w_2d: float = 1.0
    w_hand: float = 0.3
    w_3d: float = 2.0
    w_3d_occluded: float = 0.3  # relative weight of the 3-D term on landmarks flagged not visible
    # weight of the 3-D term on *visible* landmarks when depth is given (hidden ones keep w_3d × w_3d_occluded):
    # mediapipe's world landmarks are 7-18° rotated, 5-39 % small and 7-10 cm off after a similarity on the
    # synthetic scenes; at 2.0 they pulled depth fits 13 cm off (GT landmarks 0.7), at 0.05 3.7 cm (GT 0.8)
    w_3d_depth: float = 0.05
    # cold fits: the visible landmarks keep w_3d for this fraction of the iterations (the 3-D landmarks set the
    # coarse pose; at 0 a GT-landmark phone scene flipped to 12 cm), then drop to w_3d_depth
    w_3d_depth_from: float = 0.5
    w_depth: float = 1.0
    w_pose: float = 2e-3
    w_hinge: float = 0.5
    w_pheno: float = 2e-3
    w_temporal: float = 0.05
    depth_trunc: float = 0.15  # m: depth residuals beyond this are treated as occlusion/outliers (clipped)
    # person cloud (depth + a person mask): each back-projected person pixel (a subsample of ``cloud_points``) to
    # the tangent plane of its nearest camera-facing model sample, Cauchy with scale ``cloud_scale``. The
    # projective depth term above only moves the body along the rays; this one also pulls it sideways onto the
    # measured surface (silhouette edges), which corrects 2-D landmarks that are off
    w_cloud: float = 1.0
    cloud_points: int = 400
    cloud_scale: float = 0.03
    # cold fits: the cloud term starts after this fraction of the iterations (after the rigid stage: from the
    # first iteration it pulled two GT-landmark scenes into a wrong minimum, a ball 1.4 -> 5.7 cm, a chair flipped)
    cloud_from: float = 0.25
    surface_samples: int = 600
    fit_phenotype: bool = True
    # cold fits: the phenotype (shape) is fitted for this fraction of the iterations, then frozen; the rest run on
    # the fixed-shape skinning (FixedShapeSkinning, ~4x cheaper per iteration than the full rig with its shape)
    pheno_until: float = 0.8
    cold_lr_final: float = 0.05  # cold fits: cosine decay of the learning rate to this fraction (1 = constant)
    # warm starts: stop when the loss has not improved by ``warm_stop_rel`` (relative) for ``warm_patience``
    # iterations; the lowest-loss state is returned (0 disables the early stop)
    warm_patience: int = 3  # ≥ 3: Adam's first (sign-sized) warm steps often raise the loss before it falls
    warm_stop_rel: float = 1e-3
    # warm starts: before the (small-step) optimisation, the translation is re-solved in closed form from this frame's
    # visible 2-D landmarks with the previous pose (x, y and z; x, y only when depth is given, whose terms set z).
    # A walking person moves 10-15 cm between frames at 10 Hz; 12 warm steps move the body by at most ~3 cm, so
    # without this the 2-D error grew frame after frame until the track was reset (pedestrians clip: 0.02 → 0.14)
    warm_recentre: bool = True


@dataclass
class BodyState:
    """Fitted body parameters (numpy; what a warm start needs)."""

    rotvecs: np.ndarray  # [B,3] local-ref axis-angle per FIT_BONES
    R: np.ndarray  # [3,3] global rotation (camera ← body frame)
    t: np.ndarray  # [3] translation (camera frame, m): position of the Anny root
    phenotype: np.ndarray  # [6] in (0,1)

    def copy(self) -> "BodyState":
        return BodyState(self.rotvecs.copy(), self.R.copy(), self.t.copy(), self.phenotype.copy())


@dataclass
class BodyFitResult:
    state: BodyState
    vertices: np.ndarray  # [N,3] camera frame
    faces: np.ndarray  # [F,3]
    landmarks: np.ndarray  # [75,3] camera frame
    metrics: dict = field(default_factory=dict)


_POSER = None
_POSER_LOCK = threading.Lock()


def get_poser() -> "AnnyPoser":
    """Process-wide AnnyPoser (building Anny takes seconds; its cache lives in ``paths.cache_dir('anny')``)."""
    global _POSER
    with _POSER_LOCK:
        if _POSER is None:
            _POSER = AnnyPoser()
        return _POSER


class AnnyPoser:
    """Anny with a differentiable forward on a vertex subset + the full forward.

    ``subset_vertices(phenotype [6], rotvecs [B,3]) -> [S,3]`` (Anny frame, torch, differentiable);
    ``full_vertices(phenotype, rotvecs) -> [N,3]`` (Anny frame, numpy)."""

    def __init__(self, model=None, surface_samples: int = 600):
        from interactvlm_ros.perception.landmarks import get_regressor
        from interactvlm_ros.bodies.anny_model import load_anny, package_faces

        self.model = model if model is not None else load_anny()
        m = self.model
        self.bone_labels = list(m.bone_labels)
        self.J = len(self.bone_labels)
        missing = [b for b in FIT_BONES if b not in self.bone_labels]
        if missing:
            raise RuntimeError(f"Anny rig lacks bones {missing}; the reconstruction needs the default 'anny' rig")
        self.fit_ids = torch.tensor([self.bone_labels.index(b) for b in FIT_BONES])
        self.faces = package_faces(m)
        self.N = int(m.template_vertices.shape[0])
        reg = get_regressor()
        if reg.num_vertices != self.N:
            raise RuntimeError(f"landmark regressor is for {reg.num_vertices} vertices, Anny has {self.N}")
        with torch.no_grad():
            pheno0 = self._pheno_dict(torch.full((6,), 0.5, dtype=DT))
            rest = m(pose_parameters=None, phenotype_kwargs=pheno0)["vertices"][0].cpu().numpy()
        fid, bary = sample_surface(rest, self.faces, surface_samples, seed=0)
        surf = self.faces[fid, np.argmax(bary, 1)]  # nearest corner of each sample: a well-spread vertex subset
        subset = np.unique(np.concatenate([reg.indices.ravel(), surf]))
        self.subset = subset
        pos = {int(v): i for i, v in enumerate(subset)}
        self.lm_idx = torch.tensor(np.vectorize(pos.get)(reg.indices), dtype=torch.long)  # [75,k] into subset
        self.lm_w = torch.tensor(reg.weights, dtype=DT)
        self.surf_idx = torch.tensor(sorted({pos[int(v)] for v in surf}), dtype=torch.long)
        sub = torch.as_tensor(subset, dtype=torch.long)
        self.template_sub = m.template_vertices[sub].detach().to(DT)
        self.blend_sub = m.blendshapes[:, sub].detach().to(DT)
        w_sub = m.vertex_bone_weights[sub].detach().to(DT)
        i_sub = m.vertex_bone_indices[sub].detach().long()
        # dense [S,J] skinning matrix: blending the J bone transforms is then one small matmul
        self.W_sub = torch.zeros(len(subset), self.J, dtype=DT).scatter_add_(1, i_sub, w_sub)
        self.blend_sub = self.blend_sub.reshape(self.blend_sub.shape[0], -1)  # [C, S*3]
        normals = vertex_normals(rest, self.faces)
        self.rest_normals_sub = torch.as_tensor(normals[subset], dtype=DT)

    # ---------------------------------------------------------------- pieces of Anny's forward
    def _pheno_dict(self, pheno: torch.Tensor) -> dict:
        return {k: pheno[i:i + 1] for i, k in enumerate(PHENOTYPE_LABELS)}

    def coeffs(self, pheno: torch.Tensor) -> torch.Tensor:
        """phenotype [6] → blendshape coefficients [1,C]."""
        m = self.model
        _, ph, lc, fa = m.get_tensor_inputs(None, self._pheno_dict(pheno), None, None)
        return m._get_phenotype_blendshape_coefficients(ph, lc, fa)

    def rest_bone_poses(self, coeffs: torch.Tensor) -> torch.Tensor:
        """[1,J,4,4] rest bone poses without computing all rest vertices (Anny 'cached' orientation)."""
        m = self.model
        if getattr(m, "bone_orientation", None) != "cached":  # other rigs: Anny's own (slower) path
            return m.get_rest_model(coeffs)["rest_bone_poses"]
        import roma
        import anny.skinning.skinning as skinning

        heads = skinning.apply_linear_blendshape(m.template_bone_heads, m.bone_heads_blendshapes, coeffs)
        M = m.bone_template_orientation_matrices[None] + torch.einsum("ba,akij->bkij", coeffs, m.bone_orientation_blendshapes)
        Rr = roma.special_procrustes(M)
        if m.rest_orientation_refiner is not None:
            Rr = m.rest_orientation_refiner(Rr, heads)
        poses = roma.Rigid(linear=Rr, translation=heads).to_homogeneous()
        if m.root_identity_orientation:
            poses = poses.clone()
            poses[:, 0, :3, :3] = torch.eye(3, dtype=poses.dtype)
        return poses

    def deltas(self, rotvecs: torch.Tensor) -> torch.Tensor:
        """[B,3] → [1,J,4,4] local-ref deltas (identity for bones not fitted)."""
        D = torch.eye(4, dtype=rotvecs.dtype).repeat(self.J, 1, 1)
        D = D.index_put((self.fit_ids[:, None, None], torch.arange(3)[None, :, None], torch.arange(3)[None, None, :]),
                        rotvec_to_matrix(rotvecs))
        return D[None]

    def subset_vertices(self, pheno: torch.Tensor, rotvecs: torch.Tensor, coeffs: torch.Tensor | None = None,
                        rest_poses: torch.Tensor | None = None, rest_sub: torch.Tensor | None = None):
        """(subset vertices [S,3], per-vertex skinning rotation [S,3,3]) in the Anny frame.
        ``rest_sub``: the subset's rest vertices for ``coeffs`` when already known (fixed phenotype)."""
        m = self.model
        if coeffs is None:
            coeffs = self.coeffs(pheno)
        if rest_poses is None:
            rest_poses = self.rest_bone_poses(coeffs)
        rest = rest_sub if rest_sub is not None else self.template_sub + (coeffs @ self.blend_sub).reshape(-1, 3)
        T, _ = m.get_bone_transforms(self.deltas(rotvecs), rest_poses)  # [1,J,4,4]
        Tw = (self.W_sub @ T[0, :, :3, :].reshape(self.J, 12)).reshape(-1, 3, 4)  # [S,3,4]
        v = (Tw[:, :, :3] @ rest[:, :, None])[..., 0] + Tw[:, :, 3]
        return v, Tw[:, :, :3]

    def rest_cache(self, pheno: np.ndarray):
        """(coeffs, rest bone poses, full rest vertices) for a phenotype, cached (warm starts keep it fixed)."""
        return self._rest_entry(pheno)[:3]

    def rest_sub_cache(self, pheno: np.ndarray) -> torch.Tensor:
        """Subset rest vertices [S,3] for a phenotype (cached with ``rest_cache``)."""
        return self._rest_entry(pheno)[3]

    def _rest_entry(self, pheno: np.ndarray):
        key = tuple(np.round(np.asarray(pheno, np.float64), 6))
        hit = self._rest_cache.get(key) if hasattr(self, "_rest_cache") else None
        if hit is None:
            with torch.no_grad():
                c = self.coeffs(torch.as_tensor(np.asarray(pheno, np.float64), dtype=DT))
                rp = self.rest_bone_poses(c)
                rest_sub = self.template_sub + (c @ self.blend_sub).reshape(-1, 3)
                hit = (c, rp, self.model.get_rest_vertices(c), rest_sub, {})  # {} : fixed_skinning, built lazily
            self._rest_cache = {key: hit}  # one entry: the current person
        return hit

    def fixed_skinning(self, pheno: np.ndarray) -> "FixedShapeSkinning | None":
        """The subset's skinning for a fixed phenotype (warm starts), cached with ``rest_cache`` and built on first
        use (~8 ms; cold fits alone never need it); None for a rig whose pose parameterization is not Anny's
        default 'local-ref' (it is derived for that one; the general path is used)."""
        c, rp, _, rest_sub, lazy = self._rest_entry(pheno)
        if "skin" not in lazy:
            local_ref = getattr(self.model, "pose_parameterization", None) == "local-ref"
            with torch.no_grad():
                lazy["skin"] = FixedShapeSkinning(self, rp, rest_sub) if local_ref else None
        return lazy["skin"]

    def full_vertices(self, pheno: np.ndarray, rotvecs: np.ndarray) -> np.ndarray:
        """All N vertices [N,3] (Anny frame). The first call for a phenotype uses Anny's own skinning of the cached
        rest shape; later ones (a tracked person keeps the shape) a ``FixedShapeSkinning`` of all N vertices built
        then (~120 ms once; then ~3.6 against ~8 ms per call, equal to 1e-9 m). The last result is reused for an
        identical (phenotype, rotvecs) (a warm fit that kept its start state)."""
        pheno = np.asarray(pheno, np.float64)
        rotvecs = np.asarray(rotvecs, np.float64)
        last = getattr(self, "_last_full", None)
        if last is not None and np.array_equal(last[0], pheno) and np.array_equal(last[1], rotvecs):
            return last[2].copy()
        c, rp, rest, _, lazy = self._rest_entry(pheno)
        with torch.no_grad():
            local_ref = getattr(self.model, "pose_parameterization", None) == "local-ref"  # (as fixed_skinning)
            if "full" not in lazy and local_ref and lazy.get("full_calls", 0) >= 1:
                w = torch.zeros(self.N, self.J, dtype=DT).scatter_add_(
                    1, self.model.vertex_bone_indices.long(), self.model.vertex_bone_weights.to(DT))
                lazy["full"] = FixedShapeSkinning(self, rp, rest[0].to(DT), weights=w)
            lazy["full_calls"] = lazy.get("full_calls", 0) + 1
            if "full" in lazy:
                v = lazy["full"].vertices(torch.as_tensor(rotvecs, dtype=DT))[None]
            else:
                T, _ = self.model.get_bone_transforms(self.deltas(torch.as_tensor(rotvecs, dtype=DT)), rp)
                v = self.model.get_skinned_vertices(rest, T)
        out = v[0].cpu().numpy().astype(np.float64)
        self._last_full = (pheno.copy(), rotvecs.copy(), out.copy())
        return out

    def landmarks_from_subset(self, v_sub: torch.Tensor) -> torch.Tensor:
        return (v_sub[self.lm_idx] * self.lm_w[..., None]).sum(1)  # [75,3]


class FixedShapeSkinning:
    """The subset's posed vertices for a fixed phenotype as a function of the fitted bones' rotations only.

    ``__call__(rotvecs [B,3]) -> (vertices [S,3], normals [S,3])`` (Anny frame), equal to
    ``AnnyPoser.subset_vertices`` (its rotations applied to the rest normals) for the same phenotype
    (``test_recon_speed_helpers``) at a fraction of its cost: a warm start evaluates forward kinematics over the
    B = 16 fitted bones instead of Anny's J = 104 and blends B + 1 transforms per vertex instead of J.
    Derivation (Anny's 'local-ref' kinematics, ``anny.utils.kinematics``):
    a bone c of parent p has the posed pose W_c = W_p K_c(D_c), and K_c(D) = K_c(I) [U_c^T D U_c | 0] (U_c its
    reference orientation). Non-fitted bones have D = I, so every bone's skinning transform is
    T_c = W_g(c) G_c with g(c) its nearest fitted ancestor-or-self (or the root, whose W is I) and G_c =
    (W⁰_g)^-1 T⁰_c constant (⁰: all deltas I); a fitted bone a has
    W_a = W_g(parent) (W⁰_g)^-1 W⁰_a [U_a^T D_a U_a | 0].
    Linear blend skinning then groups by g: v_s = Σ_g W_g p_sg with p_sg = Σ_{c in g} w_sc G_c [rest_s; 1]
    precomputed. Written here because Anny has no entry point for a partially fixed rig."""

    def __init__(self, poser: "AnnyPoser", rest_poses: torch.Tensor, rest_sub: torch.Tensor,
                 weights: torch.Tensor | None = None):
        """``rest_sub`` [S,3] rest vertices, ``weights`` [S,J] their skinning weights (default: the poser's subset,
        whose normals are then skinned too; other vertex sets give vertices only: ``vertices``)."""
        m = poser.model
        J = poser.J
        fit = [int(i) for i in poser.fit_ids]
        with torch.no_grad():
            T0, W0 = m.get_bone_transforms(torch.eye(4, dtype=DT).repeat(1, J, 1, 1), rest_poses)
            T0, W0 = T0[0], W0[0]
            ref = getattr(m, "reference_bone_orientations", None)
            U = (ref if ref is not None else rest_poses[0, :, :3, :3]).to(DT)
            parents = [int(x) for x in m.bone_parents]
            group = [0] * J  # 0 = the root group (W = I), k = fitted bone k-1
            for c in range(J):  # nearest fitted ancestor-or-self
                a = c
                while a != 0 and a not in fit:
                    a = parents[a]
                group[c] = fit.index(a) + 1 if a in fit else 0
            Wg0 = torch.cat([torch.eye(4, dtype=DT)[None], W0[fit]])  # [B+1,4,4] the groups' rest-delta poses
            G = torch.linalg.inv(Wg0)[group] @ T0  # [J,4,4]
            # fitted bone k: its group's parent group, and the constant E_k = (W⁰_parent group)^-1 W⁰_k
            parent_group = [group[parents[a]] if a != 0 else 0 for a in fit]
            self.E = torch.linalg.inv(Wg0[parent_group]) @ W0[fit]  # [B,4,4]
            self.U = U[fit]  # [B,3,3]
            # the fitted bones' tree depth (group_poses: W = W[parent group] @ X, once per level)
            pg = [0] + parent_group
            depth = [0] * len(pg)
            for _ in range(len(pg)):
                depth = [0 if k == 0 else depth[pg[k]] + 1 for k in range(len(pg))]
            if max(depth) >= len(pg):
                raise RuntimeError("fitted bones do not form a tree")
            self.depth = max(depth)
            self.pg = torch.as_tensor(pg)
            Wsc = poser.W_sub if weights is None else weights  # [S,J] skinning weights
            gi = torch.as_tensor(group)
            onehot = torch.zeros(J, len(fit) + 1, dtype=DT).scatter_(1, gi[:, None], 1.0)  # [J,B+1]
            rest_h = torch.cat([rest_sub, torch.ones(len(rest_sub), 1, dtype=DT)], 1)  # [S,4]
            # each vertex's blended constant per group, Σ_{c in g} w_sc G_c [S,B+1,4,4], as one matrix product
            Mg = (Wsc @ (onehot[:, :, None] * G.reshape(J, 1, 16)).reshape(J, -1)).reshape(len(rest_sub), -1, 4, 4)
            # stored flat [S,(B+1)*4] / [S,(B+1)*3]: the blend is then one matrix product (GEMM forward and backward)
            self.P = (Mg @ rest_h[:, None, :, None])[..., 0].reshape(len(rest_sub), -1)  # p_sg [S,B+1,4]
            # normals: n_s = Σ_g R(W_g) Σ_{c in g} w_sc R(G_c) n_rest_s
            self.N = None if weights is not None else (Mg[:, :, :3, :3] @ poser.rest_normals_sub[:, None, :, None]
                                                        )[..., 0].reshape(len(rest_sub), -1)  # [S,B+1,3]

    def group_poses(self, rotvecs: torch.Tensor) -> torch.Tensor:
        """[B,3] → the groups' posed poses W_g [B+1,4,4] (root first)."""
        L = self.U.transpose(1, 2) @ rotvec_to_matrix(rotvecs) @ self.U  # [B,3,3]
        X = torch.cat([self.E[:, :, :3] @ L, self.E[:, :, 3:]], 2)  # [B,4,4]: E_k [L_k | 0]
        X = torch.cat([torch.eye(4, dtype=X.dtype)[None], X])  # the root group: I
        W = X  # final for the groups of tree depth <= 1; each round settles the next level
        for _ in range(self.depth - 1):
            W = W[self.pg] @ X
        return W

    def _blend(self, Wg: torch.Tensor) -> torch.Tensor:
        return self.P @ Wg.transpose(1, 2).reshape(-1, 3)  # Σ_g W_g p_sg

    def vertices(self, rotvecs: torch.Tensor) -> torch.Tensor:
        """Vertices [S,3] (Anny frame), differentiable."""
        return self._blend(self.group_poses(rotvecs)[:, :3, :])

    def __call__(self, rotvecs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(vertices [S,3] differentiable, vertex normals [S,3] without grad), Anny frame."""
        Wg = self.group_poses(rotvecs)[:, :3, :]  # [B+1,3,4]
        v = self._blend(Wg)
        with torch.no_grad():
            n = self.N @ Wg[:, :, :3].detach().transpose(1, 2).reshape(-1, 3)
        return v, n


def person_depth(depth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The measured depth [H,W] (m) kept inside the person mask eroded by 2 px (edge pixels mix foreground
    and background depth), 0 elsewhere and where the depth is invalid (0, NaN, inf)."""
    import cv2

    d = np.asarray(depth, np.float64)
    valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        m = cv2.erode(np.asarray(mask, np.uint8), np.ones((5, 5), np.uint8)) > 0
        valid &= m if m.any() else np.asarray(mask, bool)
    return np.where(valid, d, 0.0)


def _visible_depth(v: np.ndarray, n: np.ndarray, K: np.ndarray, dmap: np.ndarray, cell_px: float,
                   max_res: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices v [S,3] (camera frame) with normals n [S,3] → (ids of the visible ones that land on a
    measured pixel within ``max_res`` of their depth, the measured depth there).

    Visible = facing the camera (n·v < 0) and within 5 cm of the nearest vertex in its ``cell_px`` z-buffer
    cell (a point z-buffer: the subset is too sparse to rasterise; 5 cm keeps a surface's own samples)."""
    H, W = dmap.shape
    z = v[:, 2]
    ok = ((n * v).sum(1) < 0) & (z > 0.05)
    u = K[0, 0] * v[:, 0] / np.maximum(z, 0.05) + K[0, 2]
    w = K[1, 1] * v[:, 1] / np.maximum(z, 0.05) + K[1, 2]
    ui, wi = np.round(u).astype(np.int64), np.round(w).astype(np.int64)
    ok &= (ui >= 0) & (ui < W) & (wi >= 0) & (wi < H)
    ids = np.nonzero(ok)[0]
    if len(ids) == 0:
        return ids, np.zeros(0)
    cu = (u[ids] / cell_px).astype(np.int64)
    cw = (w[ids] / cell_px).astype(np.int64)
    key = cw * (int(W / cell_px) + 2) + cu
    _, inv = np.unique(key, return_inverse=True)
    zmin = np.full(inv.max() + 1, np.inf)
    np.minimum.at(zmin, inv, z[ids])
    ids = ids[z[ids] <= zmin[inv] + 0.05]
    zo = dmap[wi[ids], ui[ids]]
    keep = (zo > 0) & (np.abs(z[ids] - zo) < max_res)
    return ids[keep], zo[keep]


def person_cloud(dmap: np.ndarray, K: np.ndarray, n: int) -> np.ndarray:
    """Back-projected valid pixels of a person depth map (``person_depth``) -> [M,3] camera-frame points, M <= n,
    an evenly spaced deterministic subsample (row-major order)."""
    w, u = np.nonzero(dmap > 0)
    if len(u) > n:
        keep = np.linspace(0, len(u) - 1, n).round().astype(np.int64)
        w, u = w[keep], u[keep]
    z = dmap[w, u]
    return np.stack([(u - K[0, 2]) / K[0, 0] * z, (w - K[1, 2]) / K[1, 1] * z, z], 1)


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


class BodyFitter:
    """Differentiable Anny fit (Adam) to 2-D/3-D landmarks and optional depth. See the module docstring."""

    def __init__(self, poser: AnnyPoser | None = None, config: BodyFitConfig | None = None):
        self.poser = poser or get_poser()
        self.cfg = config or BodyFitConfig()
        self.cancel: threading.Event | None = None  # set → FitCancelled at the next iteration
        self.A2B = torch.tensor(ANNY_TO_BODY, dtype=DT)

    # ------------------------------------------------------------------ initialisation
    def _rest_landmarks_body(self) -> np.ndarray:
        if not hasattr(self, "_rest_lm"):
            with torch.no_grad():
                v, _ = self.poser.subset_vertices(torch.full((6,), 0.5, dtype=DT), torch.zeros(len(FIT_BONES), 3, dtype=DT))
                self._rest_lm = (self.poser.landmarks_from_subset(v).numpy() @ ANNY_TO_BODY.T)
        return self._rest_lm

    def initial_state(self, kp2d: np.ndarray, kp3d: np.ndarray | None, K: np.ndarray, depth=None, mask=None) -> BodyState:
        """Global rotation from the 3-D landmarks (Kabsch on torso + limbs) or, without them, from the
        shoulder order (facing / back to the camera); translation by linear least squares on the 2-D torso
        landmarks, then moved to the depth of the person's pixels when depth is given."""
        lm = self._rest_landmarks_body()  # [75,3] body frame, Anny root at origin
        vis = kp2d[:NUM_POSE, 2] > 0.5
        if kp3d is not None and np.isfinite(kp3d).all():
            ids = [i for i in (11, 12, 23, 24, 0, 13, 14, 25, 26) if vis[i]] or list(range(NUM_POSE))
            ids = [i for i in ids if i in (11, 12, 23, 24)] if len(ids) < 4 else ids
            src = lm[ids] - 0.5 * (lm[L_HIP] + lm[R_HIP])
            R, _ = umeyama(src, kp3d[ids])
        else:
            facing = kp2d[L_SH, 0] >= kp2d[R_SH, 0]  # person's left shoulder on the image right → facing us
            # body frame (y up, facing +z) → camera (y down): facing the camera = 180° about x
            R = np.diag([1.0, -1.0, -1.0]) if facing else np.diag([-1.0, -1.0, 1.0])
        # linear solve of t from the visible landmarks' rays
        t = solve_translation(lm[:NUM_POSE] @ R.T, kp2d, K, min_visible=1)
        if t is None:
            t = np.array([0.0, 0.0, 3.0])
        if depth is not None:
            sel = (depth > 0) if mask is None else ((depth > 0) & mask)
            if sel.sum() > 20:
                z = float(np.median(depth[sel])) + 0.08  # surface → body centre
                t = t * (z / max(t[2], 1e-3))  # slide along the ray to the measured depth
        return BodyState(np.zeros((len(FIT_BONES), 3)), R, t, np.full(6, 0.5))

    # ------------------------------------------------------------------ fit
    def fit(self, kp2d: np.ndarray, K: np.ndarray, kp3d: np.ndarray | None = None, hands2d: np.ndarray | None = None,
            depth: np.ndarray | None = None, person_mask: np.ndarray | None = None, init: BodyState | None = None,
            iters: int | None = None) -> BodyFitResult:
        """kp2d [33,3] (u, v, visibility) px; kp3d [33,3] hip-centred, camera-aligned (mediapipe world) or None;
        hands2d [2,21,3] or None; depth [H,W] m (0 = invalid) or None; person_mask [H,W] bool or None."""
        cfg = self.cfg
        t_start = time.perf_counter()
        warm = init is not None
        state0 = init.copy() if warm else self.initial_state(kp2d, kp3d, K, depth, person_mask)
        n_iter = int(iters if iters is not None else (cfg.iters_warm if warm else cfg.iters_cold))

        obs = np.zeros((75, 3), np.float32)
        obs[:NUM_POSE] = kp2d[:NUM_POSE]
        if hands2d is not None:
            obs[NUM_POSE:] = np.asarray(hands2d, np.float32).reshape(42, 3)
        obs_t = torch.as_tensor(obs, dtype=DT)
        vis = (obs_t[:, 2] > 0.5).float()
        lw = torch.ones(75, dtype=DT)
        lw[NUM_POSE:] = cfg.w_hand
        vp = obs[:NUM_POSE][obs[:NUM_POSE, 2] > 0.5, :2]
        scale_px = float(np.linalg.norm(vp.max(0) - vp.min(0))) if len(vp) >= 2 else float(max(K[0, 2], K[1, 2]))
        scale_px = max(scale_px, 20.0)
        Kt = torch.tensor(K, dtype=DT)
        kp3 = torch.as_tensor(kp3d, dtype=DT) if kp3d is not None else None

        # depth: the observed depth under each visible model vertex (projective association, see _visible_depth)
        dmap = person_depth(depth, person_mask) if depth is not None else None
        if dmap is not None and int((dmap > 0).sum()) < 20:
            dmap = None
        cell_px = max(2.0, scale_px / 20.0)  # z-buffer cell ≈ 2× the projected spacing of the surface samples
        # the person cloud needs a person mask: without one dmap is the whole scene (background, the object)
        cloud = None
        if dmap is not None and person_mask is not None and cfg.w_cloud > 0:
            cloud_np = person_cloud(dmap, K, cfg.cloud_points)
            cloud = torch.as_tensor(cloud_np, dtype=DT)

        rv = torch.tensor(state0.rotvecs, dtype=DT, requires_grad=True)
        omega = torch.zeros(3, dtype=DT, requires_grad=True)
        R0 = torch.tensor(state0.R, dtype=DT)
        dt = torch.zeros(3, dtype=DT, requires_grad=True)
        t0 = torch.tensor(state0.t, dtype=DT)
        fit_pheno = cfg.fit_phenotype and not warm  # warm starts keep the person's shape (and its cached rest mesh)
        ph_logit = torch.tensor(_logit(state0.phenotype), dtype=DT, requires_grad=fit_pheno)
        ph_prev = torch.tensor(_logit(state0.phenotype), dtype=DT)
        rv_prev = torch.tensor(state0.rotvecs, dtype=DT)
        lr = cfg.lr * (cfg.warm_lr_scale if warm else 1.0)  # Adam's first steps are ~lr: small when warm
        params = [{"params": [rv], "lr": lr * 1.5}, {"params": [omega], "lr": lr},
                  {"params": [dt], "lr": lr * 0.5}]
        if fit_pheno:
            params.append({"params": [ph_logit], "lr": cfg.lr * 2})
        opt = torch.optim.Adam(params)
        sched = None
        if not warm and cfg.cold_lr_final < 1.0:
            f = cfg.cold_lr_final
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k: f + (1 - f) * 0.5 * (1 + np.cos(np.pi * min(k / max(n_iter - 1, 1), 1.0))))
        h_bone = torch.tensor([FIT_BONES.index(b) for b, _, _ in HINGES])
        h_axis = torch.tensor([a for _, a, _ in HINGES])
        h_sign = torch.tensor([s for _, _, s in HINGES], dtype=DT)
        poser = self.poser
        # a fixed phenotype (warm starts): skinning over the fitted bones only (FixedShapeSkinning, exact)
        skin = poser.fixed_skinning(state0.phenotype) if not fit_pheno else None
        # cold fits: the shape is frozen after ``pheno_until`` of the iterations (then the fixed-shape skinning)
        freeze_at = int(round(cfg.pheno_until * n_iter)) if fit_pheno and cfg.pheno_until < 1.0 else None

        frozen = {}

        def model(rv, omega, dt, ph_logit, stage1=False):
            """(camera-frame subset vertices [S,3], their Anny-frame normals [S,3] without grad, A2B-rotation M)."""
            Rg = rotvec_to_matrix(omega) @ R0
            M = Rg @ self.A2B

            def skinned():
                if skin is not None:
                    return skin(rv)
                v, Rs = poser.subset_vertices(torch.sigmoid(ph_logit), rv)
                with torch.no_grad():
                    return v, (Rs @ poser.rest_normals_sub[..., None])[..., 0]

            if stage1:  # pose and shape frozen: skin once, then only the rigid transform is optimised
                if "v" not in frozen:
                    with torch.no_grad():
                        frozen["v"] = skinned()
                v, n = frozen["v"]
            else:
                v, n = skinned()
            vc = v @ M.T + (t0 + dt)
            return vc, n, M

        recentred_m = 0.0
        if warm and cfg.warm_recentre:
            with torch.no_grad():
                vc0, _, _ = model(rv, omega, dt, ph_logit)
                lm0 = poser.landmarks_from_subset(vc0).numpy().astype(np.float64)[:NUM_POSE]
            t_new = solve_translation(lm0 - state0.t, kp2d, K, z=state0.t[2] if dmap is not None else None)
            if t_new is not None:
                recentred_m = float(np.linalg.norm(t_new - state0.t))
                t0 = torch.tensor(t_new, dtype=DT)  # ``model`` reads t0 when called

        n_stage1 = 0 if warm else max(n_iter // 4, 1)
        last = {}
        # warm early stop / best state: Adam's small warm steps can overshoot an already converged state
        track = warm and cfg.warm_patience > 0
        best_L, best_p, best_last, stall = np.inf, None, {}, 0
        stopped = False
        it_done = 0
        for it in range(n_iter):
            check_cancel(self.cancel, "body fit")
            stage1 = it < n_stage1  # global rotation/translation only
            if freeze_at is not None and it == max(freeze_at, n_stage1):
                ph_logit.requires_grad_(False)  # no gradient from here on: Adam leaves it as it is
                skin = poser.fixed_skinning(torch.sigmoid(ph_logit).numpy().astype(np.float64))
            opt.zero_grad()
            vc, n_anny, M = model(rv, omega, dt, ph_logit, stage1)
            lm = poser.landmarks_from_subset(vc)
            z = lm[:, 2].clamp_min(0.05)
            uv = torch.stack([Kt[0, 0] * lm[:, 0] / z + Kt[0, 2], Kt[1, 1] * lm[:, 1] / z + Kt[1, 2]], -1)
            r = (uv - obs_t[:, :2]).norm(dim=-1) / scale_px
            w2 = vis * lw
            l2d = (w2 * (torch.sqrt(r * r + 1e-4) - 1e-2)).sum() / w2.sum().clamp_min(1.0)
            loss = cfg.w_2d * l2d
            terms = {"2d": float(l2d.detach())}
            if kp3 is not None:
                rel = lm[:NUM_POSE] - 0.5 * (lm[L_HIP] + lm[R_HIP])
                e3 = (rel - kp3).norm(dim=-1)
                # occluded landmarks keep a lower weight: mediapipe's world landmarks still place hidden limbs
                # (a foot behind a chair, a hand behind a ball), which nothing else constrains
                v3 = vis[:NUM_POSE] + cfg.w_3d_occluded * (1 - vis[:NUM_POSE])
                l3d = (v3 * e3).sum() / v3.sum()
                # with depth (which measures what the camera sees) visible landmarks drop to w_3d_depth
                # after the first w_3d_depth_from of a cold fit; hidden ones keep w_3d × w_3d_occluded
                depth_phase = dmap is not None and (warm or it >= cfg.w_3d_depth_from * n_iter)
                wv = cfg.w_3d_depth if depth_phase else cfg.w_3d
                w3 = wv * vis[:NUM_POSE] + cfg.w_3d * cfg.w_3d_occluded * (1 - vis[:NUM_POSE])
                loss = loss + (w3 * e3).sum() / v3.sum()
                terms["3d"] = float(l3d.detach())
            if dmap is not None:
                # projective depth: each visible model vertex vs the measured depth at its pixel, along the
                # optical axis. Only vertices the camera sees take part (front-facing and first in a coarse
                # z-buffer), so the measured front surface can never pull the body's back surface onto it.
                with torch.no_grad():
                    nrm = n_anny @ M.T
                    idx, zobs = _visible_depth(vc.detach().numpy(), nrm.numpy(), K, dmap, cell_px, cfg.depth_trunc * 2)
                if len(idx) > 10:
                    res = vc[torch.as_tensor(idx), 2] - torch.as_tensor(zobs)
                    c = cfg.depth_trunc
                    ldep = 0.1 * torch.log1p((res / c) ** 2).mean()  # Cauchy: ≈ 0.1·(res/c)² near 0
                    loss = loss + cfg.w_depth * ldep
                    terms["depth"] = float(ldep.detach())
                    terms["depth_points"] = len(idx)
                if cloud is not None and len(cloud) > 10 and (warm or it >= cfg.cloud_from * n_iter):
                    with torch.no_grad():
                        front = torch.nonzero((nrm * vc.detach()).sum(1) < 0)[:, 0]
                        nn_ = front[nearest_index(cloud_np, vc.detach()[front])] if len(front) > 10 else None
                    if nn_ is not None:
                        res = ((cloud - vc[nn_]) * nrm[nn_]).sum(1)  # point to the sample's tangent plane
                        lcl = 0.1 * torch.log1p((res / cfg.cloud_scale) ** 2).mean()
                        loss = loss + cfg.w_cloud * lcl
                        terms["cloud"] = float(lcl.detach())
            if not stage1:
                lp = (rv * rv).sum()
                rh = rv[h_bone]  # [4,3] hinge bones: flexion one way about the hinge axis, the other axes damped
                lh = ((torch.relu(-h_sign * rh.gather(1, h_axis[:, None])[:, 0]) ** 2).sum()
                      + 0.5 * ((rh * rh).sum() - (rh.gather(1, h_axis[:, None]) ** 2).sum()))
                loss = loss + cfg.w_pose * lp + cfg.w_hinge * lh
                if fit_pheno:
                    loss = loss + cfg.w_pheno * ((torch.sigmoid(ph_logit) - 0.5) ** 2).sum()
                if warm:
                    loss = loss + cfg.w_temporal * (((rv - rv_prev) ** 2).sum() + ((ph_logit - ph_prev) ** 2).sum()
                                                    + (omega ** 2).sum() + 10.0 * (dt ** 2).sum())
            if not torch.isfinite(loss):
                last = {"diverged": True, **terms}
                break
            Lf = float(loss.detach())
            if track:
                if Lf < best_L * (1 - cfg.warm_stop_rel) or best_p is None:
                    stall = 0
                else:
                    stall += 1
                if Lf < best_L:
                    best_L, best_last = Lf, {"loss": Lf, **terms}
                    best_p = (rv.detach().clone(), omega.detach().clone(), dt.detach().clone())
                if stall >= cfg.warm_patience:
                    stopped = True
                    break
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            it_done = it + 1
            last = {"loss": Lf, **terms}
        if track and best_p is not None and not last.get("diverged") and (stopped or best_L < Lf):
            # the last evaluated state was not the best: return the best one (its loss is known); when the
            # loss was still falling, the state after the last step (unevaluated, as before) is kept
            with torch.no_grad():
                rv.copy_(best_p[0])
                omega.copy_(best_p[1])
                dt.copy_(best_p[2])
            last = best_last

        with torch.no_grad():
            Rg = (rotvec_to_matrix(omega) @ R0).numpy().astype(np.float64)
            pheno = torch.sigmoid(ph_logit).numpy().astype(np.float64) if fit_pheno else state0.phenotype.copy()
            state = BodyState(rv.detach().numpy().astype(np.float64).copy(), Rg, (t0 + dt).numpy().astype(np.float64),
                              pheno)
        finite = all(np.isfinite(x).all() for x in (state.rotvecs, state.R, state.t, state.phenotype))
        if not finite:
            return BodyFitResult(state, np.full((poser.N, 3), np.nan), poser.faces, np.full((75, 3), np.nan),
                                 {"diverged": True, "iterations": n_iter})
        v_anny = poser.full_vertices(state.phenotype, state.rotvecs)
        M = state.R @ ANNY_TO_BODY
        verts = v_anny @ M.T + state.t
        from interactvlm_ros.perception.landmarks import get_regressor

        lm = get_regressor().all(verts.astype(np.float32))
        uvp = np.stack([K[0, 0] * lm[:, 0] / np.maximum(lm[:, 2], 1e-3) + K[0, 2],
                        K[1, 1] * lm[:, 1] / np.maximum(lm[:, 2], 1e-3) + K[1, 2]], -1)
        v = obs[:, 2] > 0.5
        err_px = float(np.linalg.norm(uvp[v] - obs[v, :2], axis=1).mean()) if v.any() else float("nan")
        metrics = {"iterations": it_done if track else n_iter, "warm": warm, "early_stop": stopped,
                   "recentred_m": recentred_m, "reproj_px": err_px, "reproj_rel": err_px / scale_px,
                   "person_scale_px": scale_px, "fit_ms": 1e3 * (time.perf_counter() - t_start),
                   **{f"loss_{k}": v for k, v in last.items()}}
        return BodyFitResult(state, verts.astype(np.float32), poser.faces, lm, metrics)
