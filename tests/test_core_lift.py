"""Core lifting: official loaders + lifting vs. the conformance fixtures, lifting modes, input handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interactvlm_ros.assets import AssetError, ViewAssets, load_lift2d_dict, load_official_human_assets
from interactvlm_ros.lift import CompactMaps, LiftError, Lifter, nearest_visible_index

HUMAN = "interactvlm-hcontact-tiny"
OBJECT = "interactvlm-oafford-tiny"


def _ref_logits(npz) -> np.ndarray:
    lr = torch.as_tensor(npz["low_res_masks"])
    return torch.nn.functional.interpolate(lr, (1024, 1024), mode="bilinear", align_corners=False)[:, 0].numpy()


@pytest.fixture(scope="module")
def human_assets(conformance_dir):
    return load_official_human_assets(conformance_dir / HUMAN / "data" / "hcontact_vitruvian")


@pytest.fixture(scope="module")
def object_assets(conformance_dir):
    return load_lift2d_dict(conformance_dir / OBJECT / "inputs" / "mug__synthetic" / "sam_inp_objs" / "lift2d_dict.pkl")


def test_official_human_assets_load(human_assets, conformance_dir):
    a = human_assets
    assert isinstance(a, ViewAssets) and a.num_vertices == 6890
    assert a.view_names == ("topfront", "bottomfront", "topback", "bottomback")
    assert a.renders.shape == (4, 1024, 1024, 3) and a.renders.dtype == np.uint8
    assert a.vertex_ids.shape == (4, 1024, 1024, 3) and a.bary.dtype == np.float32
    np.testing.assert_allclose(a.cam_params[1], [0.2, 0.875, 0.875, 0.5, 0.65], atol=1e-6)
    with np.load(conformance_dir / HUMAN / "data" / "hcontact_vitruvian" / "pixel_to_vertex_map_1024.npz") as z:
        np.testing.assert_array_equal(a.vertex_ids[2], z["topback"])
    # dense maps rebuilt from the compact store are lossless
    np.testing.assert_array_equal(a.compact.dense_vertex_ids(), a.vertex_ids)
    np.testing.assert_array_equal(a.compact.dense_bary(), a.bary)
    assert a.key.startswith("official-human-")


@pytest.mark.parametrize("which", ["forward_teacher_forced", "generate"])
def test_human_lifting_matches_official(human_assets, conformance_dir, which):
    e = np.load(conformance_dir / HUMAN / "expected" / f"{which}.npz")
    lifter = Lifter(human_assets, mode="human")
    c = lifter(_ref_logits(e))
    assert c.shape == (6890,) and c.dtype == np.float32
    np.testing.assert_allclose(c, e["pred_contact_3d"][0], atol=1e-5, rtol=0)
    assert np.all(c[49:] == 0)  # unseen vertices (fixture: 49 and 50..6889) stay exactly 0
    # the low-res masks directly: resampled at the foreground pixels only, same result
    np.testing.assert_allclose(lifter(e["low_res_masks"][:, 0]), e["pred_contact_3d"][0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("which", ["forward_teacher_forced", "generate"])
def test_object_lifting_matches_official(object_assets, conformance_dir, which):
    e = np.load(conformance_dir / OBJECT / "expected" / f"{which}.npz")
    assert object_assets.num_vertices == 206
    assert object_assets.view_names == ("frontleft", "frontright", "backleft", "backright")
    np.testing.assert_allclose(object_assets.cam_params[:, 0], 0.2)  # encoded 2.0 although rendered at 1.5
    logits = _ref_logits(e)
    lifter = Lifter(object_assets, mode="object")
    c = lifter(logits)
    np.testing.assert_allclose(c, e["pred_contact_3d"][0], atol=3e-5, rtol=0)
    np.testing.assert_array_equal(lifter.selected_pixels_per_view(logits), e["lift_selected_pixels_per_view"])
    np.testing.assert_array_equal(lifter.views_per_vertex(logits), e["lift_views_per_vertex"])
    nz = c[c > 0]
    assert nz.min() > 0.3  # object votes: 0 or > 0.3, no clamp



def test_object_bookkeeping_takes_masks_of_another_size_like_lifting(object_assets, conformance_dir):
    """``selected_pixels_per_view`` / ``views_per_vertex`` indexed the masks with the maps' 1024² pixel numbers: the
    SAM 256² low-res masks (which ``lifter(...)`` takes directly) raised IndexError, and 2048² masks were read at
    the wrong pixels. They now resample like the lifting (bilinear, align_corners=False)."""
    e = np.load(conformance_dir / OBJECT / "expected" / "generate.npz")
    lifter = Lifter(object_assets, mode="object")
    low = e["low_res_masks"][:, 0]
    np.testing.assert_array_equal(lifter.selected_pixels_per_view(low), e["lift_selected_pixels_per_view"])
    np.testing.assert_array_equal(lifter.views_per_vertex(low), e["lift_views_per_vertex"])
    big = torch.nn.functional.interpolate(torch.as_tensor(e["low_res_masks"]), (2048, 2048), mode="bilinear",
                                          align_corners=False)[:, 0]
    ref = torch.nn.functional.interpolate(big[:, None], (1024, 1024), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_array_equal(lifter.selected_pixels_per_view(big), lifter.selected_pixels_per_view(ref.numpy()))
    np.testing.assert_array_equal(lifter.views_per_vertex(big), lifter.views_per_vertex(ref.numpy()))
    with pytest.raises(LiftError, match="views"):
        lifter.views_per_vertex(low[:3])


def test_torch_input_batched_and_modes(human_assets, conformance_dir):
    e = np.load(conformance_dir / HUMAN / "expected" / "generate.npz")
    logits = _ref_logits(e)
    lifter = Lifter(human_assets, mode="human")
    t = lifter(torch.as_tensor(logits))
    assert isinstance(t, torch.Tensor) and t.shape == (6890,)
    b = lifter(np.stack([logits, -logits]))
    assert b.shape == (2, 6890)
    np.testing.assert_allclose(b[0], t.numpy(), atol=1e-6)
    # legacy binary rule: 0/1 output; all-negative logits select nothing
    leg = Lifter(human_assets, mode="legacy_binary")
    out = leg(logits)
    assert set(np.unique(out)) <= {0.0, 1.0} and out.sum() > 0
    assert leg(np.full_like(logits, -5.0)).sum() == 0


def test_lifting_rules_on_a_tiny_map():
    """Two views of a 2x2 image over a 4-vertex mesh, hand-computed expectations."""
    ids = np.full((2, 2, 2, 3), -1, np.int64)
    bary = np.full((2, 2, 2, 3), -1.0, np.float32)
    ids[0, 0, 0], bary[0, 0, 0] = (0, 1, 2), (0.5, 0.25, 0.25)
    ids[0, 0, 1], bary[0, 0, 1] = (0, 1, 2), (0.0, 0.5, 0.5)
    ids[1, 1, 1], bary[1, 1, 1] = (0, 2, 9), (0.5, 0.5, 0.0)  # id 9 out of range -> pixel ignored
    ids[1, 1, 0], bary[1, 1, 0] = (0, 0, 2), (0.5, 0.25, 0.25)  # repeated id: weights add up
    logits = np.zeros((2, 2, 2), np.float32)
    logits[0, 0, 0], logits[0, 0, 1], logits[1, 1, 0] = 20.0, -20.0, 0.0
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c = Lifter((ids, bary, 4), mode="human")(logits)
    p0, p1 = sig(20.0), sig(-20.0)
    v0_view0 = (0.5 * p0 + 0.0 * p1) / 0.5
    v1 = (0.25 * p0 + 0.5 * p1) / 0.75
    v0_view1 = 0.5  # (0.75 * 0.5) / 0.75
    np.testing.assert_allclose(c[0], (v0_view0 + v0_view1) / 2, atol=1e-6)
    np.testing.assert_allclose(c[1], v1, atol=1e-6)
    np.testing.assert_allclose(c[2], ((0.25 * p0 + 0.5 * p1) / 0.75 + 0.5) / 2, atol=1e-6)
    assert c[3] == 0
    o = Lifter((ids, bary, 4), mode="object")(logits)  # only p > 0.3 pixels count
    np.testing.assert_allclose(o[1], p0, atol=1e-6)
    np.testing.assert_allclose(o[0], (p0 + 0.5) / 2, atol=1e-6)


def test_paint_draws_per_vertex_values_on_the_views():
    """CompactMaps.paint (per-vertex values -> views, what the overlay shows): each foreground pixel is the
    barycentric interpolation over its triangle, background 0; an id outside [0, N) zeroes its pixel."""
    ids = np.full((2, 2, 2, 3), -1, np.int64)
    bary = np.full((2, 2, 2, 3), -1.0, np.float32)
    ids[0, 0, 0], bary[0, 0, 0] = (0, 1, 2), (0.5, 0.25, 0.25)
    ids[0, 1, 1], bary[0, 1, 1] = (1, 2, 3), (0.0, 0.5, 0.5)
    ids[1, 1, 0], bary[1, 1, 0] = (0, 0, 2), (0.5, 0.25, 0.25)  # repeated id: its weights add up
    values = np.array([1.0, 0.2, 0.0, 0.6], np.float32)
    painted = CompactMaps.from_dense(ids, bary).paint(values)
    assert painted.shape == (2, 2, 2) and painted.dtype == np.float32
    expected = np.zeros((2, 2, 2), np.float32)
    expected[0, 0, 0] = 0.5 * 1.0 + 0.25 * 0.2
    expected[0, 1, 1] = 0.5 * 0.0 + 0.5 * 0.6
    expected[1, 1, 0] = 0.75 * 1.0
    np.testing.assert_allclose(painted, expected, atol=1e-7)
    ids[1, 0, 1], bary[1, 0, 1] = (0, 1, 9), (0.2, 0.3, 0.5)  # vertex 9 of a 4-vertex mesh
    painted = CompactMaps.from_dense(ids, bary).paint(values)
    assert painted[1, 0, 1] == 0
    np.testing.assert_allclose(painted[0], expected[0], atol=1e-7)
    # a constant paints every foreground pixel with it (barycentrics sum to 1): the silhouette
    maps = CompactMaps.from_dense(ids[:1], bary[:1])
    np.testing.assert_allclose(maps.paint(np.ones(4)), (ids[:1] >= 0).any(-1).astype(np.float32), atol=1e-7)


def test_fill_unseen_follows_the_mesh_not_the_air():
    """A U-shaped strip: vertex 5 (unseen) is 1 cm from visible vertex 0 through the air but 4 edges away from
    it along the mesh; along the mesh its nearest visible vertex is 4 — the fill must not jump the gap
    (fingers, inner thighs)."""
    #  0 - 1 - 2           (top arm,    y = 0.01)
    #  5 - 4 - 3           (bottom arm, y = 0), 2-3 joined: the bend
    v = np.array([[0, .01, 0], [1, .01, 0], [2, .01, 0], [2, 0, 0], [1, 0, 0], [0, 0, 0]], np.float64)
    v[:, 0] *= 0.1
    f = np.array([[0, 1, 1], [1, 2, 2], [2, 3, 3], [3, 4, 4], [4, 5, 5]])  # degenerate triangles = edges
    visible = np.array([1, 1, 0, 0, 1, 0], bool)
    idx = nearest_visible_index(visible, v, f)
    assert idx[5] == 4 and idx[2] == 1 and idx[3] == 4
    np.testing.assert_array_equal(idx[visible], np.flatnonzero(visible))
    iso = nearest_visible_index(np.array([1, 1, 0, 0, 0, 0], bool), v, np.array([[0, 1, 2]]))
    np.testing.assert_array_equal(iso, [0, 1, 1, 3, 4, 5])  # unconnected vertices keep themselves
    with pytest.raises(LiftError, match="does not match"):
        nearest_visible_index(visible, v[:4], f)


def test_lifter_fill_unseen():
    ids = np.full((1, 2, 2, 3), -1, np.int64)
    bary = np.full((1, 2, 2, 3), -1.0, np.float32)
    ids[0, 0, 0], bary[0, 0, 0] = (0, 1, 2), (1.0, 0.0, 0.0)  # vertices 1, 2 get weight 0: not seen
    ids[0, 0, 1], bary[0, 0, 1] = (1, 1, 1), (0.5, 0.25, 0.25)  # vertex 1 seen; vertex 2 and 3 never
    logits = np.array([[[3.0, -3.0], [0.0, 0.0]]], np.float32)
    verts = np.array([[0, 0, 0], [1, 0, 0], [0.1, 1, 0], [1, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    plain = Lifter((ids, bary, 4), mode="human")(logits)
    filled_lifter = Lifter((ids, bary, 4), mode="human", fill_unseen_from=(verts, faces))
    filled = filled_lifter(logits)
    assert plain[2] == plain[3] == 0 and filled_lifter.unseen_filled == 2
    np.testing.assert_allclose(filled[:2], plain[:2])
    assert filled[2] == plain[0] and filled[3] == plain[1]  # nearest along the edges: 2 -> 0, 3 -> 1
    batched = filled_lifter(np.stack([logits, -logits]))
    np.testing.assert_allclose(batched[0], filled)
    assert batched[1][3] == batched[1][1]


def test_lifting_errors(human_assets):
    lifter = Lifter(human_assets, mode="human")
    with pytest.raises(LiftError, match="views"):
        lifter(np.zeros((3, 1024, 1024), np.float32))
    with pytest.raises(LiftError, match=r"\[V,H,W\]"):
        lifter(np.zeros((1024, 1024), np.float32))
    with pytest.raises(LiftError, match="mode"):
        Lifter(human_assets, mode="soft")
    with pytest.raises(LiftError, match="vertex_ids"):
        Lifter(object(), mode="human")
    with pytest.raises(LiftError, match="shape"):
        CompactMaps.from_dense(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 2)))



def test_empty_and_bool_masks_are_named_errors_not_an_abort_or_contact_everywhere():
    """A [V,h,0] or [V,0,0] mask built a resize operator indexing pixel −1 and the process died in malloc (abort: the
    node gone); a bool mask was read as logits, all False = p 0.5 > 0.3 = contact on every seen vertex. Both are now
    LiftErrors. The abort is checked in a child process so that it cannot take the test session with it."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from interactvlm_ros.lift import Lifter, LiftError\n"
            "ids = np.zeros((1, 4, 4, 3), np.int64); ids[..., 1:] = (1, 2)\n"
            "bary = np.full((1, 4, 4, 3), 1 / 3, np.float32)\n"
            "lifter = Lifter((ids, bary, 3), mode='object')\n"
            "for shape in ((1, 0, 0), (1, 8, 0), (2, 1, 0, 8)):\n"
            "    try:\n"
            "        lifter(np.zeros(shape, np.float32))\n"
            "    except LiftError as exc:\n"
            "        assert 'empty mask size' in str(exc), exc\n"
            "    else:\n"
            "        raise SystemExit('no error for ' + str(shape))\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr[-500:])
    ids = np.zeros((1, 4, 4, 3), np.int64)
    ids[..., 1:] = (1, 2)
    lifter = Lifter((ids, np.full((1, 4, 4, 3), 1 / 3, np.float32), 3), mode="object")
    for mask in (np.zeros((1, 4, 4), bool), torch.zeros(1, 4, 4, dtype=torch.bool)):
        with pytest.raises(LiftError, match="bool mask"):
            lifter(mask)
    assert (lifter(np.where(np.zeros((1, 4, 4), bool), 20.0, -20.0)) == 0).all()  # the documented way

def test_official_loader_errors(tmp_path, conformance_dir):
    with pytest.raises(AssetError, match="pixel_to_vertex_map_1024.npz"):
        load_official_human_assets(tmp_path)
    with pytest.raises(AssetError, match="not a folder"):
        load_official_human_assets(tmp_path / "nope")
    with pytest.raises(AssetError, match="lift2d_dict.pkl"):
        load_lift2d_dict(tmp_path / "lift2d_dict.pkl")
    bad = tmp_path / "lift2d_dict.pkl"
    import joblib

    joblib.dump({"pixel_to_vertices_map": []}, bad)
    with pytest.raises(AssetError, match="not a demo lift2d_dict"):
        load_lift2d_dict(bad)
    # maps without the renders beside them: clear error naming the PNG
    src = conformance_dir / HUMAN / "data" / "hcontact_vitruvian"
    for n in ("pixel_to_vertex_map_1024.npz", "bary_coords_map_1024.npz"):
        (tmp_path / n).symlink_to(src / n)
    with pytest.raises(AssetError, match="body_render_norm_topfront.png"):
        load_official_human_assets(tmp_path)
