"""Hard Phong shading of rasterized views (PyTorch3D ``HardPhongShader`` semantics, spec 3.4).

Per foreground pixel: position, normal and colour are interpolated with the (perspective-correct)
barycentrics from the vertices; ``colour = (ambient + diffuse)·texel + specular`` with a point light
(ambient 0.5, diffuse 0.3, specular 0.2), default material (all colours 1, shininess 64):
``diffuse = 0.3·max(0, n·l)``, ``specular = 0.2·max(0, v·r)^64`` where ``n·l > 0`` (r = reflected light
direction, v = direction to the camera); white background; ``uint8(255·rgb)`` (truncation, as the official
scripts). Shapes: pixels [P] → rgb float [P,3].
"""
from __future__ import annotations

import torch

AMBIENT, DIFFUSE, SPECULAR, SHININESS = 0.5, 0.3, 0.2, 64.0


def vertex_normals_torch(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals [N,3] (sum of (v1−v0)×(v2−v0) of incident faces, normalised)."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    fn = torch.linalg.cross(v1 - v0, v2 - v0)
    n = torch.zeros_like(verts)
    for k in range(3):
        n.index_add_(0, faces[:, k], fn)
    return torch.nn.functional.normalize(n, dim=1, eps=1e-12)


def shade(face_ids: torch.Tensor, bary: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
          normals: torch.Tensor, colors: torch.Tensor, light_location, camera_position) -> torch.Tensor:
    """face_ids [S,S] (−1 bg), bary [S,S,3], verts/normals/colors [N,3] (world) → uint8 [S,S,3].

    CPU work runs under ``raster_torch.cpu_threads`` (1 thread by default; same result, far faster on a loaded
    2-core machine)."""
    fidf = face_ids.reshape(-1)
    pix = torch.nonzero(fidf >= 0).flatten()
    return shade_compact(face_ids.shape[0], pix, fidf.index_select(0, pix), bary.reshape(-1, 3).index_select(0, pix),
                         verts, faces, normals, colors, light_location, camera_position)


def shade_compact(size: int, pix: torch.Tensor, face: torch.Tensor, bary: torch.Tensor, verts: torch.Tensor,
                  faces: torch.Tensor, normals: torch.Tensor, colors: torch.Tensor, light_location,
                  camera_position) -> torch.Tensor:
    """Foreground-only form of ``shade``: pix int64 [P] (flat ``row·S + col``), face int64 [P], bary float [P,3]
    → uint8 [S,S,3] (white background). Only the P foreground pixels are computed."""
    from .raster_torch import cpu_threads

    with cpu_threads(verts.device):
        return _shade(int(size), pix, face, bary, verts, faces, normals, colors, light_location, camera_position)


def _unit(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-normalise [P,3] in place (``F.normalize`` semantics: x / max(|x|, eps))."""
    n = (x[:, 0] * x[:, 0]).add_(x[:, 1] * x[:, 1]).add_(x[:, 2] * x[:, 2]).sqrt_().clamp_min_(eps)
    return x.div_(n[:, None])


def _shade(S, pix, face, bary, verts, faces, normals, colors, light_location, camera_position):
    out = torch.full((S * S, 3), 255, dtype=torch.uint8, device=verts.device)
    if not pix.numel():
        return out.reshape(S, S, 3)
    tri = faces.index_select(0, face)  # [P,3]
    table = torch.cat([verts, normals, colors], 1)  # [N,9]: one gather per corner for all attributes
    b = bary.to(verts.dtype)
    att = table.index_select(0, tri[:, 0]).mul_(b[:, 0:1])
    att.addcmul_(table.index_select(0, tri[:, 1]), b[:, 1:2]).addcmul_(table.index_select(0, tri[:, 2]), b[:, 2:3])
    pos, nrm, tex = att[:, 0:3], _unit(att[:, 3:6].contiguous()), att[:, 6:9]
    light = torch.as_tensor(light_location, dtype=verts.dtype, device=verts.device)
    cam = torch.as_tensor(camera_position, dtype=verts.dtype, device=verts.device)
    ldir = _unit(light - pos)
    cos = (nrm * ldir).sum(1)
    vdir = _unit(cam - pos)
    # v·r with r = −l + 2(n·l)n  →  −v·l + 2(n·l)(v·n)
    vr = (vdir * nrm).sum(1).mul_(2.0 * cos).sub_((vdir * ldir).sum(1))
    alpha = vr.clamp_min_(0).mul_((cos > 0).to(verts.dtype))
    for _ in range(6):  # alpha^64 by repeated squaring
        alpha = alpha.mul_(alpha)
    rgb = tex.mul_((AMBIENT + DIFFUSE * cos.clamp_min(0))[:, None]).add_((SPECULAR * alpha)[:, None])
    rgb = rgb.clamp_(0, 1).mul_(255.0).to(torch.uint8)
    return out.index_copy_(0, pix, rgb).reshape(S, S, 3)
