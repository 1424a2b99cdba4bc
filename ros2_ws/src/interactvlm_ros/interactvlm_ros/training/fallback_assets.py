"""Stand-ins for the core's ``assets``/``lift`` used ONLY when those modules are not importable
(they are owned by the core; this file exists so the default model can be trained and evaluated
before/without them). Every use is logged as a fallback.

- ``map_assets(vertices, faces, kind, size)``: ViewAssets-like object (renders, vertex_ids, bary,
  cam_params, key, num_vertices) from Embree ray casting of the official views (``synth.raycast``,
  PyTorch3D camera conventions), renders coloured by normalised position (spec 3.6 colours).
- ``SoftLifter``: the official lifting rules (spec 4.2 human soft aggregation, 4.3 object votes) on
  those maps, with bilinear resizing of the masks to the map size.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
_warned: set = set()


def warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("fallback: %s", what)


def xyz_colors(vertices: np.ndarray) -> np.ndarray:
    """Spec 3.6 colours: per-axis (v-min)/(max-min)*0.8+0.1 -> float32 [N,3] in [0.1,0.9]."""
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    return ((v - lo) / np.maximum(hi - lo, 1e-9) * 0.8 + 0.1).astype(np.float32)


def shade_from_maps(colors: np.ndarray, vertex_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per-pixel barycentric interpolation of vertex colours -> uint8 [V,H,W,3], white background."""
    ok = vertex_ids[..., 0] >= 0
    vid = np.clip(vertex_ids, 0, None)
    w = np.clip(bary, 0, None)[..., None]
    rgb = (colors[vid] * w).sum(-2)
    out = np.where(ok[..., None], rgb * 255.0, 255.0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def official_cam_params(views, encoded_dist: float | None = None) -> np.ndarray:
    """Spec 2.1: (dist/10, elev/360, azim/360, (x+1)/2, (y+1)/2) per view."""
    rows = []
    for v in views:
        d = encoded_dist if encoded_dist is not None else v.dist
        rows.append([d / 10.0, v.elev / 360.0, v.azim / 360.0, (v.x_off + 1) / 2.0, (v.y_off + 1) / 2.0])
    return np.asarray(rows, np.float32)


@dataclass
class MapAssets:
    renders: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    cam_params: np.ndarray
    key: str
    num_vertices: int


def map_assets(vertices: np.ndarray, faces: np.ndarray, kind: str, size: int) -> MapAssets:
    from ..synth.raycast import HUMAN_VIEWS, OBJECT_VIEWS, official_view_buffers

    warn_once("interactvlm_ros.assets unavailable: view maps by synth.raycast (Embree), xyz-coloured renders")
    views = HUMAN_VIEWS if kind == "human" else OBJECT_VIEWS
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int64)
    buf = official_view_buffers(v, f, views, size)
    renders = shade_from_maps(xyz_colors(v), buf.vertex_ids, buf.bary)
    key = hashlib.sha1(v.tobytes() + f.tobytes() + f"{kind}{size}fallback1".encode()).hexdigest()[:16]
    cam = official_cam_params(views, None if kind == "human" else 2.0)  # objects: rendered 1.5, encoded 2.0
    return MapAssets(renders, buf.vertex_ids.astype(np.int64), buf.bary.astype(np.float32), cam, key, len(v))


class SoftLifter:
    """Official lifting on MapAssets. ``mode``: human (spec 4.2) | object (spec 4.3). logits [V,h,w] -> [N]."""

    def __init__(self, assets, mode: str = "human"):
        import scipy.sparse as sp

        warn_once("interactvlm_ros.lift unavailable: lifting with training.fallback_assets.SoftLifter")
        self.mode = mode
        self.n = int(assets.num_vertices)
        vids = np.asarray(assets.vertex_ids)
        bary = np.asarray(assets.bary)
        self.size = vids.shape[1:3]
        self.mats = []
        for v in range(vids.shape[0]):
            ok = (vids[v] >= 0).all(-1) & (vids[v] < self.n).all(-1)
            pix = np.nonzero(ok.reshape(-1))[0]
            ids = vids[v].reshape(-1, 3)[pix]
            w = bary[v].reshape(-1, 3)[pix]
            rows = np.repeat(pix, 3)
            m = sp.csr_matrix((w.reshape(-1).astype(np.float64), (ids.reshape(-1), rows)),
                              shape=(self.n, self.size[0] * self.size[1]))
            self.mats.append(m)

    def __call__(self, logits) -> np.ndarray:
        import cv2

        lg = np.asarray(logits, np.float32)
        num_total = np.zeros(self.n)
        count = np.zeros(self.n)
        for v, m in enumerate(self.mats):
            x = lg[v]
            if x.shape != tuple(self.size):
                x = cv2.resize(x, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
            p = 1.0 / (1.0 + np.exp(-np.clip(x, -20, 20))).reshape(-1).astype(np.float64)
            if self.mode == "object":
                sel = (p > 0.3).astype(np.float64)
                num, den = m @ (p * sel), m @ sel
            else:
                num, den = m @ p, m @ np.ones_like(p)
            seen = den > 0
            num_total[seen] += num[seen] / den[seen]
            count[seen] += 1
        out = np.where(count > 0, num_total / np.maximum(count, 1), 0.0)
        return (np.clip(out, 0, 1) if self.mode == "human" else out).astype(np.float32)
