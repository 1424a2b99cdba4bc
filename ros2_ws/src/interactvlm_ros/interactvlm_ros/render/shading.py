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
    from .raster_torch import cpu_threads

    with cpu_threads(verts.device):
        return _shade(face_ids, bary, verts, faces, normals, colors, light_location, camera_position)


def _shade(face_ids, bary, verts, faces, normals, colors, light_location, camera_position):
    S = face_ids.shape[0]
    out = torch.ones(S * S, 3, device=verts.device)
    fidf = face_ids.reshape(-1)
    fg = torch.nonzero(fidf >= 0).flatten()
    if fg.numel():
        tri = faces.index_select(0, fidf.index_select(0, fg))  # [P,3]
        table = torch.cat([verts, normals, colors], 1)  # [N,9]: one gather for all attributes
        att = table.index_select(0, tri.reshape(-1)).reshape(-1, 3, 9)
        b = bary.reshape(-1, 3).index_select(0, fg)[..., None]  # [P,3,1]
        att = (att * b).sum(1)  # [P,9]
        pos, tex = att[:, 0:3], att[:, 6:9]
        nrm = torch.nn.functional.normalize(att[:, 3:6], dim=1, eps=1e-6)
        light = torch.as_tensor(light_location, dtype=verts.dtype, device=verts.device)
        cam = torch.as_tensor(camera_position, dtype=verts.dtype, device=verts.device)
        ldir = torch.nn.functional.normalize(light - pos, dim=1, eps=1e-6)
        cos = (nrm * ldir).sum(1)
        diffuse = DIFFUSE * cos.clamp_min(0)
        vdir = torch.nn.functional.normalize(cam - pos, dim=1, eps=1e-6)
        refl = -ldir + 2.0 * cos[:, None] * nrm
        alpha = (vdir * refl).sum(1).clamp_min(0) * (cos > 0).to(verts.dtype)
        specular = SPECULAR * alpha.pow(SHININESS)
        rgb = (AMBIENT + diffuse)[:, None] * tex + specular[:, None]
        out.index_copy_(0, fg, rgb)
    return (out.clamp(0, 1) * 255.0).to(torch.uint8).reshape(S, S, 3)
