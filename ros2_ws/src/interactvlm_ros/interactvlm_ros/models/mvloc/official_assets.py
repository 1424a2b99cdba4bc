"""Official-format view assets (``data.zip`` human folder, demo ``sam_inp_objs``) and 2D->3D lifting.

The package's own loaders/lifter live in ``interactvlm_ros.assets`` / ``interactvlm_ros.lift``
(core). This module uses them when they are importable; otherwise it falls back to the minimal
implementations below (spec 4.1-4.3), and says so once in the log (``MVLOC_FALLBACK``).

* human folder (e.g. ``data/hcontact_vitruvian``): ``pixel_to_vertex_map_1024.npz`` +
  ``bary_coords_map_1024.npz`` (one ``[1024,1024,3]`` entry per view name) + ``body_render_norm_<view>.png``.
* object folder (demo ``sam_inp_objs``): ``lift2d_dict.pkl`` (joblib: ``pixel_to_vertices_map`` /
  ``bary_coords_map`` lists of 4 ``[1024,1024,3]``, ``num_vertices``) + ``obj_render_color_<view>.png``.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..base import LocalizerError

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _fallback(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("MVLOC_FALLBACK %s: interactvlm_ros core module not available; using the minimal "
                    "official-format implementation in models/mvloc/official_assets.py", what)


@dataclass
class OfficialViewAssets:
    """ViewAssets-compatible container: ``renders uint8 [V,H,W,3]``, ``vertex_ids int64 [V,H,W,3]`` (-1 bg),
    ``bary float32 [V,H,W,3]``, ``num_vertices``, ``cam_params float32 [V,5]``, ``key`` (content hash)."""

    renders: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    num_vertices: int
    cam_params: np.ndarray
    key: str
    view_names: tuple[str, ...] = ()


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise LocalizerError(f"{path}: render missing; an official asset folder has one PNG per view")
    return np.asarray(Image.open(path).convert("RGB"))


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def load_human_folder(folder: str | Path, view_names: list[str], cam_params, num_vertices: int = 6890,
                      input_type: str = "norm"):
    """Official human assets (``data/hcontact_vitruvian``-style folder) in the model's view order."""
    folder = Path(folder)
    if (folder / "hcontact_vitruvian").is_dir():
        folder = folder / "hcontact_vitruvian"
    p2v, bc = folder / "pixel_to_vertex_map_1024.npz", folder / "bary_coords_map_1024.npz"
    for f in (p2v, bc):
        if not f.is_file():
            raise LocalizerError(f"{f}: missing; --assets for hcontact must be the official "
                                 f"data/hcontact_vitruvian folder (lifting maps + body_render_{input_type}_<view>.png)")
    try:
        from interactvlm_ros import assets as core_assets  # type: ignore[attr-defined]

        loader = core_assets.load_official_human_assets
    except (ImportError, AttributeError):
        loader = None
    if loader is not None:
        return loader(folder, view_set="4MV-Z_Vitru", num_vertices=num_vertices)
    _fallback("load_official_human_assets")
    with np.load(p2v) as a, np.load(bc) as b:
        missing = [n for n in view_names if n not in a.files or n not in b.files]
        if missing:
            raise LocalizerError(f"{p2v}: view(s) {missing} missing (has {a.files})")
        ids = np.stack([a[n].astype(np.int64) for n in view_names])
        bary = np.stack([b[n].astype(np.float32) for n in view_names])
    renders = np.stack([_read_png(folder / f"body_render_{input_type}_{n}.png") for n in view_names])
    return OfficialViewAssets(renders, ids, bary, int(num_vertices), np.asarray(cam_params, np.float32),
                              "official-human-" + _hash(renders, ids[:, ::16, ::16]), tuple(view_names))


def load_object_folder(folder: str | Path, view_names: list[str], cam_params, input_type: str = "color"):
    """Demo object assets (``sam_inp_objs``: ``lift2d_dict.pkl`` + ``obj_render_<type>_<view>.png``)."""
    folder = Path(folder)
    if (folder / "sam_inp_objs").is_dir():
        folder = folder / "sam_inp_objs"
    pkl = folder / "lift2d_dict.pkl"
    if not pkl.is_file():
        raise LocalizerError(f"{pkl}: missing; --assets for ocontact must be the demo's sam_inp_objs folder "
                             f"(lift2d_dict.pkl + obj_render_{input_type}_<view>.png)")
    try:
        from interactvlm_ros import assets as core_assets  # type: ignore[attr-defined]

        loader = core_assets.load_lift2d_dict
    except (ImportError, AttributeError):
        loader = None
    if loader is not None:
        return loader(pkl, renders_dir=folder)
    _fallback("load_lift2d_dict")
    import joblib

    d = joblib.load(pkl)
    try:
        ids = np.stack([np.asarray(x, np.int64) for x in d["pixel_to_vertices_map"]])
        bary = np.stack([np.asarray(x, np.float32) for x in d["bary_coords_map"]])
        n = int(d["num_vertices"])
    except (KeyError, TypeError) as exc:
        raise LocalizerError(f"{pkl}: not a demo lift2d_dict (needs pixel_to_vertices_map, bary_coords_map, "
                             f"num_vertices): {exc}") from exc
    renders = np.stack([_read_png(folder / f"obj_render_{input_type}_{v}.png") for v in view_names])
    return OfficialViewAssets(renders, ids, bary, n, np.asarray(cam_params, np.float32),
                              "official-object-" + _hash(renders, ids[:, ::16, ::16]), tuple(view_names))


def lift(logits: np.ndarray, assets, mode: str) -> np.ndarray:
    """Per-vertex contact from ``logits float32 [V,H,W]``: ``mode`` "human" (soft, spec 4.2) or "object" (4.3)."""
    try:
        from interactvlm_ros.lift import Lifter  # type: ignore

        return np.asarray(Lifter(assets, mode=mode)(np.asarray(logits, np.float32)), np.float32)
    except ImportError:
        _fallback("Lifter")
    return _lift_fallback(torch.as_tensor(np.asarray(logits, np.float32)), assets, mode).numpy()


def _lift_fallback(logits: torch.Tensor, assets, mode: str) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(assets.vertex_ids)).reshape(logits.shape[0], -1, 3)
    bary = torch.as_tensor(np.asarray(assets.bary)).reshape(logits.shape[0], -1, 3).float()
    if tuple(logits.shape[1:]) != tuple(np.asarray(assets.vertex_ids).shape[1:3]):
        logits = torch.nn.functional.interpolate(logits[:, None], tuple(np.asarray(assets.vertex_ids).shape[1:3]),
                                                 mode="bilinear", align_corners=False)[:, 0]
    n = int(assets.num_vertices)
    total = torch.zeros(n)
    count = torch.zeros(n)
    for v in range(logits.shape[0]):
        m = logits[v].reshape(-1)
        p = torch.sigmoid(m.clamp(-20, 20)) if mode == "human" else torch.sigmoid(m)
        keep = ((ids[v] >= 0) & (ids[v] < n)).all(-1)
        if mode == "object":
            keep &= p > 0.3
        vi, w, pk = ids[v][keep], bary[v][keep], p[keep]
        num = torch.zeros(n).index_add_(0, vi.reshape(-1), (w * pk[:, None]).reshape(-1))
        den = torch.zeros(n).index_add_(0, vi.reshape(-1), w.reshape(-1))
        seen = den > 0
        total[seen] += num[seen] / den[seen]
        count += seen.float()
    out = torch.where(count > 0, total / count.clamp(min=1), torch.zeros(n))
    return out.clamp(0, 1) if mode == "human" else out
