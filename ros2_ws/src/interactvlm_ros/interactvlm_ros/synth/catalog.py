"""Object categories for the synthetic generator: meshes, real sizes, synonyms, how each is used.

The meshes are built procedurally with ``trimesh.creation`` (fixed tessellation → a fixed vertex order
per ``object_id``), so the dataset is self-contained and licence-free; every dataset also stores each
used mesh, normalised as in spec 3.6 (vertex-mean centre, longest bbox side 1), in
``objects/<object_id>.npz``. These meshes are not the deployment library's (``interactvlm_ros.objects``,
``objects/data/*.ply``): they define the published datasets (synth_v3/v4 object-contact labels are per vertex of
these tessellations), so they stay fixed; the model's object side works on any mesh (renders + geometry keys),
and the pipeline, node and ``reconstruct`` CLI use the library.

``size`` is the real longest side in metres (uniform range); ``interactions`` lists what a person does
with it; ``synonyms`` are alternative labels drawn for ``object_label`` (text conditioning sees them).
Meshes are watertight (needed for the inside/outside tests of the placement); multi-part objects
(table, chair) are disjoint closed parts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def _box(ext, centre=(0, 0, 0)):
    import trimesh

    m = trimesh.creation.box(extents=ext)
    m.apply_translation(centre)
    return m


def _concat(parts):
    import trimesh

    return trimesh.util.concatenate(parts)


def _sphere():
    import trimesh

    return trimesh.creation.icosphere(subdivisions=3, radius=0.5)


def _cylinder(r, h, sections=32):
    import trimesh

    return trimesh.creation.cylinder(radius=r, height=h, sections=sections)  # axis z


def _upright(m):
    """z-axis objects → y up (body/world frame is y up)."""
    m.apply_transform(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]]))
    return m


def _cap(flat=0.55):
    """Solid half-ellipsoid, flat side down (y up): a hat/helmet."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v = s.vertices.copy()
    v[:, 1] = np.maximum(v[:, 1], 0.0) * flat
    m = trimesh.Trimesh(v, s.faces, process=True)
    m.merge_vertices()
    return m


def _bottle():
    import trimesh

    m = trimesh.creation.capsule(height=0.7, radius=0.15, count=[24, 12])
    return _upright(m)


def _table():
    top = _box((1.0, 0.04, 0.6), (0, 0.73, 0))
    legs = [_box((0.04, 0.706, 0.04), (sx * 0.46, 0.353, sz * 0.26)) for sx in (-1, 1) for sz in (-1, 1)]
    return _concat([top] + legs)


def _chair():
    seat = _box((0.45, 0.04, 0.45), (0, 0.45, 0))
    back = _box((0.45, 0.45, 0.04), (0, 0.697, -0.205))
    legs = [_box((0.04, 0.426, 0.04), (sx * 0.2, 0.213, sz * 0.2)) for sx in (-1, 1) for sz in (-1, 1)]
    return _concat([seat, back] + legs)


def _stool():
    seat = _upright(_cylinder(0.18, 0.04))
    seat.apply_translation((0, 0.62, 0))
    legs = []
    for a in (0, 2.094, 4.189):
        leg = _upright(_cylinder(0.018, 0.596, 12))
        leg.apply_translation((0.12 * np.cos(a), 0.298, 0.12 * np.sin(a)))
        legs.append(leg)
    return _concat([seat] + legs)


@dataclass(frozen=True)
class Category:
    name: str
    mesh_fn: Callable
    size: tuple[float, float]  # real longest side (m)
    interactions: tuple[str, ...]
    synonyms: tuple[str, ...] = field(default_factory=tuple)


CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("ball", _sphere, (0.19, 0.25), ("hold_two_hands", "kick"), ("basketball", "soccer ball", "football", "volleyball")),
    Category("cup", lambda: _upright(_cylinder(0.4, 1.0)), (0.09, 0.12), ("hold_one_hand",), ("mug", "coffee cup", "teacup")),
    Category("bottle", _bottle, (0.2, 0.3), ("hold_one_hand",), ("water bottle", "flask")),
    Category("can", lambda: _upright(_cylinder(0.275, 1.0)), (0.11, 0.13), ("hold_one_hand",), ("soda can", "tin", "beer can")),
    Category("phone", lambda: _box((0.5, 1.0, 0.06)), (0.13, 0.17), ("hold_one_hand",), ("cellphone", "smartphone", "mobile phone")),
    Category("book", lambda: _box((0.7, 1.0, 0.15)), (0.2, 0.3), ("hold_one_hand", "hold_two_hands"), ("notebook", "novel")),
    Category("apple", lambda: _sphere(), (0.07, 0.09), ("hold_one_hand",), ("orange", "fruit")),
    Category("box", lambda: _box((1.0, 0.8, 0.75)), (0.3, 0.5), ("hold_two_hands", "carry"), ("cardboard box", "package", "parcel")),
    Category("laptop", lambda: _box((1.0, 0.07, 0.7)), (0.3, 0.38), ("hold_two_hands", "carry"), ("notebook computer", "computer")),
    Category("table", _table, (1.0, 1.4), ("operate_table",), ("desk", "dining table", "workbench")),
    Category("chair", _chair, (0.75, 0.95), ("sit",), ("armchair", "seat", "office chair")),
    Category("stool", _stool, (0.55, 0.75), ("sit",), ("bar stool", "footstool")),
    Category("bench", lambda: _box((1.0, 0.09, 0.28)), (1.0, 1.6), ("sit",), ("park bench", "seat")),
    Category("skateboard", lambda: _box((1.0, 0.03, 0.26)), (0.75, 0.85), ("ride",), ("skate board", "longboard")),
    Category("hat", lambda: _cap(0.45), (0.2, 0.24), ("wear_head",), ("cap", "beanie")),
    Category("helmet", lambda: _cap(0.75), (0.24, 0.3), ("wear_head",), ("bike helmet", "hard hat")),
    Category("cabinet", lambda: _box((0.5, 1.0, 0.35)), (1.4, 1.9), ("lean",), ("wardrobe", "cupboard", "refrigerator")),
)}

INTERACTIONS = ("hold_one_hand", "hold_two_hands", "carry", "kick", "sit", "lean", "ride", "wear_head", "operate_table")
# categories that never appear in train/val/test: they form the ``test_unseen_category`` split
HELD_OUT_CATEGORIES = ("bottle", "stool", "helmet")


def categories_for(interaction: str) -> list[str]:
    return [c.name for c in CATEGORIES.values() if interaction in c.interactions]


MAX_EDGE = 0.07
_MESH_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def normalized_mesh(category: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float32 [N,3], faces int64 [F,3]) of the category's mesh, normalised as spec 3.6:
    vertex-mean centre, longest bbox side 1. ``object_id`` = category name (one mesh per category)."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown object category {category!r}; known: {sorted(CATEGORIES)}")
    if category not in _MESH_CACHE:
        m = CATEGORIES[category].mesh_fn()
        if not m.is_watertight:
            m.merge_vertices()
        v = np.asarray(m.vertices, np.float64)
        v = v / (v.max(0) - v.min(0)).max()
        # subdivide so per-vertex contact has a useful resolution (edges ≤ MAX_EDGE of the longest side)
        from trimesh.remesh import subdivide_to_size

        v, f = subdivide_to_size(v, np.asarray(m.faces, np.int64), max_edge=MAX_EDGE, max_iter=12)
        import trimesh

        sub = trimesh.Trimesh(v, f, process=True)  # merges the duplicated edge-midpoints → watertight
        v, faces = np.asarray(sub.vertices, np.float64), np.asarray(sub.faces, np.int64)
        v = v - v.mean(0)
        v = v / (v.max(0) - v.min(0)).max()
        _MESH_CACHE[category] = (v.astype(np.float32), faces)
    return _MESH_CACHE[category]
