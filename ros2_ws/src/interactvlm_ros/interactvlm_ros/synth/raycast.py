"""Exact per-pixel (face, barycentric) buffers by ray casting with Embree (trimesh + embreex), CPU.

Used by the generator for (a) the camera image (pinhole K, OpenCV frame: x right, y down, z forward)
and (b) the GT-mask lookup tables on the official views when the core renderer (``render``/``assets``)
is not importable. Hand-written on top of trimesh's Embree intersector because no installed library
produces PyTorch3D-convention FoV cameras with face/barycentric buffers on a CPU; ray casting gives the
true 3D barycentrics (= PyTorch3D's perspective-correct ones).

Official views (spec 3.1): camera centre ``C = dist·(cos e sin a, sin e, cos e cos a)``, look-at the
origin with up +y, row-vector world→view ``X_view = X·R + T``, ``T = −Rᵀ… `` then ``T[y] += y_off``,
``T[x] += x_off``; vertical FoV 60°, aspect 1, NDC +X left / +Y up, pixel (0,0) top-left.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OfficialView:
    name: str
    dist: float
    elev: float
    azim: float
    x_off: float = 0.0
    y_off: float = 0.0


# spec 3.2 / 3.3 (order = SAM stacking and lifting order)
HUMAN_VIEWS = (
    OfficialView("topfront", 2.0, 45, 315), OfficialView("bottomfront", 2.0, 315, 315, 0, 0.3),
    OfficialView("topback", 2.0, 45, 135), OfficialView("bottomback", 2.0, 315, 135, 0, 0.3),
)
OBJECT_VIEWS = (  # demo objects: rendered at 1.5 (camera code encodes 2.0)
    OfficialView("frontleft", 1.5, 45, 315), OfficialView("frontright", 1.5, 45, 45),
    OfficialView("backleft", 1.5, 330, 135), OfficialView("backright", 1.5, 330, 225),
)


def look_at(dist: float, elev: float, azim: float) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D ``look_at_view_transform`` for one camera: (R [3,3], T [3]) with X_view = X·R + T."""
    e, a = np.deg2rad(elev), np.deg2rad(azim)
    C = dist * np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
    z = -C / np.linalg.norm(C)
    up = np.array([0.0, 1.0, 0.0])
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-8:  # looking straight up/down
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)  # columns = camera axes
    T = -R.T @ C
    return R, T


@dataclass
class RayBuffers:
    """face_ids [H,W] int64 (−1 bg), vertex_ids [H,W,3] int64 (−1 bg), bary [H,W,3] float32 (−1 bg),
    points [H,W,3] float32 hit points (world), depth [H,W] float32 (camera z, 0 bg)."""

    face_ids: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    depth: np.ndarray


def _intersector(vertices: np.ndarray, faces: np.ndarray):
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        return mesh, RayMeshIntersector(mesh)
    except Exception as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            f"ray casting needs Embree (pip install embreex): {exc}"
        ) from exc


def cast(vertices, faces, origins: np.ndarray, dirs: np.ndarray, shape: tuple[int, int],
         cam_z: np.ndarray | None = None, cam_origin: np.ndarray | None = None) -> RayBuffers:
    """Cast one ray per pixel (origins/dirs [H*W,3]); first hits only."""
    from trimesh.triangles import points_to_barycentric

    H, W = shape
    mesh, inter = _intersector(vertices, faces)
    fid, rid, loc = inter.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    face_ids = np.full(H * W, -1, np.int64)
    vids = np.full((H * W, 3), -1, np.int64)
    bary = np.full((H * W, 3), -1.0, np.float32)
    pts = np.zeros((H * W, 3), np.float32)
    depth = np.zeros(H * W, np.float32)
    if len(fid):
        face_ids[rid] = fid
        vids[rid] = mesh.faces[fid]
        bary[rid] = np.clip(points_to_barycentric(mesh.triangles[fid], loc), 0.0, 1.0).astype(np.float32)
        bary[rid] /= np.maximum(bary[rid].sum(1, keepdims=True), 1e-8)
        pts[rid] = loc
        if cam_z is not None:
            depth[rid] = (loc - cam_origin) @ cam_z
    return RayBuffers(face_ids.reshape(H, W), vids.reshape(H, W, 3), bary.reshape(H, W, 3),
                      pts.reshape(H, W, 3), depth.reshape(H, W))


def official_view_rays(view: OfficialView, size: int, fov_deg: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray origins/directions [size², 3] for a PyTorch3D FoV camera (pixel centres)."""
    R, T = look_at(view.dist, view.elev, view.azim)
    T = T.copy()
    T[0] += view.x_off
    T[1] += view.y_off
    origin = -R @ T  # world position of the (offset) camera centre
    i = np.arange(size)
    ndc = 1.0 - (2.0 * i + 1.0) / size  # +X left / +Y up, pixel centres
    xs, ys = np.meshgrid(ndc, ndc)  # xs varies along columns, ys along rows
    t = np.tan(np.deg2rad(fov_deg) / 2.0)
    d_view = np.stack([xs * t, ys * t, np.ones_like(xs)], -1).reshape(-1, 3)
    dirs = d_view @ R.T  # X = R·X_view
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.tile(origin, (len(dirs), 1)), dirs


def official_view_buffers(vertices, faces, views=HUMAN_VIEWS, size: int = 128) -> RayBuffers:
    """Stacked buffers for the official views: fields gain a leading view axis [V,...]."""
    outs = [cast(vertices, faces, *official_view_rays(v, size), (size, size)) for v in views]
    return RayBuffers(*(np.stack([getattr(o, f) for o in outs]) for f in ("face_ids", "vertex_ids", "bary",
                                                                          "points", "depth")))


def pinhole_rays(K: np.ndarray, cam_to_world: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays of an OpenCV pinhole camera (pixel centres); cam_to_world [4,4]."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = d @ cam_to_world[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.tile(cam_to_world[:3, 3], (len(d), 1)), d
