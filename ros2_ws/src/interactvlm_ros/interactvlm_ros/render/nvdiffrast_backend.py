"""CUDA backend on nvdiffrast (``dr.RasterizeCudaContext`` + ``dr.rasterize``), imported lazily.

``dr.rasterize(ctx, pos_clip [1,N,4], tri int32 [F,3], resolution=[H,W])`` returns ``rast [1,H,W,4]`` =
``(u, v, z/w, triangle_id + 1)`` (0 = background) with perspective-correct barycentrics such that an attribute
interpolates as ``u·a0 + v·a1 + (1−u−v)·a2``; row 0 of the output is the *bottom* of the image (OpenGL), so rows
are flipped. Clip space is OpenGL's (+X right); PyTorch3D's NDC has +X left, so x is negated. Pixel centres
are at (i + 0.5) in both. nvdiffrast clips triangles to the depth range (−w ≤ z ≤ w) like OpenGL, but PyTorch3D's
rasterizer (and ``raster_torch``) keeps everything in front of the camera: the camera's znear = 1 would cut away the
parts of a normalised object closer than 1 to an object camera at distance 1.5 (up to 45 % of a library object's
pixels), so the clip-space near/far planes are fitted around the mesh's depth range per view. The barycentrics are
perspective-correct, so depth is their plain interpolation of view z. Not testable without a GPU here:
``available()`` reports why it is not used; ``tests/test_core_render.py`` checks the conventions against an
emulated ``dr.rasterize``.
"""
from __future__ import annotations

import math

import torch

_CTX = {}


def available(device: str | torch.device = "cuda") -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "nvdiffrast backend needs CUDA (torch.cuda.is_available() is False)"
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"nvdiffrast not importable ({exc}); pip install git+https://github.com/NVlabs/nvdiffrast"
    return True, "nvdiffrast"


def _ctx(device: torch.device):
    import nvdiffrast.torch as dr

    key = str(device)
    if key not in _CTX:
        _CTX[key] = dr.RasterizeCudaContext(device=device)
    return _CTX[key]


def rasterize_view(verts_view: torch.Tensor, faces: torch.Tensor, size: int, fov_deg: float = 60.0,
                   znear: float = 1.0, zfar: float = 100.0):
    """Same contract as ``raster_torch.rasterize_view`` (verts_view on a CUDA device)."""
    import nvdiffrast.torch as dr

    dev = verts_view.device
    s = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    x, y, z = verts_view[:, 0], verts_view[:, 1], verts_view[:, 2]
    front = z[z > 1e-6]  # no znear clipping (PyTorch3D semantics): near/far planes around the mesh's depths
    if front.numel():
        znear = min(znear, 0.5 * float(front.min()))
        zfar = max(zfar, 2.0 * float(front.max()))
    # OpenGL clip coordinates; w = z (view depth); x negated (PyTorch3D +X left)
    zc = (z * (zfar + znear) - 2.0 * zfar * znear) / (zfar - znear)
    pos = torch.stack([-x * s, y * s, zc, z], 1)[None].contiguous().float()
    tri = faces.to(device=dev, dtype=torch.int32).contiguous()
    rast, _ = dr.rasterize(_ctx(dev), pos, tri, resolution=[size, size])
    rast = torch.flip(rast[0], dims=[0])  # OpenGL bottom-up → image top-down
    tid = rast[..., 3].round().to(torch.int64) - 1
    u, v = rast[..., 0], rast[..., 1]
    bary = torch.stack([u, v, 1.0 - u - v], -1)
    fg = tid >= 0
    f = faces.to(dev)[tid.clamp_min(0)]
    depth = (bary * z[f]).sum(-1)  # perspective-correct barycentrics interpolate view z linearly
    bary = torch.where(fg[..., None], bary, torch.full_like(bary, -1.0))
    depth = torch.where(fg, depth, torch.full_like(depth, -1.0))
    return tid.masked_fill(~fg, -1), bary, depth
