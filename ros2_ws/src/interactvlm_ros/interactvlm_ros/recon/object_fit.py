"""Object pose in the camera frame from contact, silhouette and (optional) depth — spec §7 without its bugs.

Shapes: M object vertices, N human vertices, P surface samples of the object, Q mask pixel samples.

Pipeline (``ObjectFitter.fit``):

1. **Contact-centroid initialisation** (official step 2, fixed): the object is placed so that its
   contact centroid (object vertices with p > 0.3) coincides with the human contact centroid (p > 0.5)
   in the *camera frame* (the official code mixed a centred-human z with mask-pixel x, y read from
   swapped (row, col) entries — **[BUG] fixed**).
2. **ICP with normals** (official step 4, fixed): 1-NN correspondences in 6-D ``[position, λ·normal]``
   between the object contact points and the human contact points with *flipped* normals, **re-computed
   every iteration** (the official loop built the query set once, so it stopped after two iterations —
   **[BUG] fixed**), Umeyama from the *current* object points; run from 24 rotation hypotheses (the cube
   group) because one ICP from one start falls into the nearest local minimum; the best hypothesis by the
   full loss below wins.
   The official normal filter (``cos > cos 90° OR cos < cos −90°``, which keeps every vertex —
   **[BUG]**) is replaced by a real one: an object contact vertex is kept when its normal faces some
   human contact normal (cos(n_o, −n_h) > 0).
3. **Adam refinement** of a 6-D rotation and a translation (official lr 5e-2 / 1e-2) with:
   - *silhouette*: CUDA: nvdiffrast soft silhouette vs the object mask, 1 − soft IoU with the *union*
     in the denominator (the official ``Σ(a·t)/Σ(a+t)`` is a Dice/2 that saturates at 0.5 — fixed);
     CPU: a silhouette loss on projected surface samples — samples outside the region the object may
     occupy (object mask ∪ person mask: the person may occlude it, an occlusion reasoning the official
     code skipped although it loaded the person mask) pay their distance-transform value, and mask
     pixels pay the distance to the nearest projected sample (coverage). Chosen over a soft rasteriser
     in torch because it gives gradients from any distance (a soft rasteriser's vanish a few σ away
     from the silhouette) and costs O(P + Q) per iteration instead of O(F·H·W);
   - *centroid*: projected sample centroid vs the mask centroid, both as (x, y) (official used the
     α-weighted (row, col) vs the bbox centre);
   - *box* (new; a detector's box instead of a mask, ``box=(x0, y0, x1, y1)``): projected samples outside
     box ∪ person pay their distance-transform value (the silhouette loss's outside part), and each box side the
     projection falls short of pays the shortfall (the box of the *visible* object lies within the projection's,
     whatever occludes it): the box's size sets the distance without depth. No coverage, no centroid: a box is
     not a silhouette;
   - *contact*: for every object contact vertex the distance to the *nearest* human contact vertex and
     vice versa, probability-weighted (the official term averaged **all pairwise** distances, whose
     minimum pulls the two contact centroids together instead of making the patches touch — changed);
   - *depth* (new): point-to-plane distance of the object-mask depth points to the nearest object sample;
   - *penetration* (new): object samples behind the nearest human vertex's normal (inside the body) and
     human contact vertices behind the nearest object sample's normal (inside the object).
   Early stop when the loss has not improved by 1e-4 relative for 15 iterations (the official ran a
   fixed 250). Scale is fixed: the object mesh must be metric (``Reconstructor`` scales library meshes).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from interactvlm_ros.recon.body_fit import check_cancel
from interactvlm_ros.recon.geometry import matrix_to_sixd, sample_surface, sixd_to_matrix, umeyama, vertex_normals
from interactvlm_ros.recon.geometry import nearest_index as _nn
from interactvlm_ros.recon.metrics import signed_distance_near_body

log = logging.getLogger(__name__)
DT = torch.float32


@dataclass
class ObjectFitConfig:
    iters: int = 120
    iters_warm: int = 25
    lr_rot: float = 5e-2  # official
    lr_trans: float = 1e-2  # official
    warm_lr_scale: float = 0.15
    human_contact_thr: float = 0.5  # official
    object_contact_thr: float = 0.3  # official
    icp_iters: int = 15
    icp_normal_weight: float = 0.05  # λ in the 6-D ICP features (m per unit normal)
    surface_samples: int = 1200  # 400 left ~7 cm between samples on a chair: depth points matched the wrong part
    surface_samples_warm: int = 400  # warm starts use the first 400 of them (speed)
    # warm starts: the loss's nearest-neighbour associations (mask pixel -> sample, the contact pairs, depth point ->
    # sample, the penetration terms' body vertex <-> sample neighbours: k-d tree queries, most of an evaluation's
    # cost) are kept while no surface sample has moved more than this (m) since they were found, as ICP keeps its
    # correspondences for a step; the distances themselves are recomputed at every evaluation. 0: found again at
    # every evaluation (cold fits always are)
    reassoc_warm_m: float = 0.005
    mask_samples: int = 300
    depth_points: int = 300
    w_mask: float = 5.0  # official weight
    w_centroid: float = 1.0
    # a detector's box: samples projected outside box ∪ person + the box sides the projection falls short of. Without
    # depth the box is what places the object besides the contact (measured on 8 held-out scenes, no depth: object
    # error mean 6.7 -> 5.3 cm at 5, 3.4 cm at 50); with depth the depth terms place it and 50 broke a sat-on stool
    w_box: float = 50.0
    w_box_depth: float = 5.0
    # without a mask or box, the depth points of the guessed region within the object's diameter + this (m) of the
    # human contact centroid run the depth stage (< 0: the legacy weak depth term on all of them). Measured on 16
    # held-out scenes with depth: object error mean 5.30 / 2.35 -> 0.67 / 0.77 cm; a wall 0.5 m behind the person
    # 6.57 -> 1.74 cm (all the region's points: 14.3 cm, objects fitted onto the wall)
    guess_depth_near: float = 0.03
    w_contact: float = 10.0
    w_depth: float = 20.0
    w_pen: float = 8000.0
    depth_trunc: float = 0.05  # m, Cauchy scale of the depth term without the depth-ICP stage (legacy weight)
    # depth stage (used when depth + an object mask are given): multi-hypothesis point-to-plane ICP
    depth_scale: float = 0.01  # m, Cauchy scale of the depth and free-space terms
    w_depth_obs: float = 1.0  # weight of the depth term when depth is observed (replaces w_depth)
    w_free: float = 1.0  # free space: object samples in front of the observed surface
    free_margin: float = 0.005  # m
    depth_hypotheses: str = "ico+cube"  # rotation starts for the depth ICP (60 icosahedral + 24 cube)
    depth_icp_iters: int = 12
    refine_top: int = 3  # best hypotheses refined by Adam; the lowest final loss wins (2 missed a sat-on stool: 9.3 -> 0.5 cm)
    w_contact_depth: float = 5.0  # contact weight when depth is observed (the body fit's hands are less exact than depth)
    # penetration weight when depth is observed: the measured object surface is more exact than the fitted hand, so
    # the object no longer yields to a hand placed a few cm into it (end to end with mediapipe: apples 4.5 / 5.7 cm
    # -> 0.4, a cabinet 18 -> 3 cm at 1000 instead of 8000)
    w_pen_depth: float = 1000.0
    pen_margin: float = 0.008  # m of penetration tolerated (soft tissue, mesh discretisation, the fitted body's own ~1 cm error)
    silhouette: str = "auto"  # auto | points | nvdiffrast
    # without depth: after the fit, translate the object out of the body until no vertex is more than pen_margin
    # inside (nearest body vertex's normal, as recon.metrics.penetration_depth); the squared hinge is weak for a few
    # vertices just past the margin and a real-photo ball ended 0.9-1.3 cm inside depending on the CPU thread count
    depenetrate_iters: int = 5
    early_stop: int = 30
    # warm starts begin at (or next to) the optimum: stop after this many iterations without improvement
    # (the best pose seen is returned either way, so the extra steps could only be discarded)
    early_stop_warm: int = 3


def _push_out(v_rot: np.ndarray, t: np.ndarray, hv: np.ndarray, hn: np.ndarray, margin: float, iters: int,
              near: float = 0.05) -> tuple[np.ndarray, float]:
    """Translate the object (vertices ``v_rot`` rotated, at ``t``) out of the body: while some object vertex lies more
    than ``margin`` behind its nearest body vertex's normal (``metrics.signed_distance_near_body``), move by the
    excess along the depth-weighted mean of those normals. -> (new t, total distance moved)."""
    t = np.asarray(t, np.float64).copy()
    moved = 0.0
    for _ in range(iters):
        sd, nn = signed_distance_near_body(v_rot + t, hv, hn, near)
        bad = -sd - margin > 1e-4  # nan (not near the body) is never bad
        if not bad.any():
            break
        w = -sd[bad] - margin
        n = (hn[nn[bad]] * w[:, None]).sum(0)
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            break
        step = float(w.max()) * n / norm
        t += step
        moved += float(np.linalg.norm(step))
    return t, moved


@dataclass
class ObjectFitResult:
    pose: np.ndarray  # [4,4] camera ← object (metric object frame)
    vertices: np.ndarray  # [M,3] camera frame
    metrics: dict = field(default_factory=dict)


def _contact_set(prob: np.ndarray | None, thr: float, n: int, min_count: int = 5) -> np.ndarray:
    """Indices of contact vertices: p > thr, else the top ``min_count`` (logged by the caller)."""
    if prob is None:
        return np.arange(n)
    p = np.asarray(prob, np.float64)
    idx = np.nonzero(p > thr)[0]
    if len(idx) < min_count:
        idx = np.argsort(-p)[:min_count]
    return idx


def cube_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube [24,3,3] (rotation hypotheses for ICP)."""
    from itertools import permutations, product

    out = []
    for perm in permutations(range(3)):
        for signs in product((1, -1), repeat=3):
            R = np.zeros((3, 3))
            for i, j in enumerate(perm):
                R[i, j] = signs[i]
            if np.linalg.det(R) > 0:
                out.append(R)
    return np.array(out)


def icp_normals(src: np.ndarray, src_n: np.ndarray, dst: np.ndarray, dst_n: np.ndarray, R: np.ndarray, t: np.ndarray,
                iters: int, lam: float, w_src: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Rigid ICP of src (object contact points, normals) onto dst (human contact points, *flipped* normals),
    correspondences by 1-NN in [x, λ·n] recomputed every iteration. Returns R, t, rms (m)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.concatenate([dst, lam * dst_n], 1))
    rms = np.inf
    for _ in range(iters):
        cur = src @ R.T + t
        cur_n = src_n @ R.T
        d, nn = tree.query(np.concatenate([cur, lam * cur_n], 1))
        R, t = umeyama(src, dst[nn], w_src)
        new = float(np.sqrt(np.mean(d ** 2)))
        if abs(rms - new) < 1e-6:
            rms = new
            break
        rms = new
    return R, t, rms


def rotation_hypotheses(kind: str = "ico+cube") -> np.ndarray:
    """Rotation starts [R,3,3]: the 60 icosahedral rotations (largest gap ≈ 37°, inside the basin of a
    point-to-plane ICP) plus the 24 of the cube group (axis-aligned holds are common)."""
    from scipy.spatial.transform import Rotation

    out = []
    if "ico" in kind:
        out.append(Rotation.create_group("I").as_matrix())
    if "cube" in kind:
        out.append(cube_rotations())
    return np.concatenate(out, 0)


def object_depth_points(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, n: int, min_points: int = 30,
                        seed: int = 0) -> np.ndarray:
    """Back-project up to n valid depth pixels of the object mask → [n,3] camera frame.

    The mask is eroded by 1 px (edge pixels mix object and background depth) unless that leaves fewer
    than ``min_points`` (small, far objects: a phone is ~100 px at 320×240) — then the full mask is used.
    Pixels more than 10 cm behind the mask's median depth (background seen through gaps) are dropped."""
    import cv2

    d = np.asarray(depth, np.float64)
    valid = d > 0
    m = np.asarray(mask, bool)
    er = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    sel = valid & er
    if sel.sum() < min_points:
        sel = valid & m
    vs, us = np.nonzero(sel)
    if len(us) == 0:
        return np.zeros((0, 3))
    z = d[vs, us]
    keep = z < np.median(z) + 0.10
    us, vs, z = us[keep], vs[keep], z[keep]
    if len(us) > n:
        i = np.random.default_rng(seed).choice(len(us), n, replace=False)
        us, vs, z = us[i], vs[i], z[i]
    return np.stack([(us - K[0, 2]) / K[0, 0] * z, (vs - K[1, 2]) / K[1, 1] * z, z], 1)


def _so3_exp(w: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(w).as_matrix()


def icp_depth(obs: np.ndarray, samp: np.ndarray, samp_n: np.ndarray, R: np.ndarray, t: np.ndarray, iters: int,
              scale: float = 0.01, w_point: float = 0.3, damping: float = 1e-4) -> tuple[np.ndarray, np.ndarray, float]:
    """Rigid ICP of the object's *camera-facing* surface samples onto observed depth points.

    obs [Q,3] observed (camera frame); samp [P,3], samp_n [P,3] object-frame samples and normals; R, t start.
    Correspondences: each observed point → nearest camera-facing model sample (re-selected every
    iteration, so self-occlusion follows the pose). Gauss-Newton on Cauchy-weighted point-to-plane
    residuals plus ``w_point`` × point-to-point rows (a planar face alone leaves in-plane motion free),
    Levenberg damping. Hand-written: Open3D is not a dependency and its ICP has no visibility
    selection. Returns R, t, robust rms (m)."""
    from scipy.spatial import cKDTree

    R, t = np.array(R, np.float64), np.array(t, np.float64)
    rms = np.inf
    for _ in range(iters):
        S = samp @ R.T + t
        N = samp_n @ R.T
        vis = (N * S).sum(1) < 0
        if vis.sum() < 3:
            vis = np.ones(len(S), bool)
        Sv, Nv = S[vis], N[vis]
        d, nn = cKDTree(Sv).query(obs)
        s, n = Sv[nn], Nv[nn]
        r_pl = ((obs - s) * n).sum(1)
        w = 1.0 / (1.0 + (d / scale) ** 2)
        # rows: point-to-plane  n·(ω×s + δ) = n·(x − s);  point-to-point  (ω×s + δ) = x − s
        J_pl = np.concatenate([np.cross(s, n), n], 1)
        A = (J_pl * w[:, None]).T @ J_pl
        b = (J_pl * w[:, None]).T @ r_pl
        if w_point > 0:
            for k in range(3):
                e = np.zeros(3)
                e[k] = 1.0
                J = np.concatenate([np.cross(s, e), np.broadcast_to(e, s.shape)], 1)  # d/dω of (ω×s)_k = (s×e_k)·ω
                wk = w_point * w
                A += (J * wk[:, None]).T @ J
                b += (J * wk[:, None]).T @ (obs - s)[:, k]
        A += damping * np.trace(A) / 6 * np.eye(6) + 1e-12 * np.eye(6)
        xi = np.linalg.solve(A, b)
        dR = _so3_exp(xi[:3])
        R, t = dR @ R, dR @ t + xi[3:]
        new = float(np.sqrt((w * r_pl ** 2).sum() / max(w.sum(), 1e-12)))
        if abs(rms - new) < 1e-7:
            rms = new
            break
        rms = new
    return R, t, rms


def distance_transform_outside(region: np.ndarray) -> np.ndarray:
    """float32 [H,W]: distance (px) to the nearest pixel of ``region`` (0 inside)."""
    import cv2

    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 5).astype(np.float32)


def _nvdiffrast_silhouette():
    """(module, context) for the CUDA silhouette, or raise ImportError/RuntimeError naming what is missing."""
    import nvdiffrast.torch as dr  # noqa: PLC0415 - lazy: CUDA-only dependency

    if not torch.cuda.is_available():
        raise RuntimeError("nvdiffrast needs CUDA; torch.cuda.is_available() is False")
    return dr, dr.RasterizeCudaContext()


def soft_silhouette_nvdiffrast(dr, ctx, verts_cam: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, H: int, W: int,
                               near: float = 0.05, far: float = 20.0) -> torch.Tensor:
    """Anti-aliased silhouette α [H,W] (differentiable at edges) with nvdiffrast (CUDA).

    Camera optical frame → OpenGL clip space for a pinhole K (y flipped, z forward mapped to [-1,1])."""
    x, y, z = verts_cam[:, 0], verts_cam[:, 1], verts_cam[:, 2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    xc = (2 * fx / W) * x + (2 * (cx + 0.5) / W - 1) * z
    yc = -((2 * fy / H) * y + (2 * (cy + 0.5) / H - 1) * z)
    zc = (far + near) / (far - near) * z - 2 * far * near / (far - near)
    pos = torch.stack([xc, yc, zc, z], -1)[None].contiguous()
    tri = faces.to(torch.int32).contiguous()
    rast, _ = dr.rasterize(ctx, pos, tri, (H, W))
    ones = torch.ones_like(verts_cam[:, :1])[None]
    alpha, _ = dr.interpolate(ones, rast, tri)
    alpha = dr.antialias(alpha, rast, pos, tri)
    return alpha[0, ..., 0].flip(0)  # nvdiffrast's row 0 is the bottom (OpenGL)


class ObjectFitter:
    """See the module docstring. ``fit`` never raises for a bad configuration: non-finite results give
    metrics["diverged"] = True."""

    def __init__(self, config: ObjectFitConfig | None = None, device: str = "cpu"):
        self.cfg = config or ObjectFitConfig()
        self.device = torch.device(device)
        self.silhouette = "points"
        self.cancel = None  # threading.Event | None: set → FitCancelled (body_fit) at the next hypothesis/iteration
        self._mesh_cache = None  # (vertices, faces, normals, samples, sample normals) of the last object
        if self.cfg.silhouette in ("auto", "nvdiffrast") and self.device.type == "cuda":
            try:
                self._dr, self._glctx = _nvdiffrast_silhouette()
                self.silhouette = "nvdiffrast"
            except (ImportError, RuntimeError) as exc:
                if self.cfg.silhouette == "nvdiffrast":
                    raise
                log.warning("fallback: object silhouette on projected surface points (nvdiffrast unavailable: %s)", exc)
        elif self.cfg.silhouette == "nvdiffrast":
            raise RuntimeError("silhouette='nvdiffrast' needs device='cuda'")

    # ------------------------------------------------------------------------------------------
    def fit(self, obj_vertices: np.ndarray, obj_faces: np.ndarray, obj_contact: np.ndarray | None,
            human_vertices: np.ndarray, human_faces: np.ndarray, human_contact: np.ndarray, K: np.ndarray,
            image_size: tuple[int, int], object_mask: np.ndarray | None = None, person_mask: np.ndarray | None = None,
            depth: np.ndarray | None = None, init_pose=None, iters: int | None = None, box=None,
            guessed: bool = False) -> ObjectFitResult:
        """Object pose in the camera frame. ``init_pose``: None (cold: contact + ICP hypotheses, + depth ICP), a
        4x4 warm start, or a sequence of 4x4 warm candidates (each scored by the full loss; the lowest is refined;
        ``metrics["warm_start_index"]``). What ``object_mask`` is: the object's silhouette (default); with ``box``
        (x0, y0, x1, y1) px a detector's box region (the box minus the person, ``Reconstructor``), used for the box
        term (``w_box``) and the depth points; with ``guessed`` a region guessed near the contact, used for its depth
        points near the contact only. Only a silhouette gets the mask and centroid terms."""
        cfg = self.cfg
        t_start = time.perf_counter()
        H, W = image_size
        ov = np.asarray(obj_vertices, np.float64)
        of = np.asarray(obj_faces, np.int64)
        hv = np.asarray(human_vertices, np.float64)
        mc = self._mesh_cache
        if mc is not None and mc[0].shape == ov.shape and mc[1].shape == of.shape and np.array_equal(mc[0], ov) \
                and np.array_equal(mc[1], of):
            on, samp, samp_n = mc[2], mc[3], mc[4]  # same object as the previous frame (tracking)
        else:
            on = vertex_normals(ov, of).astype(np.float64)
            # surface samples (re-posed with the object)
            fid, bary = sample_surface(ov, of, cfg.surface_samples, seed=0)
            samp = (ov[of[fid]] * bary[..., None]).sum(1)
            samp_n = np.cross(ov[of[fid, 1]] - ov[of[fid, 0]], ov[of[fid, 2]] - ov[of[fid, 0]])
            samp_n /= np.maximum(np.linalg.norm(samp_n, axis=1, keepdims=True), 1e-12)
            self._mesh_cache = (ov.copy(), of.copy(), on, samp, samp_n)
        if init_pose is not None and 0 < cfg.surface_samples_warm < len(samp):
            # warm starts refine next to the optimum: a prefix of the i.i.d. area-uniform samples (itself
            # area-uniform) keeps a tracked frame's cost at the 400-sample level
            samp, samp_n = samp[:cfg.surface_samples_warm], samp_n[:cfg.surface_samples_warm]
        hn = vertex_normals(human_vertices, np.asarray(human_faces, np.int64)).astype(np.float64)
        hc_idx = _contact_set(human_contact, cfg.human_contact_thr, len(hv))
        hp = np.clip(np.asarray(human_contact, np.float64)[hc_idx], 1e-3, 1.0)
        oc_idx = _contact_set(obj_contact, cfg.object_contact_thr, len(ov))
        op = np.ones(len(oc_idx)) if obj_contact is None else np.clip(np.asarray(obj_contact)[oc_idx], 1e-3, 1.0)
        # normal filter (fixed): keep object contact vertices facing some human contact normal
        if obj_contact is not None:
            facing = (on[oc_idx] @ (-hn[hc_idx]).T > 0.0).any(1)
            if facing.sum() >= 3:
                oc_idx, op = oc_idx[facing], op[facing]
        metrics: dict = {"human_contact_vertices": int(len(hc_idx)), "object_contact_vertices": int(len(oc_idx)),
                         "silhouette": self.silhouette}

        # observations
        region = None
        mask_pts = dt_out = None
        if object_mask is not None and np.asarray(object_mask).any():
            om = np.asarray(object_mask, bool)
            allowed = om | (np.asarray(person_mask, bool) if person_mask is not None else False)
            dt_out = distance_transform_outside(allowed)
            ys, xs = np.nonzero(om)
            rng = np.random.default_rng(0)
            sel = rng.choice(len(xs), min(cfg.mask_samples, len(xs)), replace=False)
            mask_pts = np.stack([xs[sel], ys[sel]], 1).astype(np.float64)
            region = om
        obs_pts = None
        if depth is not None and region is not None:
            obs_pts = object_depth_points(depth, region, K, cfg.depth_points)
            if len(obs_pts) < 10:
                obs_pts = None
        # human vertices that can interact with the object (penetration term), and the guessed region's depth points
        radius = float(np.linalg.norm(ov - ov.mean(0), axis=1).max())
        ch = (hv[hc_idx] * hp[:, None]).sum(0) / hp.sum()  # the human contact centroid
        # a guessed region (the Reconstructor's disk around the contact) holds as much room as object: only its depth
        # points within the object's diameter + guess_depth_near of the human contact centroid count (the object
        # touches the person there), and with >= 10 of them the depth stage runs
        guessed = guessed and box is None
        if guessed and obs_pts is not None and cfg.guess_depth_near >= 0:
            near = np.linalg.norm(obs_pts - ch, axis=1) <= 2.0 * radius + cfg.guess_depth_near
            obs_pts = obs_pts[near] if near.sum() >= 10 else None
        metrics["depth_points"] = 0 if obs_pts is None else int(len(obs_pts))
        # the depth stage (depth ICP hypotheses, strong depth + free-space terms) runs with a given mask, a detector's
        # box, or a guessed region's depth points near the contact (guess_depth_near < 0: the legacy weak term)
        depth_stage = obs_pts is not None and (not guessed or cfg.guess_depth_near >= 0)
        metrics["depth_stage"] = bool(depth_stage)
        w_box = (cfg.w_box_depth if depth_stage else cfg.w_box) if box is not None else 0.0
        silhouette = box is None and not guessed  # object_mask is the object's silhouette: mask + centroid terms
        w_mask, w_centroid = (cfg.w_mask, cfg.w_centroid) if silhouette else (0.0, 0.0)

        assoc: dict = {}  # the nearest-neighbour associations and the samples [P,3] they were found at
        reassoc = cfg.reassoc_warm_m if init_pose is not None else 0.0
        counts = {"loss_evaluations": 0, "associations": 0}

        def loss_terms(R, t, torch_mode=True):
            """All loss terms for one pose (torch tensors R [3,3], t [3])."""
            S = samp_t @ R.T + t
            Sn = samp_n_t @ R.T
            R_np, t_np = R.detach().cpu().numpy().astype(np.float64), t.detach().cpu().numpy().astype(np.float64)
            S_np = S.detach().cpu().numpy()
            # associations found at this evaluation (new) or kept from an earlier one (warm: cfg.reassoc_warm_m)
            new = not assoc or reassoc <= 0 or np.abs(S_np - assoc["S"]).max() > reassoc
            if new:
                assoc.clear()
                assoc["S"] = S_np
            counts["loss_evaluations"] += 1
            counts["associations"] += int(new)
            out = {}
            z = S[:, 2].clamp_min(0.05)
            uv = torch.stack([Kt[0, 0] * S[:, 0] / z + Kt[0, 2], Kt[1, 1] * S[:, 1] / z + Kt[1, 2]], -1)
            # (a box or a guessed region zeroes both weights: not computed)
            if mask_t is not None and w_mask > 0:
                if self.silhouette == "nvdiffrast":
                    Vc = ov_t @ R.T + t
                    a = soft_silhouette_nvdiffrast(self._dr, self._glctx, Vc, of_t, Kt, H, W)
                    inter = (a * mask_img).sum()
                    out["mask"] = 1 - inter / (a.sum() + mask_img.sum() - inter).clamp_min(1.0)
                else:
                    g = torch.stack([uv[:, 0] / (W - 1) * 2 - 1, uv[:, 1] / (H - 1) * 2 - 1], -1)
                    outside = torch.nn.functional.grid_sample(dt_t[None, None], g[None, None], align_corners=True,
                                                              padding_mode="border")[0, 0, 0]
                    # nearest projected sample per mask pixel: argmin without grad, then a differentiable
                    # gather (same value and gradient as cdist(...).min(1), without cdist's backward)
                    if new:
                        assoc["mask"] = _nn(mask_np, uv.detach())
                    nn_c = assoc["mask"]
                    cover = (mask_t - uv[nn_c]).norm(dim=-1)
                    out["mask"] = (outside.mean() + cover.mean()) / diag
            if mask_t is not None and w_centroid > 0:
                out["centroid"] = (uv.mean(0) - mask_t.mean(0)).norm() / diag
            if w_box > 0 and dt_t is not None:  # dt_t: distances to object_mask ∪ person = box ∪ person
                g = torch.stack([uv[:, 0] / (W - 1) * 2 - 1, uv[:, 1] / (H - 1) * 2 - 1], -1)
                outside_box = torch.nn.functional.grid_sample(dt_t[None, None], g[None, None], align_corners=True,
                                                              padding_mode="border")[0, 0, 0].mean()
                lo, hi = uv.min(0).values, uv.max(0).values
                short = (torch.relu(lo[0] - box[0]) + torch.relu(lo[1] - box[1]) + torch.relu(box[2] - 1 - hi[0])
                         + torch.relu(box[3] - 1 - hi[1]))
                out["box"] = (outside_box + short / 4) / diag
            if obj_contact is None:  # only where the human touches: human contact → object surface
                # trimmed: the nearer half of the human contact vertices (a grasp touches with part of the
                # hand; the back of the hand must not drag the object into it)
                if new:
                    assoc["contact"] = _nn(hc_np, S.detach())
                nn_h = assoc["contact"]
                c_all = (hc_t - S[nn_h]).norm(dim=-1) * hp_t / hp_t.mean()
                k = max(1, len(c_all) // 2)
                out["contact"] = torch.topk(c_all, k, largest=False).values.mean()
            else:
                Oc = ov_oc_t @ R.T + t
                # nearest pairs both ways (k-d trees, no grad), distances differentiable
                if new:
                    Oc_np = Oc.detach().cpu().numpy()
                    assoc["contact"] = (torch.as_tensor(hc_tree.query(Oc_np)[1], device=dev), _nn(hc_np, Oc_np))
                nn_o, nn_h = assoc["contact"]
                c1 = ((Oc - hc_t[nn_o]).norm(dim=-1) * op_t).sum() / op_t.sum()
                c2 = ((Oc[nn_h] - hc_t).norm(dim=-1) * hp_t).sum() / hp_t.sum()
                out["contact"] = 0.5 * (c1 + c2)
            if obs_t is not None:
                if new:
                    with torch.no_grad():  # only camera-facing samples can be seen by the depth camera
                        front = torch.nonzero((Sn * S).sum(-1) <= 0)[:, 0]
                    if len(front):  # nearest camera-facing sample (all samples when none faces the camera)
                        assoc["depth"] = front[_nn(obs_np, S.detach()[front])]
                    else:
                        assoc["depth"] = _nn(obs_np, S.detach())
                nn = assoc["depth"]
                res = ((obs_t - S[nn]) * Sn[nn]).sum(-1)
                if depth_stage:
                    c = cfg.depth_scale
                    out["depth"] = torch.log1p((res / c) ** 2).mean()
                    # free space: no object point may lie in front of the observed surface on its ray
                    # (occluders such as the hand only make the observed depth smaller: occlusion-safe)
                    with torch.no_grad():
                        ui = uv[:, 0].round().long()
                        vi = uv[:, 1].round().long()
                        inside = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
                        d_obs = depth_t[vi.clamp(0, H - 1), ui.clamp(0, W - 1)]
                        valid = (inside & (d_obs > 0)).to(DT)
                    viol = torch.relu(d_obs - cfg.free_margin - S[:, 2]) * valid
                    out["free"] = torch.log1p((viol / c) ** 2).mean()
                else:
                    c = cfg.depth_trunc
                    out["depth"] = 0.1 * torch.log1p((res / c) ** 2).mean()
            # penetration: object samples inside the body, body vertices inside the object. Only body vertices
            # within 5 cm of a sample count either way: those 5 cm or more from the samples' bounding box (object
            # frame) are skipped — exactly the same terms (the box is tighter than the samples' bounding sphere for
            # flat and long objects; k-d trees on the rest: a [400×4000] cdist + argmin was the slowest step)
            if hnear_t is not None:
                if new:
                    q = (hnear64 - t_np) @ R_np  # body vertices in the object frame
                    sel = np.nonzero(((q - np.clip(q, samp_lo, samp_hi)) ** 2).sum(1) < 0.05 ** 2)[0]
                    pen = {"sel": sel}
                    if len(sel):
                        # object samples behind the tangent plane of their nearest body vertex (within 5 cm of it; a
                        # bounded search: the samples farther from the body, most of a large object, end early)
                        d_b, i_b = cKDTree(hnear64[sel]).query(S_np, distance_upper_bound=0.05 + 1e-4)
                        close = np.nonzero(np.isfinite(d_b))[0]
                        pen["close"] = (torch.as_tensor(close, device=dev),
                                        torch.as_tensor(sel[i_b[close]], device=dev))
                        # body vertices inside the object: inside only when behind the tangent planes of all 4
                        # nearest samples (with one, a sole above a thin board's top took an edge sample's sideways
                        # plane and counted as 5 cm inside: the ground-truth skateboard pose scored 30x the fitted one)
                        pen["nn2"] = torch.as_tensor(cKDTree(S_np).query(hnear64[sel], k=4)[1], device=dev)  # [n,4]
                    assoc["pen"] = pen
                pen = assoc["pen"]
                sel = pen["sel"]
                pen1 = pen2 = S.sum() * 0.0
                if len(sel):
                    c_t, nn = pen["close"]
                    if len(c_t):
                        Sc = S[c_t]
                        with torch.no_grad():
                            dh = (Sc - hnear_t[nn]).norm(dim=-1)
                        sd = ((Sc - hnear_t[nn]) * hnear_n_t[nn]).sum(-1)
                        pen1 = (torch.relu(-sd - cfg.pen_margin) * (dh < 0.05)).pow(2).sum() / 20.0  # ~ a 20-sample patch
                    # body vertices inside the object
                    hsel_t = hnear_t[torch.as_tensor(sel, device=dev)]
                    nn2 = pen["nn2"]
                    with torch.no_grad():
                        d2 = (hsel_t - S[nn2[:, 0]]).norm(dim=-1)
                    sd2 = ((hsel_t[:, None] - S[nn2]) * Sn[nn2]).sum(-1).amax(1)
                    pen2 = (torch.relu(-sd2 - cfg.pen_margin) * (d2 < 0.05)).pow(2).sum() / 20.0
                out["pen"] = pen1 + pen2
            return out

        def total(terms):
            w = {"mask": w_mask, "centroid": w_centroid, "box": w_box,
                 "contact": cfg.w_contact_depth if depth_stage else cfg.w_contact,
                 "depth": cfg.w_depth_obs if depth_stage else cfg.w_depth, "free": cfg.w_free,
                 "pen": cfg.w_pen_depth if depth_stage else cfg.w_pen}
            return sum(w[k] * v for k, v in terms.items())

        from scipy.spatial import cKDTree

        dev = self.device
        Kt = torch.tensor(K, dtype=DT, device=dev)
        diag = float(np.hypot(H, W))
        samp_t = torch.tensor(samp, dtype=DT, device=dev)
        samp_n_t = torch.tensor(samp_n, dtype=DT, device=dev)
        ov_t = torch.tensor(ov, dtype=DT, device=dev)
        of_t = torch.tensor(of, device=dev)
        oc_t = torch.tensor(oc_idx, device=dev)
        samp_lo, samp_hi = samp.min(0) - 1e-3, samp.max(0) + 1e-3  # (a rounding margin)
        hc_np = hv[hc_idx].astype(np.float32)
        hc_tree = cKDTree(hc_np)
        mask_np = mask_pts.astype(np.float32) if mask_pts is not None else None
        obs_np = obs_pts.astype(np.float32) if obs_pts is not None else None
        ov_oc_t = ov_t[oc_t]
        op_t = torch.tensor(op, dtype=DT, device=dev)
        hc_t = torch.tensor(hv[hc_idx], dtype=DT, device=dev)
        hp_t = torch.tensor(hp, dtype=DT, device=dev)
        mask_t = torch.tensor(mask_pts, dtype=DT, device=dev) if mask_pts is not None else None
        dt_t = torch.tensor(dt_out, dtype=DT, device=dev) if dt_out is not None else None
        mask_img = torch.tensor(region, dtype=DT, device=dev) if region is not None else None
        obs_t = torch.tensor(obs_pts, dtype=DT, device=dev) if obs_pts is not None else None
        depth_t = None
        if depth_stage:  # 3×3 minimum of the valid depth: rim samples rounding onto a background pixel are no violation
            import cv2

            # invalid pixels take a finite sentinel: cv2.erode turns inf into FLT_MAX (finite), which then read
            # as a valid depth of 3.4e38 m and made the free-space term infinite (hypotheses dropped, refinements aborted)
            big = np.float32(1e6)
            dz = np.asarray(depth, np.float32).copy()
            dz[~(dz > 0) | ~np.isfinite(dz)] = big
            dz = cv2.erode(dz, np.ones((3, 3), np.uint8))
            dz[dz >= big] = 0.0
            depth_t = torch.tensor(dz, device=dev)

        # ---------------- initialisation
        from scipy.spatial import cKDTree

        hnear_t = hnear_n_t = hnear64 = None

        def set_near(centre):
            nonlocal hnear_t, hnear_n_t, hnear64
            assoc.clear()  # the penetration terms' body vertices change
            near = np.nonzero(np.linalg.norm(hv - centre, axis=1) < radius + 0.25)[0]
            if len(near) > 4000:
                near = near[np.random.default_rng(0).choice(len(near), 4000, replace=False)]
            if len(near):
                hnear_t = torch.tensor(hv[near], dtype=DT, device=dev)
                hnear_n_t = torch.tensor(hn[near], dtype=DT, device=dev)
                hnear64 = hv[near]

        def score(R, t) -> float:
            with torch.no_grad():
                return float(total(loss_terms(torch.tensor(R, dtype=DT, device=dev), torch.tensor(t, dtype=DT, device=dev))))

        starts: list[tuple[np.ndarray, np.ndarray]] = []
        if init_pose is not None:
            # one warm pose, or several candidates (the Tracker's: the previous pose carried along with the body's
            # contact region, and the previous pose as it was): the one of lowest loss is refined. (Re-aligning each
            # by the cold start's contact ICP was tried: never the lowest loss on the moving synthetic scenes nor on
            # a real photo, so not done.)
            cands_w = []
            for k, P in enumerate([init_pose] if np.ndim(init_pose) == 2 else list(init_pose)):
                R0, t0 = np.asarray(P)[:3, :3].astype(np.float64), np.asarray(P)[:3, 3].astype(np.float64)
                set_near(t0)
                L = score(R0, t0)
                cands_w.append((L if np.isfinite(L) else np.inf, k, R0, t0))
            L, k, R0, t0 = min(cands_w, key=lambda c: (c[0], c[1]))
            if k != len(cands_w) - 1:  # the last scored candidate's near-body set is the current one
                set_near(t0)
            starts = [(R0, t0)]
            metrics["init"] = "warm"
            metrics["warm_start_index"] = int(k)
        else:
            set_near(ch)
            src, src_n = ov[oc_idx], on[oc_idx]
            co = (src * op[:, None]).sum(0) / op.sum()
            cands = []  # (loss, R, t)
            for Rh in cube_rotations():
                check_cancel(self.cancel, "object fit")
                th = ch - Rh @ co  # contact centroids coincide (fixed official init)
                R, t, rms = icp_normals(src, src_n, hv[hc_idx], -hn[hc_idx], Rh, th, cfg.icp_iters,
                                        cfg.icp_normal_weight, op)
                L = score(R, t)
                if np.isfinite(L):
                    cands.append((L, R, t))
            metrics["init"] = "contact+icp(24 hypotheses)"
            if depth_stage:
                # the visible surface is observed: point-to-plane ICP of the object's camera-facing samples
                # onto the masked depth points from many rotations; scored by the full loss
                # (depth + free space + silhouette + contact + penetration)
                c_obs = obs_pts.mean(0)
                hyps = rotation_hypotheses(cfg.depth_hypotheses)
                for Rh in hyps:
                    check_cancel(self.cancel, "object fit")
                    th = c_obs - Rh @ samp.mean(0)
                    for _ in range(2):  # place the camera-facing part's centroid on the observed centroid
                        S = samp @ Rh.T + th
                        vis = ((samp_n @ Rh.T) * S).sum(1) < 0
                        if vis.any():
                            th = th + c_obs - S[vis].mean(0)
                    R, t, _ = icp_depth(obs_pts, samp, samp_n, Rh, th, cfg.depth_icp_iters, cfg.depth_scale)
                    L = score(R, t)
                    if np.isfinite(L):
                        cands.append((L, R, t))
                metrics["init"] = f"contact+icp(24) + depth icp({len(hyps)}) hypotheses"
            if not cands:
                return self._diverged(ov, metrics, t_start)
            cands.sort(key=lambda c: c[0])
            metrics["init_loss"] = float(cands[0][0])
            starts = [(R, t) for _, R, t in cands[:max(1, cfg.refine_top if depth_stage else 1)]]

        # ---------------- Adam refinement (from each start; the lowest final loss wins)
        n_iter = int(iters if iters is not None else (cfg.iters_warm if init_pose is not None else cfg.iters))
        sc = cfg.warm_lr_scale if init_pose is not None else 1.0  # Adam's first steps are ~lr: small when warm
        best = None
        it_total = 0
        for R0, t0 in starts:
            r = self._refine(loss_terms, total, R0, t0, n_iter, sc, metrics,
                             patience=cfg.early_stop_warm if init_pose is not None else cfg.early_stop)
            it_total += r[3]
            if np.isfinite(r[0]) and (best is None or r[0] < best[0]):
                best = r
        if best is None:
            return self._diverged(ov, metrics, t_start)
        best_L, R, t, _, last_terms = best
        if not (np.isfinite(R).all() and np.isfinite(t).all()):
            return self._diverged(ov, metrics, t_start)
        if not depth_stage and cfg.depenetrate_iters > 0:
            t, pushed = _push_out(ov @ R.T, t, hv, hn, cfg.pen_margin, cfg.depenetrate_iters)
            if pushed > 0:
                metrics["depenetrated_m"] = pushed
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = R, t
        verts = ov @ R.T + t
        metrics.update({"iterations": it_total, "loss": best_L, **counts,
                        **{f"loss_{k}": v for k, v in last_terms.items()},
                        "fit_ms": 1e3 * (time.perf_counter() - t_start)})
        return ObjectFitResult(pose, verts.astype(np.float32), metrics)

    def _refine(self, loss_terms, total, R0, t0, n_iter: int, lr_scale: float, metrics: dict,
                patience: int | None = None):
        """Adam over (6-D rotation, translation) from R0, t0 with early stop → (loss, R, t, iterations, terms)."""
        cfg = self.cfg
        dev = self.device
        d6 = matrix_to_sixd(torch.tensor(R0, dtype=DT, device=dev)).clone().requires_grad_(True)
        tt = torch.tensor(t0, dtype=DT, device=dev).clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [d6], "lr": cfg.lr_rot * lr_scale},
                                {"params": [tt], "lr": cfg.lr_trans * lr_scale}])
        best_L, best_state, stall = np.inf, (d6.detach().clone(), tt.detach().clone()), 0
        it_done = 0
        last_terms: dict = {}
        for it in range(n_iter):
            check_cancel(self.cancel, "object fit")
            opt.zero_grad()
            terms = loss_terms(sixd_to_matrix(d6), tt)
            L = total(terms)
            if not torch.isfinite(L):
                metrics["nonfinite_at"] = it
                break
            Lf = float(L.detach())
            if Lf < best_L * (1 - 1e-4):
                best_L, best_state, stall = Lf, (d6.detach().clone(), tt.detach().clone()), 0
                last_terms = {k: float(v.detach()) for k, v in terms.items()}
            else:
                stall += 1
                if stall >= (cfg.early_stop if patience is None else patience):
                    break
            L.backward()
            opt.step()
            it_done = it + 1
        with torch.no_grad():
            R = sixd_to_matrix(best_state[0]).cpu().numpy().astype(np.float64)
            t = best_state[1].cpu().numpy().astype(np.float64)
        return best_L, R, t, it_done, last_terms

    def _diverged(self, ov, metrics, t_start) -> ObjectFitResult:
        metrics.update({"diverged": True, "fit_ms": 1e3 * (time.perf_counter() - t_start)})
        return ObjectFitResult(np.full((4, 4), np.nan), np.full(ov.shape, np.nan, np.float32), metrics)
