"""Render a mesh on a view set: shaded images AND exact per-pixel (face, vertex ids, barycentrics) maps.

``render_views(vertices, faces, view_set, size, vertex_colors, backend="auto") -> RenderOutput``

Backends (all with the PyTorch3D conventions of ``views``; they agree away from triangle edges):

* ``"torch"`` — pure-PyTorch rasterizer (``raster_torch``), CPU or CUDA (``device=``). Default CPU path.
* ``"nvdiffrast"`` — CUDA rasterizer (``nvdiffrast_backend``), used by ``auto`` when it imports and CUDA exists.
* ``"embree"`` — CPU ray casting (``raycast_embree``), independent implementation used to cross-check.

``auto`` picks nvdiffrast → torch (CUDA if available, else CPU) and logs the choice once.
Shading (``shading``) is shared: Hard Phong with the spec's light/material, white background.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..views import ViewSet, camera_position, get_view_set, view_transform
from . import nvdiffrast_backend, raster_torch, raycast_embree
from .shading import shade, shade_compact, vertex_normals_torch

log = logging.getLogger(__name__)

RENDERER_VERSION = "core-render-3"  # 2: foreground-only shading (±1 LSB on a few pixels vs 1); 3: nvdiffrast
# entries (shared cache) no longer clipped at znear 1 — old ones are not reused
BACKENDS = ("auto", "torch", "nvdiffrast", "embree")
_logged: set[str] = set()


class RenderError(ValueError):
    """Bad render input or an explicitly requested backend that is unavailable (message says how to fix)."""


@dataclass
class RenderOutput:
    """images uint8 [V,S,S,3]; vertex_ids int64 [V,S,S,3] (−1 bg); bary float32 [V,S,S,3] (−1 bg);
    face_ids int64 [V,S,S] (−1 bg); depth float32 [V,S,S] (view z, −1 bg); backend name."""

    images: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    face_ids: np.ndarray
    depth: np.ndarray
    backend: str


def select_backend(backend: str = "auto", device: str | None = None) -> tuple[str, str, str]:
    """→ (backend, device, reason). Explicit unavailable backends raise ``RenderError``."""
    if backend not in BACKENDS:
        raise RenderError(f"render backend {backend!r}: use one of {BACKENDS}")
    if backend == "auto":
        ok, why = nvdiffrast_backend.available()
        if ok and device in (None, "cuda") or (ok and str(device).startswith("cuda")):
            choice = ("nvdiffrast", device or "cuda", "nvdiffrast on CUDA")
        else:
            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            choice = ("torch", dev, f"torch rasterizer on {dev} ({why})")
        if choice[2] not in _logged:
            _logged.add(choice[2])
            log.info("render backend auto → %s", choice[2])
        return choice
    if backend == "nvdiffrast":
        ok, why = nvdiffrast_backend.available()
        if not ok:
            raise RenderError(why)
        return "nvdiffrast", device or "cuda", "requested"
    if backend == "embree":
        ok, why = raycast_embree.available()
        if not ok:
            raise RenderError(why)
        return "embree", "cpu", "requested"
    return "torch", device or "cpu", "requested"


def _view_workers(device, num_views: int) -> int:
    """Threads that render views concurrently on CPU: ``INTERACTVLM_RENDER_WORKERS`` (default: the number of CPU
    cores, at most the number of views). Each thread runs single-threaded torch ops (``cpu_threads``), so a busy
    machine degrades gracefully (no OpenMP spin-waits); results are identical for any count."""
    if torch.device(device).type != "cpu":
        return 1
    raw = os.environ.get("INTERACTVLM_RENDER_WORKERS", "")
    try:
        want = int(raw) if raw else (os.cpu_count() or 1)
    except ValueError:
        log.warning("INTERACTVLM_RENDER_WORKERS=%r is not an integer; rendering views on one thread", raw)
        want = 1
    return max(1, min(want, num_views))


def _validate(vertices: np.ndarray, faces: np.ndarray) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise RenderError(f"vertices must be float [N,3] with N > 0; got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise RenderError(f"faces must be int [F,3] with F > 0; got {faces.shape}")
    if not np.isfinite(vertices).all():
        raise RenderError("vertices contain NaN/inf; clean the mesh (objects.load_mesh validates files)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise RenderError(f"faces index vertices outside [0, {len(vertices)})")


def rasterize(vertices, faces, view_set: "ViewSet | str", size: int, backend: str = "auto", device: str | None = None):
    """Maps only (no shading): → (face_ids int64 [V,S,S], bary float32 [V,S,S,3], depth float32 [V,S,S], backend)."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    _validate(vertices, faces)
    vs = get_view_set(view_set)
    name, dev, _ = select_backend(backend, device)
    fids, bcs, depths = [], [], []
    if name == "embree":
        import trimesh
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        mesh = trimesh.Trimesh(vertices.astype(np.float64), faces, process=False)
        inter = RayMeshIntersector(mesh)
        for view in vs.views:
            f, b, d = raycast_embree.raycast_view(vertices, faces, view, size, mesh, inter)
            fids.append(f), bcs.append(b), depths.append(d)
        return np.stack(fids), np.stack(bcs), np.stack(depths), name
    fn = nvdiffrast_backend.rasterize_view if name == "nvdiffrast" else raster_torch.rasterize_view
    tv = torch.as_tensor(vertices, device=dev, dtype=torch.float64)
    tf = torch.as_tensor(faces, device=dev)
    with torch.no_grad():
        for view in vs.views:
            R, T = view_transform(view)
            vv = (tv @ torch.as_tensor(R, device=dev) + torch.as_tensor(T, device=dev)).float()
            f, b, d = fn(vv, tf, size)
            fids.append(f), bcs.append(b), depths.append(d)
        return (torch.stack(fids).cpu().numpy(), torch.stack(bcs).cpu().numpy().astype(np.float32),
                torch.stack(depths).cpu().numpy().astype(np.float32), name)


def render_compact(vertices, faces, view_set: "ViewSet | str", size: int = 1024, vertex_colors=None,
                   backend: str = "auto", device: str | None = None):
    """Like ``render_views`` but returns ``(images uint8 [V,S,S,3], CompactMaps, depth_fg float32 [P], backend)`` with
    the maps kept foreground-only (no dense [V,S,S,3] arrays: the fast path of ``assets.build_view_assets``)."""
    from ..lift import CompactMaps

    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    _validate(vertices, faces)
    size = int(size)
    if size < 1:
        raise RenderError(f"size must be positive, got {size}")
    vs = get_view_set(view_set)
    if vertex_colors is None:
        vertex_colors = np.full((len(vertices), 3), 0.7, np.float32)
    vertex_colors = np.asarray(vertex_colors, np.float32)
    if vertex_colors.shape != vertices.shape:
        raise RenderError(f"vertex_colors must be [N,3] = {vertices.shape}; got {vertex_colors.shape}")
    name, dev, _ = select_backend(backend, device)
    if name == "embree":
        dev = "cpu"
    tv = torch.as_tensor(vertices, device=dev)
    tf = torch.as_tensor(faces, device=dev)
    tv64 = torch.as_tensor(vertices, device=dev, dtype=torch.float64)
    with torch.no_grad(), raster_torch.cpu_threads(dev):
        normals = vertex_normals_torch(tv, tf)
        cols = torch.as_tensor(vertex_colors, device=dev)
        dense = rasterize(vertices, faces, vs, size, "embree") if name == "embree" else None

        def one(v: int):
            view = vs.views[v]
            if dense is not None:
                flat = torch.as_tensor(dense[0][v]).reshape(-1)
                pix = torch.nonzero(flat >= 0).flatten()
                fid = flat.index_select(0, pix)
                bc = torch.as_tensor(dense[1][v]).reshape(-1, 3).index_select(0, pix)
                dz = torch.as_tensor(dense[2][v]).reshape(-1).index_select(0, pix)
            else:
                R, T = view_transform(view)
                vv = (tv64 @ torch.as_tensor(R, device=dev) + torch.as_tensor(T, device=dev)).float()
                if name == "nvdiffrast":
                    f_v, b_v, d_v = nvdiffrast_backend.rasterize_view(vv, tf, size)
                    flat = f_v.reshape(-1)
                    pix = torch.nonzero(flat >= 0).flatten()
                    fid, bc = flat.index_select(0, pix), b_v.reshape(-1, 3).index_select(0, pix)
                    dz = d_v.reshape(-1).index_select(0, pix)
                else:
                    pix, fid, bc, dz = raster_torch.rasterize_view_compact(vv, tf, size)
            img = shade_compact(size, pix, fid, bc, tv, tf, normals, cols, view.light_location, camera_position(view))
            return (img.cpu().numpy(), pix.cpu().numpy(), fid.cpu().numpy().astype(np.int32),
                    bc.cpu().numpy().astype(np.float32), dz.cpu().numpy().astype(np.float32))

        workers = _view_workers(dev, len(vs.views))
        if workers > 1:  # views are independent; torch ops release the GIL, each thread runs 1 intra-op thread
            with ThreadPoolExecutor(workers, thread_name_prefix="render") as ex:
                per_view = list(ex.map(one, range(len(vs.views))))
        else:
            per_view = [one(v) for v in range(len(vs.views))]
    images, offsets, pixs, fids, bcs, depths = [], [0], [], [], [], []
    for img, pix, fid, bc, dz in per_view:
        images.append(img), pixs.append(pix), fids.append(fid), bcs.append(bc), depths.append(dz)
        offsets.append(offsets[-1] + len(pix))
    fid = np.concatenate(fids)
    compact = CompactMaps((size, size), np.asarray(offsets, np.int64), np.concatenate(pixs).astype(np.int64),
                          faces[fid].astype(np.int32), np.concatenate(bcs), fid)
    return np.stack(images), compact, np.concatenate(depths), name


def render_views(vertices, faces, view_set: "ViewSet | str", size: int = 1024, vertex_colors=None,
                 backend: str = "auto", device: str | None = None) -> RenderOutput:
    """vertices float [N,3], faces int [F,3], vertex_colors float [N,3] in [0,1] (default: grey 0.7) → RenderOutput."""
    images, c, depth_fg, name = render_compact(vertices, faces, view_set, size, vertex_colors, backend, device)
    return RenderOutput(images, c.dense_vertex_ids(), c.dense_bary(), c.dense_face_ids(),
                        c.scatter_dense(depth_fg, -1.0, np.float32), name)


__all__ = ["RenderOutput", "RenderError", "render_views", "render_compact", "rasterize", "select_backend", "RENDERER_VERSION", "BACKENDS"]
