"""Independent CPU backend: per-pixel ray casting with Embree (trimesh + embreex).

One ray per pixel centre of the PyTorch3D FoV camera (``views``); the first hit gives the face id, and the
barycentrics of the hit point (true 3D barycentrics = PyTorch3D's perspective-correct ones). Used to
cross-check the rasterizer in the tests and as a CPU fallback. Shapes as ``raster_torch.rasterize_view``.
"""
from __future__ import annotations

import math

import numpy as np

from ..views import ViewSpec, view_transform


def available() -> tuple[bool, str]:
    try:
        import embreex  # noqa: F401
        from trimesh.ray.ray_pyembree import RayMeshIntersector  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"embree ray casting unavailable ({exc}); pip install embreex trimesh"
    return True, "embreex"


def pixel_rays(view: ViewSpec, size: int, fov_deg: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """World-space origin [3] and unit directions [S·S,3] (row-major pixels) of a view's pixel centres."""
    R, T = view_transform(view)
    origin = -R @ T
    ndc = 1.0 - (2.0 * np.arange(size) + 1.0) / size
    xs, ys = np.meshgrid(ndc, ndc)  # xs along columns, ys along rows
    t = math.tan(math.radians(fov_deg) / 2.0)
    d_view = np.stack([xs * t, ys * t, np.ones_like(xs)], -1).reshape(-1, 3)
    d = d_view @ R.T  # view → world (X = R·X_view for directions)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return origin, d


def raycast_view(vertices: np.ndarray, faces: np.ndarray, view: ViewSpec, size: int, mesh=None, intersector=None):
    """→ face_ids int64 [S,S] (−1 bg), bary float32 [S,S,3] (−1 bg), depth float32 [S,S] (view z, −1 bg)."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector
    from trimesh.triangles import points_to_barycentric

    if mesh is None:
        mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    if intersector is None:
        intersector = RayMeshIntersector(mesh)
    origin, dirs = pixel_rays(view, size)
    fid, rid, loc = intersector.intersects_id(np.tile(origin, (len(dirs), 1)), dirs, multiple_hits=False,
                                              return_locations=True)
    n = size * size
    face_ids = np.full(n, -1, np.int64)
    bary = np.full((n, 3), -1.0, np.float32)
    depth = np.full(n, -1.0, np.float32)
    if len(fid):
        face_ids[rid] = fid
        b = np.clip(points_to_barycentric(mesh.triangles[fid], loc), 0.0, 1.0)
        bary[rid] = (b / np.maximum(b.sum(1, keepdims=True), 1e-12)).astype(np.float32)
        R, T = view_transform(view)
        depth[rid] = (loc @ R + T)[:, 2]
    return face_ids.reshape(size, size), bary.reshape(size, size, 3), depth.reshape(size, size)
