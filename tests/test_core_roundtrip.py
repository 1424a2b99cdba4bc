"""Render → paint → lift round trip on the body and every library object: painted, visible vertices come back
as contact, unpainted ones as 0, unseen ones as exactly 0 (human soft and object vote modes)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interactvlm_ros import objects
from interactvlm_ros.assets import build_view_assets
from interactvlm_ros.bodies import get_body_model
from interactvlm_ros.lift import Lifter

SIZE = 128
BIG = 20.0


def _roundtrip(vertices, faces, view_set, mode):
    va = build_view_assets(vertices, faces, view_set, SIZE, colors="xyz", backend="torch", cache=False)
    N = len(vertices)
    # paint a blob: the vertices within 35 % of the extent from the most +x+y vertex
    v = np.asarray(vertices, np.float64)
    ext = float(np.ptp(v, axis=0).max())
    seed = np.argmax(v[:, 0] + v[:, 1])
    painted = np.linalg.norm(v - v[seed], axis=1) < 0.35 * ext
    # GT-mask rule (spec 3.7, min_vertices=3): a pixel is contact when its face's 3 vertices are painted
    vid = va.vertex_ids
    fg = vid[..., 0] >= 0
    inside = fg & painted[np.clip(vid, 0, None)].all(-1)
    logits = np.where(inside, BIG, -BIG).astype(np.float32)
    contact = Lifter(va, mode=mode)(logits)
    assert contact.shape == (N,) and contact.dtype == np.float32
    # vertices that appear in some view, and whether all the faces they are seen through are fully painted
    seen = np.zeros(N, bool)
    seen_only_inside = np.ones(N, bool)
    seen_outside = np.zeros(N, bool)
    for u in range(vid.shape[0]):
        ids = vid[u][fg[u]]
        ins = inside[u][fg[u]]
        seen[ids.ravel()] = True
        seen_only_inside[ids[~ins].ravel()] = False
        seen_outside[ids[~ins].ravel()] = True
    interior = seen & painted & seen_only_inside
    assert interior.sum() >= 10, "the painted blob is not visible"
    assert (contact[interior] > 0.99).all()
    far = seen & ~painted
    assert far.sum() >= 10
    if mode == "human":
        assert (contact[far] < 1e-6).all()
    else:
        assert (contact[far] == 0).all()
    assert (contact[~seen] == 0).all()
    # recall of the painted visible vertices as contact (boundary vertices are mixed)
    return float((contact[seen & painted] > 0.5).mean())


def test_roundtrip_body_human_mode():
    body = get_body_model("anny")
    recall = _roundtrip(body.template_vertices, body.faces, "human", "human")
    assert recall > 0.8


CATALOG = sorted(json.loads(objects.CATALOG_PATH.read_text())["objects"])


@pytest.mark.parametrize("name", CATALOG)
def test_roundtrip_every_library_object(name):
    m = objects.load_mesh(objects.lookup_object(name).mesh_path)
    recall = _roundtrip(objects.normalize_mesh(m.vertices), m.faces, "object", "object")
    assert recall > 0.6, f"{name}: only {recall:.0%} of the visible painted vertices lifted back"
