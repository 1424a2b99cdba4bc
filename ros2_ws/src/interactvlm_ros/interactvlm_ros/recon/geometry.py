"""Small geometry helpers shared by the body and object fits (torch + numpy).

Hand-written because they are a few lines each and no dependency we already have exposes them with
the conventions we need (column-vector rotations, 6-D rotation as the first two *columns*, Umeyama
without scale/reflection). ``roma`` (an Anny dependency) has equivalents for some; we keep ours so
the object fit does not depend on Anny being installed.
"""
from __future__ import annotations

import numpy as np
import torch


def _skew(v: torch.Tensor) -> torch.Tensor:
    """[...,3] → the cross-product matrices [...,3,3], built by one stack (in-place writes of the 6 entries made the
    graph several times slower to run and differentiate)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape[:-1] + (3, 3))


def rotvec_to_matrix(rv: torch.Tensor) -> torch.Tensor:
    """Rodrigues, differentiable at 0. rv [...,3] → R [...,3,3] (column-vector convention)."""
    theta2 = (rv * rv).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    K = _skew(rv / theta)
    s = torch.sin(theta)[..., None]
    c = torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=rv.dtype, device=rv.device).expand(K.shape)
    R = eye + s * K + (1 - c) * (K @ K)
    # small angles: first-order form (avoids 0/0 in k)
    small = (theta2[..., 0] < 1e-10)[..., None, None]
    return torch.where(small, eye + _skew(rv), R)


def sixd_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6-D rotation (Zhou et al. 2019): d6 [...,6] = first two columns (a1, a2) → R [...,3,3] by Gram-Schmidt.

    (The official code interleaves the two columns in its storage; the representation is the same.)"""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_sixd(R: torch.Tensor) -> torch.Tensor:
    """R [...,3,3] → [...,6] (first two columns)."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rigid fit (no scale, no reflection): R, t minimising Σ w‖R·src + t − dst‖². src/dst [n,3]."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if w is None else np.asarray(w, np.float64)
    w = w / max(w.sum(), 1e-12)
    ms, md = w @ src, w @ dst
    C = ((dst - md) * w[:, None]).T @ (src - ms)
    U, _, Vt = np.linalg.svd(C)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ D @ Vt
    return R, md - R @ ms


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Geodesic angle between two rotations (degrees)."""
    c = (np.trace(np.asarray(Ra).T @ np.asarray(Rb)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0):
    """Area-uniform surface samples as (face ids [n], barycentrics [n,3]) so they can be re-posed with the mesh."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    rng = np.random.default_rng(seed)
    p = area / area.sum() if area.sum() > 0 else None
    fid = rng.choice(len(f), size=n, p=p)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return fid, bary.astype(np.float32)


def is_closed(faces: np.ndarray, n_vertices: int, vertices: np.ndarray | None = None) -> bool:
    """True when every edge of the mesh is shared by exactly two faces (a closed surface: its normals have one outward
    side). False for an open mesh — a single-sided scan, a sheet modelled as one surface, a mesh with holes —, whose
    normal sign is the winding's, arbitrary, and for an edge shared by more than two faces.

    ``vertices`` [N,3]: edges are compared by their corners' positions, not their indices — an STL file (every face
    with its own three vertices) or an OBJ with UV seams (a vertex repeated per texture coordinate), loaded unprocessed,
    is closed when its surface is."""
    f = np.asarray(faces, np.int64)
    if len(f) < 4:
        return False
    if vertices is not None:  # weld vertices at the same position (exactly: exporters repeat the same numbers)
        _, weld = np.unique(np.asarray(vertices), axis=0, return_inverse=True)
        weld = weld.reshape(-1)
        f, n_vertices = weld[f], int(weld.max()) + 1
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e.sort(1)
    keys = np.sort(e[:, 0] * (int(n_vertices) + 1) + e[:, 1])  # each undirected edge as one integer
    # every edge exactly twice (pairs equal, and no edge spilling into the next pair)
    return bool(len(keys) % 2 == 0 and (keys[0::2] == keys[1::2]).all() and (keys[2::2] != keys[1:-1:2]).all())


# ------------------------------------------------------------------ per-frame caches (warm-start speed)
_INCIDENCE: list = []  # [(faces copy, n vertices, sparse [N,F] vertex-face incidence)], most recent first


def _incidence(f: np.ndarray, n: int):
    for fc, nc, A in _INCIDENCE:
        if nc == n and fc.shape == f.shape and (fc is f or np.array_equal(fc, f)):
            return A
    from scipy.sparse import csr_matrix

    F = len(f)
    A = csr_matrix((np.ones(3 * F), (f.T.reshape(-1), np.tile(np.arange(F), 3))), shape=(n, F))
    _INCIDENCE.insert(0, (f.copy(), n, A))
    del _INCIDENCE[4:]  # body + a few object meshes
    return A


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``interactvlm_ros.assets.vertex_normals`` with the mesh's vertex-face incidence matrix cached (the
    13.7k-vertex body is re-normalised every frame). The last result is reused while the *same vertex array
    object* is passed again (object fit and output metrics of one frame); callers must not modify it in place."""
    from interactvlm_ros.assets import vertex_normals as _vertex_normals

    f = np.asarray(faces, np.int64)
    if _LAST_NORMALS and _LAST_NORMALS[0] is vertices and np.array_equal(_LAST_NORMALS[1], f):
        return _LAST_NORMALS[2].copy()
    n = _vertex_normals(vertices, f, incidence=_incidence(f, len(vertices)))
    _LAST_NORMALS[:] = [vertices, f.copy(), n]
    return n.copy()


_LAST_NORMALS: list = []


def nearest_index(query: np.ndarray, points) -> torch.Tensor:
    """Index of the nearest of ``points`` [P,D] (tensor or array) for each ``query`` row [Q,D], as a tensor on
    ``points``' device (k-d tree; the argmin of a cdist matrix is several times slower on CPU)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
    dev = points.device if isinstance(points, torch.Tensor) else None
    return torch.as_tensor(cKDTree(pts).query(query)[1], device=dev)


_LAST_BOUNDED: list = []  # [human array, object array, bound, (d, nn)] of the last call


def bounded_nearest(points: np.ndarray, query: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of ``points`` for each ``query`` row, searched only up to ``bound``: (d [Q], idx [Q]) with
    d = inf and idx = len(points) beyond it (``cKDTree.query(..., distance_upper_bound=bound)``). Only the
    points within (query radius + bound) of the query centroid can be a hit, so the tree is built on those
    (an object next to a 13.7k-vertex body: a few hundred). The last result is reused while the *same
    array objects* and bound are passed again (penetration and free grasp points of one frame)."""
    from scipy.spatial import cKDTree

    if _LAST_BOUNDED and _LAST_BOUNDED[0] is points and _LAST_BOUNDED[1] is query and _LAST_BOUNDED[2] == bound:
        d, nn = _LAST_BOUNDED[3]
        return d.copy(), nn.copy()
    P = np.asarray(points, np.float64)
    Q = np.asarray(query, np.float64)
    c = Q.mean(0)
    r = float(np.sqrt(((Q - c) ** 2).sum(1).max())) if len(Q) else 0.0
    sel = np.nonzero(((P - c) ** 2).sum(1) <= (r + bound) ** 2 * (1 + 1e-9) + 1e-12)[0]
    d = np.full(len(Q), np.inf)
    nn = np.full(len(Q), len(P), np.int64)
    if len(sel) and len(Q):
        ds, ns = cKDTree(P[sel]).query(Q, distance_upper_bound=bound)
        ok = np.isfinite(ds)
        d[ok], nn[ok] = ds[ok], sel[ns[ok]]
    _LAST_BOUNDED[:] = [points, query, bound, (d, nn)]
    return d.copy(), nn.copy()
