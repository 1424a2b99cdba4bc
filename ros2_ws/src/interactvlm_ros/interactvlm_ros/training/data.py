"""Reading a synthetic dataset (format: docs/default_model.md, written by ``interactvlm synth``).

Training needs no images: only the cues (landmarks, hand landmarks, object box, depth summary, label)
and the targets (GT view masks, per-vertex contact). ``load_split`` pulls exactly those out of the
``samples/*.npz`` files once and caches them as one compact ``.npz`` under
``paths.cache_dir("training")`` keyed by (dataset path, meta.json hash, split).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.default.features import depth_cue_from_maps
from ..paths import cache_dir

log = logging.getLogger(__name__)

CUE_VERSION = 2
_ROWS: dict = {}


class DatasetError(ValueError):
    """The dataset folder is missing files/fields; the message names them."""


@dataclass
class SplitData:
    """All samples of one split, stacked. N samples, V views, R mask side."""

    indices: np.ndarray  # [N] sample index
    pose2d: np.ndarray  # [N,33,3] px
    hands2d: np.ndarray  # [N,2,21,3] px
    bbox: np.ndarray  # [N,4] px (nan when absent)
    depth_cue: np.ndarray  # [N,2] m (nan when absent)
    labels: list[str]
    categories: list[str]
    object_ids: list[str]
    interactions: list[str]
    human_masks: np.ndarray  # [N,V,R,R] uint8 0/1
    object_masks: np.ndarray  # [N,V,R,R] uint8 0/1
    human_contact: np.ndarray  # [N,Nh] float32
    object_contact: list[np.ndarray] = field(default_factory=list)  # per sample [No_i]

    def __len__(self) -> int:
        return len(self.indices)


def read_meta(root: str | Path) -> dict:
    root = Path(root)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} not found: '{root}' is not a synthetic dataset folder "
                           "(generate one with `interactvlm synth --out DIR`)")
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path} is not valid JSON: {exc}") from exc


def sample_path(root: Path, index: int) -> Path:
    return Path(root) / "samples" / f"{int(index):06d}.npz"


def split_names(meta: dict) -> list[str]:
    return list((meta.get("splits") or {}).keys())


def split_indices(root: str | Path, meta: dict, name: str) -> np.ndarray:
    """Sample indices of split ``name`` from meta.json's split definitions.

    Accepted definitions (meta["splits"][name]): a list of indices; or a dict with ``indices``, or
    ``index_range``/``range`` [lo, hi), or ``seed_range``/``seeds`` [lo, hi) (matched against each
    sample's seed via meta["seeds"] when present, else seed = meta seed + index), optionally with
    ``categories`` (keep only those) / ``exclude_categories``."""
    splits = meta.get("splits") or {}
    if isinstance(splits.get("indices"), dict):  # synth generator layout: {"indices": {split: [sample index]}}
        if name not in splits["indices"]:
            raise DatasetError(f"split '{name}' not in {Path(root) / 'meta.json'}; available: {sorted(splits['indices'])}")
        return np.asarray(sorted(splits["indices"][name]), np.int64)
    if name not in splits:
        raise DatasetError(f"split '{name}' not in {Path(root) / 'meta.json'}; available: {sorted(splits)}")
    d = splits[name]
    n = int(meta.get("n", meta.get("num_samples", 0)))
    if isinstance(d, list):
        idx = np.asarray(d, np.int64)
    elif isinstance(d, dict):
        if "indices" in d:
            idx = np.asarray(d["indices"], np.int64)
        elif "index_range" in d or "range" in d:
            lo, hi = d.get("index_range", d.get("range"))
            idx = np.arange(int(lo), int(hi))
        elif "seed_range" in d or "seeds" in d:
            lo, hi = d.get("seed_range", d.get("seeds"))
            seeds = np.asarray(meta["seeds"]) if "seeds" in meta else int(meta.get("seed", 0)) + np.arange(n)
            idx = np.nonzero((seeds >= int(lo)) & (seeds < int(hi)))[0]
        else:
            raise DatasetError(f"split '{name}': unknown definition keys {sorted(d)}")
    else:
        raise DatasetError(f"split '{name}': definition must be a list or a dict, got {type(d).__name__}")
    cats = d.get("categories") if isinstance(d, dict) else None
    excl = d.get("exclude_categories") if isinstance(d, dict) else None
    if (cats or excl) and "sample_categories" in meta:
        sc = np.asarray(meta["sample_categories"])
        keep = np.ones(len(idx), bool)
        if cats:
            keep &= np.isin(sc[idx], cats)
        if excl:
            keep &= ~np.isin(sc[idx], excl)
        idx = idx[keep]
    elif cats or excl:
        idx = np.asarray(idx)  # filtered below, per sample, in load_split
    return idx


def _str(x) -> str:
    a = np.asarray(x)
    return str(a.item() if a.ndim == 0 else a)


def _extract(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            need = ("landmarks_2d", "hand_landmarks_2d", "human_view_masks", "object_view_masks", "human_contact",
                    "object_contact", "object_label", "object_category")
            miss = [k for k in need if k not in keys]
            if miss:
                raise DatasetError(f"{path}: missing fields {miss}")
            bbox = np.asarray(z["object_bbox"], np.float32) if "object_bbox" in keys else np.full(4, np.nan, np.float32)
            cue = None
            if "depth" in keys and "person_mask" in keys:
                om = z["object_mask"].astype(bool) if "object_mask" in keys else None
                cue = depth_cue_from_maps(z["depth"], z["person_mask"].astype(bool), om)
            return {
                "pose2d": np.asarray(z["landmarks_2d"], np.float32),
                "hands2d": np.asarray(z["hand_landmarks_2d"], np.float32),
                "bbox": bbox,
                "depth_cue": np.asarray(cue if cue is not None else [np.nan, np.nan], np.float32),
                "label": _str(z["object_label"]),
                "category": _str(z["object_category"]),
                "object_id": _str(z["object_id"]) if "object_id" in keys else _str(z["object_category"]),
                "interaction": _str(z["interaction"]) if "interaction" in keys else "",
                "human_masks": (np.asarray(z["human_view_masks"]) > 0).astype(np.uint8),
                "object_masks": (np.asarray(z["object_view_masks"]) > 0).astype(np.uint8),
                "human_contact": np.asarray(z["human_contact"], np.float32),
                "object_contact": np.asarray(z["object_contact"], np.float32),
            }
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: unreadable sample ({exc}); regenerate it") from exc


def load_split(root: str | Path, name: str, limit: int | None = None, cache: bool = True) -> SplitData:
    """Cues + targets of one split (cached). ``limit`` keeps the first ``limit`` samples."""
    root = Path(root).resolve()
    meta = read_meta(root)
    idx = split_indices(root, meta, name)
    if limit is not None:
        idx = idx[: int(limit)]
    if len(idx) == 0:
        raise DatasetError(f"split '{name}' of {root} is empty")
    files = [sample_path(root, int(i)) for i in idx]
    missing = next((p for p in files if not p.is_file()), None)
    if missing is not None:
        raise DatasetError(f"{missing} listed by split '{name}' is missing")
    # each file's size + mtime: a sample regenerated in place (meta.json unchanged) is read again, not the cache
    stamps = [[st.st_size, st.st_mtime_ns] for st in (p.stat() for p in files)]
    h = hashlib.sha1(json.dumps([str(root), meta, name, idx.tolist(), stamps, CUE_VERSION], sort_keys=True,
                                default=str).encode()).hexdigest()[:16]
    cpath = None
    if cache:  # cache=False never needs a cache folder; an unusable one (read-only home) is a named fallback
        try:
            cpath = cache_dir("training") / f"split_{h}.npz"
        except OSError as exc:
            log.warning("fallback: split cache unavailable (%s); reading the samples without it", exc)
    if cpath is not None and cpath.is_file():
        with np.load(cpath, allow_pickle=True) as z:
            return SplitData(
                z["indices"], z["pose2d"], z["hands2d"], z["bbox"], z["depth_cue"], list(z["labels"]),
                list(z["categories"]), list(z["object_ids"]), list(z["interactions"]), z["human_masks"],
                z["object_masks"], z["human_contact"], list(z["object_contact"]),
            )
    rows = []
    for i in idx:
        p = sample_path(root, int(i))
        if not p.is_file():
            raise DatasetError(f"{p} listed by split '{name}' is missing")
        key = (str(p.resolve()), p.stat().st_mtime_ns)
        if key not in _ROWS:  # in-process memo: re-loading a growing dataset only reads the new samples
            _ROWS[key] = _extract(p)
        rows.append(_ROWS[key])
    split_def = (meta.get("splits") or {}).get(name)
    if isinstance(split_def, dict) and "sample_categories" not in meta:
        cats, excl = split_def.get("categories"), split_def.get("exclude_categories")
        keep = [(not cats or r["category"] in cats) and (not excl or r["category"] not in excl) for r in rows]
        rows = [r for r, k in zip(rows, keep) if k]
        idx = idx[np.asarray(keep, bool)]
    oc = np.empty(len(rows), object)
    for i, r in enumerate(rows):
        oc[i] = r["object_contact"]
    data = SplitData(
        indices=np.asarray(idx, np.int64),
        pose2d=np.stack([r["pose2d"] for r in rows]),
        hands2d=np.stack([r["hands2d"] for r in rows]),
        bbox=np.stack([r["bbox"] for r in rows]),
        depth_cue=np.stack([r["depth_cue"] for r in rows]),
        labels=[r["label"] for r in rows],
        categories=[r["category"] for r in rows],
        object_ids=[r["object_id"] for r in rows],
        interactions=[r["interaction"] for r in rows],
        human_masks=np.stack([r["human_masks"] for r in rows]),
        object_masks=np.stack([r["object_masks"] for r in rows]),
        human_contact=np.stack([r["human_contact"] for r in rows]),
        object_contact=list(oc),
    )
    if cpath is not None:
        np.savez(cpath, indices=data.indices, pose2d=data.pose2d, hands2d=data.hands2d, bbox=data.bbox,
                 depth_cue=data.depth_cue, labels=np.asarray(data.labels), categories=np.asarray(data.categories),
                 object_ids=np.asarray(data.object_ids), interactions=np.asarray(data.interactions),
                 human_masks=data.human_masks, object_masks=data.object_masks, human_contact=data.human_contact,
                 object_contact=oc)
    log.info("loaded split '%s' of %s: %d samples", name, root, len(data))
    return data


def view_masks(contact: np.ndarray, vertex_ids: np.ndarray, min_vertices: int = 2) -> np.ndarray:
    """Spec 3.7 GT rule: a pixel is contact iff its visible face has >= ``min_vertices`` contact vertices.
    contact [N], vertex_ids [V,R,R,3] (-1 background) -> uint8 [V,R,R]."""
    c = np.asarray(contact) > 0.5
    valid = (vertex_ids >= 0).all(-1)
    hits = np.where(vertex_ids >= 0, c[np.clip(vertex_ids, 0, None)], False).sum(-1)
    return ((hits >= min_vertices) & valid).astype(np.uint8)


def remask(data: SplitData, provider, min_vertices: int = 2) -> SplitData:
    """Recompute the GT view masks from the per-vertex GT contact on the views of ``provider``'s assets
    (built at the mask resolution). Per-vertex contact depends only on the topology, so this re-targets a
    dataset to the template/renderer the model is used with (e.g. after the template changed)."""
    hv = np.asarray(provider.human().vertex_ids)
    if data.human_contact.shape[1] != provider.human().num_vertices:
        raise DatasetError(f"human_contact has {data.human_contact.shape[1]} vertices, the body template "
                           f"{provider.human().num_vertices}: cannot re-mask")
    hm = np.stack([view_masks(c, hv, min_vertices) for c in data.human_contact])
    om = []
    for i, oid in enumerate(data.object_ids):
        a = provider.object(oid, data.categories[i])
        if len(data.object_contact[i]) != a.num_vertices:
            raise DatasetError(f"sample {data.indices[i]}: object_contact has {len(data.object_contact[i])} vertices, "
                               f"the '{oid}' mesh {a.num_vertices}")
        om.append(view_masks(data.object_contact[i], np.asarray(a.vertex_ids), min_vertices))
    data.human_masks = hm
    data.object_masks = np.stack(om)
    return data
