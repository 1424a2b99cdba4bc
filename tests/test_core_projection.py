"""Renderer checks against independent maths: a numpy look-at/FoV projection written here (not the package's
``views`` code) for all 8 official views, and the torch rasterizer vs. Embree ray casting."""
from __future__ import annotations

import numpy as np
import pytest

from interactvlm_ros import objects
from interactvlm_ros.bodies import get_body_model
from interactvlm_ros.render import RenderError, rasterize, render_views

# spec 3.2 / 3.3 tables, typed in again here on purpose: (name, dist, elev, azim, y_off)
HUMAN_VIEWS = [("topfront", 2.0, 45, 315, 0.0), ("bottomfront", 2.0, 315, 315, 0.3),
               ("topback", 2.0, 45, 135, 0.0), ("bottomback", 2.0, 315, 135, 0.3)]
OBJECT_VIEWS = [("frontleft", 1.5, 45, 315, 0.0), ("frontright", 1.5, 45, 45, 0.0),
                ("backleft", 1.5, 330, 135, 0.0), ("backright", 1.5, 330, 225, 0.0)]
SIZE = 256


def project(points: np.ndarray, dist: float, elev: float, azim: float, y_off: float, size: int):
    """Pinhole camera looking at the origin, y up, vertical FoV 60°, image x to the camera's right.
    Returns (col, row) float pixel coords (pixel i spans [i, i+1)) and the depth along the optical axis."""
    e, a = np.radians(elev), np.radians(azim)
    eye = dist * np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])  # camera right in the image
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    d = points - eye
    x_r, y_u, z = d @ right, d @ up + y_off, d @ fwd  # the official y offset shifts the content up
    f = 1.0 / np.tan(np.radians(30.0))
    col = (1.0 + f * x_r / z) * size / 2.0
    row = (1.0 - f * y_u / z) * size / 2.0
    return col, row, z


@pytest.fixture(scope="module")
def body():
    return get_body_model("anny")


@pytest.fixture(scope="module")
def cup():
    m = objects.load_mesh(objects.lookup_object("cup").mesh_path)
    return objects.normalize_mesh(m.vertices), m.faces


def _check_projection(vertices, faces, views, view_set):
    face_ids, bary, depth, _ = rasterize(vertices, faces, view_set, SIZE, backend="torch")
    N = len(vertices)
    # 1-ring neighbourhood: a pixel at a vertex may be covered by a face touching the vertex's neighbours
    nbr = [set() for _ in range(N)]
    for a, b, c in faces:
        nbr[a].update((b, c)), nbr[b].update((a, c)), nbr[c].update((a, b))
    checked = 0
    for v, (_, dist, elev, azim, y_off) in enumerate(views):
        col, row, z = project(vertices.astype(np.float64), dist, elev, azim, y_off, SIZE)
        inside = (col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE)
        ci, ri = np.floor(col).astype(int), np.floor(row).astype(int)
        # not near a pixel edge (sub-pixel ambiguity) and visible (the rendered depth there is the vertex's)
        frac_ok = (np.abs(col - ci - 0.5) < 0.3) & (np.abs(row - ri - 0.5) < 0.3)
        cand = np.nonzero(inside & frac_ok)[0]
        fid = face_ids[v, ri[cand], ci[cand]]
        vis = (fid >= 0) & (np.abs(depth[v, ri[cand], ci[cand]] - z[cand]) < 2e-3)
        cand, fid = cand[vis], fid[vis]
        assert len(cand) > 200, f"view {v}: only {len(cand)} checkable vertices"
        ok = 0
        for j, f in zip(cand, fid):
            tri = set(faces[f].tolist())
            if j in tri or tri & nbr[j]:
                ok += 1
                continue
            # sub-pixel triangles (face, fingers, toes): the face hit at the pixel must then lie within half a
            # pixel footprint of the vertex (the same surface spot), else it is a real mismatch
            foot = 0.5 * z[j] * 2.0 * np.tan(np.radians(30.0)) / SIZE
            hit = bary[v, ri[j], ci[j]] @ vertices[faces[f]].astype(np.float64)
            ok += bool(np.linalg.norm(hit - vertices[j]) < foot
                       and np.linalg.norm(vertices[faces[f]] - vertices[j], axis=1).min() < foot)
        assert ok / len(cand) >= 0.99, f"view {views[v][0]}: {ok}/{len(cand)} vertices land on their own faces"
        checked += len(cand)
        # also: nothing is drawn where no vertex/face projects (the silhouette is inside the projected bbox)
        fg = np.argwhere(face_ids[v] >= 0)
        assert fg[:, 1].min() >= np.floor(col.min()) - 1 and fg[:, 1].max() <= np.ceil(col.max()) + 1
        assert fg[:, 0].min() >= np.floor(row.min()) - 1 and fg[:, 0].max() <= np.ceil(row.max()) + 1
    return checked


def test_independent_projection_human_views(body):
    assert _check_projection(body.template_vertices, body.faces, HUMAN_VIEWS, "human") > 2000


def test_independent_projection_object_views(cup):
    v, f = cup
    assert _check_projection(v, f, OBJECT_VIEWS, "object") > 2000


def test_left_right_and_up_conventions(body):
    """The left hand (+x) appears on the image's right in the front view (camera at −x+z looks at the front-left),
    and the head is at the top of every human view."""
    face_ids, _, _, _ = rasterize(body.template_vertices, body.faces, "human", 128, backend="torch")
    part_of_face = body.part_labels[body.faces[:, 0]]
    names = body.part_names
    for v in range(4):
        fg = face_ids[v] >= 0
        parts = np.where(fg, part_of_face[np.clip(face_ids[v], 0, None)], -1)
        rows_head = np.nonzero(parts == names.index("head"))[0]
        rows_foot = np.nonzero(np.isin(parts, [names.index("left_foot"), names.index("right_foot")]))[0]
        assert rows_head.mean() < rows_foot.mean(), v
    fg = face_ids[0] >= 0  # topfront: camera at (−1, 1.41, 1): sees the front; body's left (+x) on the image right
    parts = np.where(fg, part_of_face[np.clip(face_ids[0], 0, None)], -1)
    lh = np.nonzero(parts == names.index("left_hand"))[1].mean()
    rh = np.nonzero(parts == names.index("right_hand"))[1].mean()
    assert lh > rh


@pytest.mark.parametrize("what", ["body", "cup", "chair"])
def test_torch_rasterizer_agrees_with_embree(what, body, cup):
    if what == "body":
        v, f, vs = body.template_vertices, body.faces, "human"
    elif what == "cup":
        (v, f), vs = cup, "object"
    else:
        m = objects.load_mesh(objects.lookup_object(what).mesh_path)
        v, f, vs = objects.normalize_mesh(m.vertices), m.faces, "object"
    ft, bt, dt, _ = rasterize(v, f, vs, SIZE, backend="torch")
    fe, be, de, _ = rasterize(v, f, vs, SIZE, backend="embree")
    union = (ft >= 0) | (fe >= 0)
    same = (ft == fe) & union
    agree = same.sum() / union.sum()
    assert agree >= 0.995, f"{what}: face ids agree on {agree:.4%} of foreground pixels"
    # where both hit the same face, barycentrics and depth agree closely (perspective-correct)
    assert np.abs(bt[same] - be[same]).max() < 2e-3
    assert np.abs(dt[same] - de[same]).max() < 1e-4 * 4


def test_render_outputs_and_bad_input(cup):
    v, f = cup
    out = render_views(v, f, "object", 64, vertex_colors=np.full_like(v, 0.5), backend="torch")
    assert out.images.shape == (4, 64, 64, 3) and out.images.dtype == np.uint8
    bg = out.face_ids < 0
    assert (out.images[bg] == 255).all()  # white background
    assert (out.vertex_ids[bg] == -1).all() and (out.bary[bg] == -1).all()
    fg = ~bg
    assert np.allclose(out.bary[fg].sum(-1), 1.0, atol=1e-4) and (out.bary[fg] >= -1e-5).all()
    assert (out.vertex_ids[fg] == f[out.face_ids[fg]]).all()
    with pytest.raises(RenderError, match="NaN"):
        render_views(np.full_like(v, np.nan), f, "object", 32, backend="torch")
    with pytest.raises(RenderError, match="outside"):
        render_views(v, f + len(v), "object", 32, backend="torch")
