"""Reconstruction quality numbers: contact distance, penetration, errors against ground truth (synthetic).

Rotation errors respect the object's symmetry (``symmetry_rotation_error``): a box is the same after a
180° flip about any of its axes, a cylinder after any turn about its axis, a sphere after any rotation —
reporting the raw angle would call a perfect fit 180° wrong.
"""
from __future__ import annotations

import numpy as np

from interactvlm_ros.recon.geometry import bounded_nearest, rotation_angle_deg, vertex_normals


def contact_distance(obj_vertices, obj_faces, human_vertices, human_contact, thr_h: float = 0.5,
                     object_pose: np.ndarray | None = None, max_points: int | None = None) -> float:
    """Mean distance (m) from the human vertices in contact (p > thr_h) to the object *surface* (the
    issue's definition; nan when no vertex is in contact).

    ``object_pose`` [4,4] (camera ← object): then ``obj_vertices`` are in the object frame and the human
    points are moved into it, so a tracked object reuses its surface index (trimesh's closest point on
    triangles, an R-tree over the faces) from ``outputs.object_surface`` instead of rebuilding it every frame.
    ``max_points``: average over an evenly strided subset of at most this many contact vertices (trimesh
    queries point by point, ~0.1 ms each: the per-frame figure of the node; benchmarks use all)."""
    import trimesh

    hv = np.asarray(human_vertices, np.float64)
    sel = np.asarray(human_contact) > thr_h
    if not sel.any():
        return float("nan")
    pts = hv[sel]
    if max_points is not None and len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(np.int64)]
    if object_pose is not None:
        from interactvlm_ros.recon.outputs import object_surface

        P = np.asarray(object_pose, np.float64)
        pts = (pts - P[:3, 3]) @ P[:3, :3]  # camera → object frame (rotation only: the pose is rigid)
        surface = object_surface(obj_vertices, obj_faces)
    else:
        surface = trimesh.Trimesh(np.asarray(obj_vertices, np.float64), np.asarray(obj_faces, np.int64), process=False)
    _, d, _ = surface.nearest.on_surface(pts)
    return float(np.mean(d))


def signed_distance_near_body(points, human_vertices, human_normals, near: float = 0.05):
    """Local signed distance of ``points`` [Q,3] to the body: along the outward normal of each point's nearest body
    vertex (negative = inside), for points within ``near`` of a vertex; nan beyond. -> (sd [Q], nearest index [Q]).

    Exact enough for the few cm that matter here and robust to Anny not being watertight; used by
    :func:`penetration_depth` and by the object fit's push-out."""
    d, nn = bounded_nearest(human_vertices, points, near)  # inf (nn = N) beyond ``near``
    m = d < near
    sd = np.full(len(d), np.nan)
    if m.any():
        p = np.asarray(points, np.float64)[m]
        hv = np.asarray(human_vertices, np.float64)
        hn = np.asarray(human_normals, np.float64)
        sd[m] = ((p - hv[nn[m]]) * hn[nn[m]]).sum(1)
    return sd, nn


def penetration_depth(obj_vertices, obj_faces, human_vertices, human_faces, near: float = 0.05) -> float:
    """Max depth (m) of object vertices inside the body (0 when none): a vertex counts as inside when it lies
    behind the outward normal of its nearest body vertex and within ``near`` of it
    (:func:`signed_distance_near_body`)."""
    hn = vertex_normals(human_vertices, human_faces)
    sd, _ = signed_distance_near_body(obj_vertices, human_vertices, hn, near)
    inside = sd < 0  # nan (beyond ``near``) is not inside
    return float(-sd[inside].min()) if inside.any() else 0.0


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(max(cKDTree(b).query(a)[0].mean(), cKDTree(a).query(b)[0].mean()))


def symmetries(vertices: np.ndarray, tol: float = 0.01) -> dict:
    """Rotational symmetries of a mesh (about its vertex centroid, principal axes): ``{"continuous": [axes],
    "discrete": [3x3 rotations incl. identity]}`` — n-fold turns (n = 2…6) about each principal axis.
    tol: chamfer tolerance as a fraction of the size, plus a quarter of the median vertex spacing: a rotated vertex
    set lands between the original vertices, so a tessellated sphere's chamfer is ~0.4 spacings (1.5 % of its size
    for the 2082-vertex ball), which a size-only tolerance read as "not symmetric" (ball rotation errors of 90-160°
    in the held-out table)."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    v = v - v.mean(0)
    size = float((v.max(0) - v.min(0)).max())
    spacing = float(np.median(cKDTree(v).query(v, k=2)[0][:, 1])) if len(v) > 1 else 0.0
    tol_abs = tol * size + 0.25 * spacing
    _, _, Vt = np.linalg.svd(v, full_matrices=False)
    axes = Vt  # rows: principal axes
    from scipy.spatial.transform import Rotation

    cont, disc = [], [np.eye(3)]
    for a in axes:
        if all(_chamfer(v @ Rotation.from_rotvec(a * ang).as_matrix().T, v) < tol_abs for ang in (0.3, 1.1, 2.2)):
            cont.append(a)
            continue
        for n in (2, 3, 4, 5, 6):  # n-fold about the axis: a half-turn flip, a three-legged stool (120°), ...
            if _chamfer(v @ Rotation.from_rotvec(a * 2 * np.pi / n).as_matrix().T, v) < tol_abs:
                for k in range(1, n):
                    Rk = Rotation.from_rotvec(a * 2 * np.pi * k / n).as_matrix()
                    if all(rotation_angle_deg(Rk, S) > 1e-3 for S in disc):
                        disc.append(Rk)
    # closed under composition: a square plate's quarter turn and half-turn flips also give its diagonal flips, a
    # hexagonal prism's sixth turns and flips 12 rotations (without them, a perfect fit modulo symmetry read 60°);
    # bounded (120 > the 24 of a cube) against turns about axes that are not exactly perpendicular
    grew = True
    while grew and len(disc) < 120:
        grew = False
        for A in list(disc):
            for B in list(disc):
                C = A @ B
                if len(disc) < 120 and all(rotation_angle_deg(C, S) > 1e-3 for S in disc):
                    disc.append(C)
                    grew = True
    return {"continuous": cont, "discrete": disc}


def symmetry_rotation_error(R_est: np.ndarray, R_gt: np.ndarray, sym: dict) -> float:
    """Rotation error (degrees) modulo the object's symmetries; 0 for a sphere-like object."""
    cont = sym["continuous"]
    if len(cont) >= 2:
        return 0.0
    if len(cont) == 1:  # only the axis direction matters (and its sign if a flip is a symmetry)
        a = np.asarray(cont[0])
        c = float(np.clip((R_est @ a) @ (R_gt @ a), -1, 1))
        ang = np.degrees(np.arccos(c))
        return float(min(ang, 180 - ang)) if len(sym["discrete"]) > 1 else float(ang)
    return float(min(rotation_angle_deg(R_est @ S, R_gt) for S in sym["discrete"]))


def vertex_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-vertex distance (m), camera frame, no alignment."""
    return float(np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=1).mean())
