"""Per-pixel (face, barycentric, hit point, depth) buffers by Embree ray casting (trimesh + embreex), CPU.

Two uses:

* ``cast`` + ``pinhole_rays``: the generator's **camera image** — an OpenCV pinhole camera (K, x right, y down,
  z forward) looking at body + object. The core renderer only renders the official PyTorch3D FoV views, so
  this stays here; hand-written on trimesh's Embree intersector because no installed library returns
  face/barycentric/hit-point buffers for an arbitrary pinhole camera on a CPU (ray casting gives the true 3D
  barycentrics).
* ``official_view_buffers``: the lifting maps on the **official views** — a thin wrapper over the core
  (``views.get_view_set`` for the cameras, ``render.rasterize(..., backend=...)`` for the maps; default
  ``"embree"``, the core's independent ray caster, so tests can cross-check the torch rasterizer with it).
  ``HUMAN_VIEWS`` / ``OBJECT_VIEWS`` are the core's ``ViewSpec`` tuples (kept as names for
  ``training/fallback_assets``; new code uses ``views.get_view_set``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interactvlm_ros.views import ViewSet, get_view_set

HUMAN_VIEWS = get_view_set("human").views  # topfront, bottomfront, topback, bottomback (dist 2.0)
OBJECT_VIEWS = get_view_set("object").views  # frontleft, frontright, backleft, backright (rendered at 1.5)


@dataclass
class RayBuffers:
    """face_ids [H,W] int64 (−1 bg), vertex_ids [H,W,3] int64 (−1 bg), bary [H,W,3] float32 (−1 bg),
    points [H,W,3] float32 hit points (world), depth [H,W] float32 (camera z, 0 bg)."""

    face_ids: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    depth: np.ndarray


@dataclass
class ViewBuffers:
    """Official-view maps: face_ids [V,S,S] int64, vertex_ids [V,S,S,3] int64, bary [V,S,S,3] float32,
    depth [V,S,S] float32 (view z); −1 background everywhere; ``backend`` that made them."""

    face_ids: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    depth: np.ndarray
    backend: str


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


def official_view_buffers(vertices, faces, views=HUMAN_VIEWS, size: int = 128, backend: str = "embree") -> ViewBuffers:
    """Maps of ``vertices [N,3]`` / ``faces [F,3]`` on official views (a view-set name, a ``ViewSet`` or a tuple
    of ``views.ViewSpec``) at ``size``² via ``render.rasterize`` (``backend``: embree | torch | nvdiffrast | auto)."""
    from interactvlm_ros.render import rasterize

    vs = views if isinstance(views, (str, ViewSet)) else ViewSet("custom", tuple(views))
    faces = np.asarray(faces, np.int64)
    fids, bary, depth, used = rasterize(vertices, faces, vs, int(size), backend=backend)
    vids = np.where(fids[..., None] >= 0, faces[np.clip(fids, 0, None)], -1).astype(np.int64)
    return ViewBuffers(fids.astype(np.int64), vids, bary.astype(np.float32), depth, used)


def pinhole_rays(K: np.ndarray, cam_to_world: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays of an OpenCV pinhole camera through the pixel centres; cam_to_world [4,4].

    OpenCV / ROS CameraInfo convention: pixel (u, v) is centred at image coordinates (u, v), so the ray of
    pixel u goes through x = (u − cx) / fx. (Until synth-1.3 this cast through u + 0.5, the half-pixel
    "corner" convention: camera images, depth and masks sat half a pixel off the K every consumer projects
    with — depth back-projected 2–5 mm off the true surface.)"""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = d @ cam_to_world[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.tile(cam_to_world[:3, 3], (len(d), 1)), d
