"""Bad input → clear status, no garbage poses; intrinsics/depth helpers; geometry units."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interactvlm_ros.recon.camera import (DepthError, IntrinsicsError, default_intrinsics, parse_K, validate_K,
                                          validate_depth)


def test_default_intrinsics():
    K = default_intrinsics(480, 640)
    assert K[0, 0] == K[1, 1] == pytest.approx(768.0)
    assert (K[0, 2], K[1, 2]) == (319.5, 239.5)
    assert validate_K(K, 480, 640) is not None


@pytest.mark.parametrize("K,word", [
    (np.zeros((3, 3)), "fx"),
    (np.array([[-500, 0, 320], [0, 500, 240], [0, 0, 1.0]]), "fx"),
    (np.array([[np.nan, 0, 320], [0, 500, 240], [0, 0, 1.0]]), "NaN"),
    (np.array([[2.0, 0, 320], [0, 2.0, 240], [0, 0, 1.0]]), "field of view"),
    (np.array([[500, 0, 320], [0, 100, 240], [0, 0, 1.0]]), "fx/fy"),
    (np.array([[500, 0, 5000], [0, 500, 240], [0, 0, 1.0]]), "principal point"),
    (np.eye(4), "shape"),
])
def test_bad_intrinsics_named(K, word):
    with pytest.raises(IntrinsicsError, match=word):
        validate_K(K, 480, 640)


def test_parse_K():
    K = parse_K("500,510,320,240")
    assert K[0, 0] == 500 and K[1, 1] == 510 and K[0, 2] == 320 and K[1, 2] == 240
    with pytest.raises(IntrinsicsError, match="fx,fy,cx,cy"):
        parse_K("500,320")


def test_depth_validation():
    with pytest.raises(DepthError, match="valid"):
        validate_depth(np.zeros((48, 64)), 48, 64)
    with pytest.raises(DepthError, match="valid"):
        validate_depth(np.full((48, 64), np.nan), 48, 64)
    with pytest.raises(DepthError, match="register"):
        validate_depth(np.ones((10, 10)), 48, 64)
    d = np.ones((48, 64), np.float32)
    d[0, 0] = np.nan
    d[0, 1] = -1
    out = validate_depth(d, 48, 64)
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[1, 1] == 1


def test_depth_npy_must_be_a_numeric_array(tmp_path):
    """A corrupt .npy, pickled data or an object/string array is a DepthError naming the fix (never unpickled); an
    integer array is millimetres (16UC1, as a 16-bit PNG), a float array metres, unless a scale is given."""
    from interactvlm_ros.recon.camera import load_depth

    (tmp_path / "garbage.npy").write_bytes(b"garbage")
    np.save(tmp_path / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "strings.npy", np.array([["1", "2"], ["3", "4"]]))
    for name in ("garbage", "object", "strings"):
        with pytest.raises(DepthError, match="not a numeric .npy depth array"):
            load_depth(tmp_path / f"{name}.npy")
    np.save(tmp_path / "mm.npy", np.full((4, 5), 1500, np.uint16))
    assert load_depth(tmp_path / "mm.npy", 0.001) == pytest.approx(np.full((4, 5), 1.5, np.float32))
    # a RealSense frame saved as it came (uint16 mm) was read as 1500 m: every pixel invalid, "all zero/NaN?"
    assert load_depth(tmp_path / "mm.npy") == pytest.approx(np.full((4, 5), 1.5, np.float32))
    np.save(tmp_path / "mm32.npy", np.full((4, 5), 1500, np.int32))
    assert load_depth(tmp_path / "mm32.npy") == pytest.approx(np.full((4, 5), 1.5, np.float32))
    np.save(tmp_path / "m.npy", np.full((4, 5), 1.5, np.float32))
    assert load_depth(tmp_path / "m.npy") == pytest.approx(np.full((4, 5), 1.5, np.float32))
    assert load_depth(tmp_path / "m.npy", 0.5) == pytest.approx(np.full((4, 5), 0.75, np.float32))


def test_8bit_depth_image_needs_a_scale(tmp_path):
    """An 8-bit depth image (a visualisation, or a JPEG) was read as millimetres: 0..0.255 m everywhere, all 'valid',
    silently wrong. It is a DepthError naming the fix unless its scale is given; 16-bit and float images are as before."""
    import cv2

    from interactvlm_ros.recon.camera import load_depth

    cv2.imwrite(str(tmp_path / "d8.png"), np.full((4, 5), 200, np.uint8))
    with pytest.raises(DepthError, match="8-bit.*--depth-scale"):
        load_depth(tmp_path / "d8.png")
    np.save(tmp_path / "d8.npy", np.full((4, 5), 200, np.uint8))
    with pytest.raises(DepthError, match="8-bit"):
        load_depth(tmp_path / "d8.npy")
    assert load_depth(tmp_path / "d8.png", 0.01) == pytest.approx(np.full((4, 5), 2.0, np.float32))
    cv2.imwrite(str(tmp_path / "d16.png"), np.full((4, 5), 2000, np.uint16))
    assert load_depth(tmp_path / "d16.png") == pytest.approx(np.full((4, 5), 2.0, np.float32))
    cv2.imwrite(str(tmp_path / "d32.tif"), np.full((4, 5), 2.0, np.float32))
    assert load_depth(tmp_path / "d32.tif") == pytest.approx(np.full((4, 5), 2.0, np.float32))


def _scaled_library_mesh(tmp_path, label, factor):
    import trimesh

    from interactvlm_ros.objects import load_mesh, lookup_object

    m = load_mesh(lookup_object(label).mesh_path)
    path = tmp_path / f"{label}_x{factor:g}.ply"
    trimesh.Trimesh(np.asarray(m.vertices, np.float64) * factor, m.faces, process=False).export(path)
    return path, float(np.ptp(m.vertices, 0).max())


def test_object_size_from_a_mesh_only_when_plausible_in_metres(tmp_path):
    """A mesh's extent is taken as metres when it is plausible (0.01–5 m, within a factor 3 of the label's catalog
    range); a bottle in millimetres (160) or decimetres (1.6) gets the catalog size by label, and ``why`` names the
    extent that was not used."""
    from interactvlm_ros.recon import object_size_for

    metric, ext = _scaled_library_mesh(tmp_path, "bottle", 1)
    assert object_size_for("bottle", str(metric)) == (pytest.approx(ext), f"extent of {metric.name}")
    for factor in (1000, 10):
        path, _ = _scaled_library_mesh(tmp_path, "bottle", factor)
        size, why = object_size_for("bottle", str(path))
        assert size == pytest.approx(0.25) and why.startswith("catalog size of 'bottle'") and path.name in why, why
    path, _ = _scaled_library_mesh(tmp_path, "racket", 1000)  # no catalog size for a racket: unknown
    size, why = object_size_for("racket", str(path))
    assert size is None and why.startswith("unknown") and path.name in why
    # the pipeline's library meshes (source 'library:<category>'): the catalog size by label first, else the library
    # mesh's own (metric) longest side; the generic stand-in of an unknown label has no size
    assert object_size_for("mug", "library:cup") == (pytest.approx(0.105), "catalog size of 'cup'")
    assert object_size_for("camera", "library:camera") == (pytest.approx(0.14), "the object library's 'camera' mesh")
    assert object_size_for("zorblax", "library:generic") == (None, "unknown")


def test_geometry_units():
    import torch

    from interactvlm_ros.recon.geometry import matrix_to_sixd, rotvec_to_matrix, sixd_to_matrix, umeyama
    from scipy.spatial.transform import Rotation

    rv = np.array([[0.3, -0.2, 0.9], [0, 0, 0], [1e-7, 0, 0]])
    R = rotvec_to_matrix(torch.tensor(rv)).numpy()
    assert np.allclose(R, Rotation.from_rotvec(rv).as_matrix(), atol=1e-6)
    # differentiable at 0: dR/drv is the cross-product basis there (R ≈ I + [rv]x)
    J = torch.autograd.functional.jacobian(rotvec_to_matrix, torch.zeros(3, dtype=torch.float64)).numpy()
    basis = np.zeros((3, 3, 3))
    for k, (i, j) in enumerate([(2, 1), (0, 2), (1, 0)]):  # rv_x: R[2,1] = +x, R[1,2] = -x; ...
        basis[i, j, k], basis[j, i, k] = 1.0, -1.0
    np.testing.assert_array_equal(J, basis)
    Rt = torch.tensor(R[0])
    assert torch.allclose(sixd_to_matrix(matrix_to_sixd(Rt)), Rt, atol=1e-6)
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    R0 = Rotation.from_rotvec([0.4, 0.1, -0.5]).as_matrix()
    Rf, tf = umeyama(src, src @ R0.T + [1, 2, 3])
    assert np.allclose(Rf, R0, atol=1e-8) and np.allclose(tf, [1, 2, 3], atol=1e-8)


def test_symmetry_rotation_error():
    from scipy.spatial.transform import Rotation

    from interactvlm_ros.recon.metrics import symmetries, symmetry_rotation_error
    from interactvlm_ros.synth import catalog

    box, _ = catalog.normalized_mesh("phone")
    s = symmetries(box)
    flip = Rotation.from_rotvec([0, np.pi, 0]).as_matrix()
    assert symmetry_rotation_error(flip, np.eye(3), s) == pytest.approx(0.0, abs=1e-6)
    r20 = Rotation.from_rotvec([0, np.radians(20), 0]).as_matrix()
    assert symmetry_rotation_error(r20, np.eye(3), s) == pytest.approx(20.0, abs=1e-3)
    chair, _ = catalog.normalized_mesh("chair")
    assert symmetry_rotation_error(flip, np.eye(3), symmetries(chair)) == pytest.approx(180.0, abs=1e-3)
    # tessellated round shapes: the rotated vertices land between the original ones (sampling, not shape)
    ball, _ = catalog.normalized_mesh("ball")
    assert len(symmetries(ball)["continuous"]) == 3
    assert symmetry_rotation_error(Rotation.random(random_state=1).as_matrix(), np.eye(3), symmetries(ball)) == 0.0
    helmet, _ = catalog.normalized_mesh("helmet")
    assert len(symmetries(helmet)["continuous"]) == 1
    for name in ("phone", "book", "laptop", "box", "skateboard", "cabinet", "stool", "chair", "table"):
        assert symmetries(catalog.normalized_mesh(name)[0])["continuous"] == [], name
    # the three-legged stool is the same after a third of a turn about its leg axis (the vertical, y); a quarter
    # turn is an error (seed 9000006's stool read 97° before n-fold turns were checked)
    stool = symmetries(catalog.normalized_mesh("stool")[0])
    third = Rotation.from_rotvec([0, 2 * np.pi / 3, 0]).as_matrix()
    assert symmetry_rotation_error(third, np.eye(3), stool) == pytest.approx(0.0, abs=0.05)  # axis from the SVD
    assert symmetry_rotation_error(third.T, np.eye(3), stool) == pytest.approx(0.0, abs=0.05)
    quarter = Rotation.from_rotvec([0, np.pi / 2, 0]).as_matrix()
    assert symmetry_rotation_error(quarter, np.eye(3), stool) == pytest.approx(30.0, abs=0.05)
    assert len(s["discrete"]) == 4  # the phone (a box): identity + three half-turns, no more


def test_grip_and_free_points_geometry():
    import trimesh

    from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    ov, of = np.asarray(box.vertices, float), np.asarray(box.faces)
    sub = trimesh.remesh.subdivide_to_size(ov, of, 0.03)
    ov, of = sub[0], sub[1]
    oc = (ov[:, 0] > 0.099).astype(np.float32)  # the +x face touches the "hand"
    hv = np.array([[0.11, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    hc = np.ones(len(hv))
    g = grip_poses(ov, of, oc, hv, hc)
    assert len(g) == 1
    assert np.allclose(g[0]["normal"], [1, 0, 0], atol=1e-6)  # outward normal of the touched face
    assert g[0]["centre"][0] == pytest.approx(0.1, abs=1e-6)
    pts, _ = free_grasp_points(ov, of, hv, hc, margin=0.05, body_margin=0.03)
    d = np.linalg.norm(pts[:, None] - hv[None], axis=-1).min(1)
    assert len(pts) > 0 and d.min() > 0.05
    assert not ((np.abs(pts[:, 1]) < 0.01) & (np.abs(pts[:, 2]) < 0.01) & (pts[:, 0] > 0.09)).any()  # under the hand


def _sheet(n=21, size=0.2, z=0.0, down=False):
    """An open flat n x n grid (one surface) at height z, wound so that its normals are +z (down: -z)."""
    xs = np.linspace(-size / 2, size / 2, n)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], 1)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij"))
    a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])  # counter-clockwise seen from +z
    return v, (f[:, ::-1] if down else f)


def _hand_above(z=0.01, contact_z=None):
    """A 'hand' over the origin: its contact layer (p = 1) at contact_z (default z), its bulk 2 cm higher (p = 0)."""
    g = np.linspace(-0.03, 0.03, 7)
    layer = np.array([[x, y, 0.0] for x in g for y in g])
    hv = np.concatenate([layer + [0, 0, z if contact_z is None else contact_z], layer + [0, 0, z + 0.02]])
    return hv, np.r_[np.ones(len(layer)), np.zeros(len(layer))]


@pytest.mark.parametrize("down", [False, True])
@pytest.mark.parametrize("contact_z", [0.002, -0.003])  # the hand's contact layer on / 3 mm through the sheet
def test_grip_normals_of_an_open_mesh_point_to_the_person(down, contact_z):
    """An open mesh (a sheet modelled as one surface, a single-sided scan, a mesh with holes) has no outside: its
    normals' sign is its winding's. A sheet wound -z with the hand on +z gave the grip normal -z, away from the hand
    (a planner approaching along -z came from under the sheet). Now the normals are turned to the person's side —
    the body's bulk near the patch, so a contact layer fitted a few mm through the sheet does not flip it."""
    from scipy.spatial.transform import Rotation

    from interactvlm_ros.recon.outputs import grip_poses

    ov, of = _sheet(down=down)
    hv, hc = _hand_above(contact_z=contact_z)
    oc = (np.linalg.norm(ov[:, :2], axis=1) < 0.03).astype(np.float32)
    for contact in (oc, None):  # object contact, and the 2 cm rule
        g = grip_poses(ov, of, contact, hv, hc)
        assert len(g) == 1
        assert np.allclose(g[0]["normal"], [0, 0, 1], atol=1e-6), (down, contact is None, g[0]["normal"])
        assert np.allclose(g[0]["pose"][:3, 2], [0, 0, 1], atol=1e-6)
    T = np.eye(4)  # the per-object cache path (tracking): the sheet and the hand moved together
    T[:3, :3], T[:3, 3] = Rotation.from_rotvec([0.4, -1.1, 0.3]).as_matrix(), [0.1, -0.2, 1.5]
    g = grip_poses(ov @ T[:3, :3].T + T[:3, 3], of, oc, hv @ T[:3, :3].T + T[:3, 3], hc, object_frame=(ov, T))
    assert len(g) == 1 and np.allclose(g[0]["normal"], T[:3, 2], atol=1e-6), g[0]["normal"]


def test_grip_normals_of_open_shells_and_layers_point_to_the_person():
    """A bowl (an open half-sphere shell, outward wound): the hand inside it gets the inner normal (+z at its bottom),
    the hand under it the outer one. An open two-layer sheet 5 mm thick (a thin part of a scan with holes), hand on
    top, patches by the 2 cm rule: both layers are in the patch and their normals cancelled (the hand 5 mm above it:
    no grip pose at all)."""
    import trimesh

    from interactvlm_ros.recon.outputs import grip_poses

    s = trimesh.creation.icosphere(3, radius=0.1)
    bowl = trimesh.Trimesh(s.vertices, s.faces[s.triangles_center[:, 2] < 0], process=True)
    bv, bf = np.asarray(bowl.vertices), np.asarray(bowl.faces)
    assert not bowl.is_watertight
    boc = (np.linalg.norm(bv - [0, 0, -0.1], axis=1) < 0.03).astype(np.float32)
    hv, hc = _hand_above(z=-0.09)
    for hand, want in ((hv, [0, 0, 1]), (hv * [1, 1, -1] - [0, 0, 0.2], [0, 0, -1])):  # inside / under the bowl
        g = grip_poses(bv, bf, boc, hand, hc)
        assert len(g) == 1 and np.allclose(g[0]["normal"], want, atol=1e-6), g[0]["normal"]
    t, tf = _sheet(z=0.0025)
    b, bf2 = _sheet(z=-0.0025, down=True)
    for z in (0.005, 0.0125):
        g = grip_poses(np.r_[t, b], np.r_[tf, bf2 + len(t)], None, *_hand_above(z=z))
        assert len(g) == 1 and np.allclose(g[0]["normal"], [0, 0, 1], atol=1e-6), (z, g)


def test_closed_mesh_grip_normals_are_used_as_they_are():
    """A closed mesh has one outward side: its grip normals stay the contact-weighted mean of its vertex normals,
    exactly, even when the fitted body is on its inner side (a hand sunk into the box) — only open meshes are turned
    to the person."""
    import trimesh

    from interactvlm_ros.recon import outputs
    from interactvlm_ros.recon.geometry import vertex_normals

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    ov, of = trimesh.remesh.subdivide_to_size(np.asarray(box.vertices, float), np.asarray(box.faces), 0.03)[:2]
    oc = (ov[:, 0] > 0.099).astype(np.float32)
    n = vertex_normals(ov, of).astype(np.float64)  # the old mean, as it was computed
    for x in (0.11, 0.08):  # hand outside the +x face / 2 cm inside the box
        hv = np.array([[x + dx, y, z] for dx in (0, 0.02 if x > 0.1 else -0.02)
                       for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
        hc = np.ones(len(hv))
        for frame in (None, (ov, np.eye(4))):
            g = outputs.grip_poses(ov, of, oc, hv, hc, object_frame=frame)
            assert len(g) == 1
            p = np.nonzero(oc > 0.3)[0]
            ref = (n[p] * oc[p, None]).sum(0)
            np.testing.assert_allclose(g[0]["normal"], ref / np.linalg.norm(ref), atol=1e-12)
            assert np.allclose(g[0]["normal"], [1, 0, 0], atol=1e-6)


def test_grip_origin_is_on_the_surface_of_a_patch_round_a_bottle():
    """A hand round a bottle (7 cm): the contact-weighted centre of the patch lay inside the bottle (1.3 cm for half its
    circumference, 2.5 cm for three quarters), so a planner approaching the grip pose along -z ended inside the
    object. Now the origin is moved along the normal onto the surface under the hand. A patch all round it has normals
    that cancel: no direction, so no grip pose (its z was rounding noise, e.g. (0.66, 0.75, 0))."""
    import trimesh

    from interactvlm_ros.recon.outputs import grip_poses

    cyl = trimesh.creation.cylinder(0.035, 0.2, sections=48)
    v, f = trimesh.remesh.subdivide_to_size(np.asarray(cyl.vertices, float), np.asarray(cyl.faces), 0.01)[:2]
    mesh = trimesh.Trimesh(v, f, process=False)
    ang = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    band = (np.hypot(v[:, 0], v[:, 1]) > 0.034) & (np.abs(v[:, 2]) < 0.04)
    for span in (180, 270, 360):
        c = (band & (np.abs(ang) <= span / 2 + 1e-6)).astype(float)
        hv = v[c > 0] * [1.3, 1.3, 1.0]
        for frame in (None, (v, np.eye(4))):
            g = grip_poses(v, f, c, hv, np.ones(len(hv)), object_frame=frame)
            if span == 360:
                assert g == [], g
                continue
            assert len(g) == 1 and np.allclose(g[0]["normal"], [1, 0, 0], atol=1e-4), g
            assert abs(trimesh.proximity.closest_point(mesh, g[0]["centre"][None])[1][0]) < 1e-6, (span, g[0]["centre"])
            np.testing.assert_allclose(g[0]["pose"][:3, 3], [0.035, 0, 0], atol=1e-5)


def test_vertices_no_face_uses_are_neither_free_grasp_points_nor_grip_points():
    """A mesh file with stray vertices (an OBJ or scan, read unprocessed) listed them as free grasp points, off the
    surface (here 0.77 m from it) with a zero normal; a stray vertex in contact pulled the grip centre off too."""
    import trimesh

    from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses

    s = trimesh.creation.icosphere(3, radius=0.1)
    ov, of = np.asarray(s.vertices), np.asarray(s.faces)
    hv = ov[ov[:, 0] > 0.08] * 1.1
    hc = np.ones(len(hv))
    oc = (ov[:, 0] > 0.085).astype(float)
    sv = np.r_[ov, [[0.5, 0.5, 0.5], [0.095, 0.0, 0.04]]]
    soc = np.r_[oc, 0.0, 1.0]
    ref = grip_poses(ov, of, oc, hv, hc)
    for frame in (None, (sv, np.eye(4))):
        pts, n = free_grasp_points(sv, of, hv, hc, object_frame=frame, obj_contact=soc)
        assert len(pts) > 0 and np.all(np.linalg.norm(pts, axis=1) < 0.1 + 1e-6), "a free point off the sphere"
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
        g = grip_poses(sv, of, soc, hv, hc, object_frame=frame)
        assert len(g) == 1
        np.testing.assert_allclose(g[0]["pose"], ref[0]["pose"], atol=1e-9)


def test_is_closed_agrees_with_trimesh_and_is_kept_per_mesh():
    """The closedness test (shared by the reconstructor's winding check and the grip poses) = trimesh's watertight
    for these meshes; the grip poses keep it in the mesh's per-mesh entry (tracking asks every frame)."""
    import trimesh

    from interactvlm_ros.recon import outputs
    from interactvlm_ros.recon.geometry import is_closed

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    hv = np.array([[0.11, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    for v, f in ((np.asarray(box.vertices, float), np.asarray(box.faces)), _sheet()):
        outputs.grip_poses(v, f, None, hv, np.ones(len(hv)), object_frame=(v, np.eye(4)))
        assert outputs._mesh_entry(v, f)["closed"] is (len(f) == 12)
    for m in (box, trimesh.creation.icosphere(2), trimesh.creation.cylinder(0.05, 0.2)):
        assert is_closed(m.faces, len(m.vertices)) is True
        assert is_closed(m.faces[3:], len(m.vertices)) is False  # a hole
    assert is_closed(_sheet()[1], 21 * 21) is False


@pytest.fixture(scope="module")
def recon():
    pytest.importorskip("anny")
    from interactvlm_ros.recon import Reconstructor

    return Reconstructor()


def _obs(found=True, n=64):
    from interactvlm_ros.perception.human import HumanObservation

    kp = np.zeros((33, 3), np.float32)
    kp[:, 0] = np.linspace(20, 40, 33)
    kp[:, 1] = np.linspace(5, 60, 33)
    kp[:, 2] = 1.0
    return HumanObservation(found=found, image_size=(n, n), keypoints_2d=kp)


def test_bad_inputs_give_status(recon):
    img = np.zeros((64, 64, 3), np.uint8)
    N = recon.body_fitter.poser.N
    hc = np.zeros(N)
    mesh = (np.random.default_rng(0).normal(size=(10, 3)) * 0.1, np.array([[0, 1, 2], [2, 3, 4]]))
    r = recon.fit(img, _obs(found=False), hc, None, mesh)
    assert r.status == "no_person" and r.object_pose is None and r.human_vertices_cam is None
    r = recon.fit(img, None, hc, None, mesh)
    assert r.status == "no_person"
    r = recon.fit(img, _obs(), hc, None, mesh, depth=np.zeros((64, 64)))
    assert r.status == "bad_depth" and "valid" in r.message and r.object_pose is None
    r = recon.fit(img, _obs(), hc, None, mesh, depth=np.full((64, 64), np.nan))
    assert r.status == "bad_depth"
    r = recon.fit(img, _obs(), hc, None, mesh, K=np.array([[0, 0, 32], [0, 0, 32], [0, 0, 1.0]]))
    assert r.status == "bad_intrinsics" and r.object_pose is None
    r = recon.fit(img, _obs(), hc, None, mesh, object_mask=np.zeros((64, 64), bool))
    assert r.status == "object_not_visible" and r.object_pose is None
    r = recon.fit(img, _obs(), np.zeros(100), None, mesh)
    assert r.status == "bad_input" and "Anny" in r.message
    r = recon.fit(img, _obs(), hc, np.zeros(3), mesh)
    assert r.status == "bad_input" and "object_contact" in r.message


def test_an_object_mesh_file_trimesh_cannot_read_is_bad_input(recon, tmp_path):
    """A mesh path trimesh has no reader for (an image passed by mistake) or a corrupt file: ``bad_input`` naming the
    file — an image raised NotImplementedError out of ``fit`` (a traceback in the CLI, no result.json)."""
    import cv2

    img = np.zeros((64, 64, 3), np.uint8)
    hc = np.zeros(recon.body_fitter.poser.N)
    cv2.imwrite(str(tmp_path / "mask.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "broken.glb").write_bytes(b"not a glb file at all")
    for name in ("mask.png", "broken.glb"):
        r = recon.fit(img, _obs(), hc, None, str(tmp_path / name))
        assert r.status == "bad_input" and name in r.message and "cannot be read as a mesh" in r.message, r.message


def test_object_size_must_be_positive_and_non_extent_sizes_are_named(recon, tmp_path):
    """object_size <= 0 or non-finite: bad_input (a negative size mirrored the object). A size that is not the mesh's
    own extent (by label, or the default) is a named fallback."""
    img = np.zeros((64, 64, 3), np.uint8)
    hc = np.zeros(recon.body_fitter.poser.N)
    mesh = (np.random.default_rng(0).normal(size=(10, 3)) * 0.1, np.array([[0, 1, 2], [2, 3, 4]]))
    for bad in (-0.2, 0.0, float("nan"), float("inf")):
        r = recon.fit(img, _obs(), hc, None, mesh, object_size=bad)
        assert r.status == "bad_input" and "object_size" in r.message and r.object_pose is None, (bad, r.message)
    path, ext = _scaled_library_mesh(tmp_path, "bottle", 1000)
    recon.fallbacks.clear()
    size, why = recon.object_size("bottle", str(path))
    assert size == pytest.approx(0.25) and why.startswith("catalog size")
    assert any(f.startswith("object size by label") and path.name in f for f in recon.fallbacks), recon.fallbacks
    recon.fallbacks.clear()
    size, why = recon.object_size("bottle", "library:bottle")  # a library label: its catalog size, named too
    assert size == pytest.approx(0.25) and any(f.startswith("object size by label") for f in recon.fallbacks)
    recon.fallbacks.clear()
    path, _ = _scaled_library_mesh(tmp_path, "racket", 1000)
    size, why = recon.object_size("racket", str(path))
    assert size == 0.25 and any("object size unknown for 'racket'" in f and path.name in f for f in recon.fallbacks)
    recon.fallbacks.clear()
    path, ext = _scaled_library_mesh(tmp_path, "bottle", 1)
    assert recon.object_size("bottle", str(path)) == (pytest.approx(ext), f"extent of {path.name}")
    assert recon.fallbacks == []


def test_object_behind_the_camera_is_never_ok(recon, test_data, monkeypatch):
    """An object fit whose centre ends behind the camera (z <= 0; e.g. a mesh far too large, not in metres) is
    'diverged' with a message, no object pose — never 'ok'."""
    pytest.importorskip("mediapipe")
    import cv2

    from interactvlm_ros.cli.reconstruct import hand_contact
    from interactvlm_ros.objects import load_mesh, lookup_object
    from interactvlm_ros.perception.human import HumanPerception
    from interactvlm_ros.recon.object_fit import ObjectFitResult

    image = cv2.cvtColor(cv2.imread(str(test_data / "person_catching_ball.png")), cv2.COLOR_BGR2RGB)
    obs = HumanPerception().observe(image)
    m = load_mesh(lookup_object("ball").mesh_path)
    ov = np.asarray(m.vertices, np.float64)
    pose = np.eye(4)

    def fit_behind(obj_vertices, *a, **kw):
        pose[:3, 3] = [0.0, 0.0, -0.3] - np.asarray(obj_vertices).mean(0)
        return ObjectFitResult(pose.copy(), np.asarray(obj_vertices) + pose[:3, 3], {})

    monkeypatch.setattr(recon.object_fitter, "fit", fit_behind)
    r = recon.fit(image, obs, hand_contact(recon.body_fitter.poser.N), None, (ov, m.faces))
    assert r.status == "diverged" and "behind the camera" in r.message and r.object_pose is None, r.message

    def fit_in_front(obj_vertices, *a, **kw):  # the same object 0.3 m in front of the camera: the check lets it pass
        pose[:3, 3] = [0.0, 0.0, 0.3] - np.asarray(obj_vertices).mean(0)
        return ObjectFitResult(pose.copy(), np.asarray(obj_vertices) + pose[:3, 3], {})

    monkeypatch.setattr(recon.object_fitter, "fit", fit_in_front)
    r = recon.fit(image, obs, hand_contact(recon.body_fitter.poser.N), None, (ov, m.faces))
    assert "behind the camera" not in r.message


def test_object_box_region_and_its_bad_inputs(recon):
    """A detector's box (x0, y0, x1, y1; x1/y1 exclusive, clipped to the image): a wrong one is named, one off the
    image is 'object_not_visible' — no poses either way."""
    from interactvlm_ros.recon.reconstructor import box_mask, box_pixels

    def box_region(box, H, W):
        px = box_pixels(box, H, W)
        return None if px is None else box_mask(px, H, W)

    m = box_region((10.2, 5, 20, 15.5), 32, 48)
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 19, 5, 15) and m.sum() == 10 * 11
    assert box_region((-30, -30, 5, 5), 32, 48).sum() == 25  # clipped
    assert box_region((100, 100, 200, 200), 32, 48) is None and box_region((0, 0, 3, 3), 32, 48) is None
    for bad, word in (((1, 2, 3), "four finite"), ((0, 0, np.nan, 5), "four finite"), ((5, 5, 2, 9), "x1 <= x0"),
                      ("a,b,c,d", "not numeric")):
        with pytest.raises(ValueError, match=word):
            box_region(bad, 32, 48)
    img = np.zeros((64, 64, 3), np.uint8)
    hc = np.zeros(recon.body_fitter.poser.N)
    mesh = (np.random.default_rng(0).normal(size=(10, 3)) * 0.1, np.array([[0, 1, 2], [2, 3, 4]]))
    r = recon.fit(img, _obs(), hc, None, mesh, object_box=(200, 200, 300, 300))
    assert r.status == "object_not_visible" and "box" in r.message and r.object_pose is None
    r = recon.fit(img, _obs(), hc, None, mesh, object_box=(9, 9, 1, 1))
    assert r.status == "bad_input" and "object_box" in r.message and r.object_pose is None


def test_a_penetrating_object_is_diverged_without_pose_grips_or_free_points(recon, monkeypatch):
    """'diverged' for penetration (> 3 cm) carried the object pose, grip poses and free points (written to
    result.json): now no pose, grips or free points, as every non-ok result; the meshes and metrics stay to look at.
    The same fit without the penetration is ok with all three (the body and object fits are doubles here, the
    penetration metric is set: the point is what the result carries)."""
    import trimesh

    import interactvlm_ros.recon.metrics as M
    from interactvlm_ros.recon.body_fit import BodyFitResult
    from interactvlm_ros.recon.object_fit import ObjectFitResult

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    ov, of = trimesh.remesh.subdivide_to_size(np.asarray(box.vertices, float), np.asarray(box.faces), 0.03)[:2]
    shift = np.array([0.0, 0.0, 2.5])
    N = recon.body_fitter.poser.N
    grid = np.array([[0.11, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    hv = grid[np.arange(N) % len(grid)] + shift  # a "hand" on the box's +x face
    body = BodyFitResult(None, hv, np.array([[0, 1, 2]]), np.zeros((75, 3)), {"reproj_rel": 0.01})
    pose = np.eye(4)
    pose[:3, 3] = shift
    monkeypatch.setattr(recon.body_fitter, "fit", lambda *a, **k: body)
    monkeypatch.setattr(recon.object_fitter, "fit", lambda v, *a, **k: ObjectFitResult(pose, v + shift, {}))
    args = (np.zeros((64, 64, 3), np.uint8), _obs(), np.ones(N), (ov[:, 0] > 0.099).astype(float), (ov, of))
    monkeypatch.setattr(M, "penetration_depth", lambda *a, **k: 0.0)
    ok = recon.fit(*args)
    assert ok.status == "ok" and ok.object_pose is not None, ok.message
    assert len(ok.human_grip_poses) >= 1 and len(ok.free_grasp_points) > 0
    monkeypatch.setattr(M, "penetration_depth", lambda *a, **k: 0.10)  # 10 cm inside the body
    r = recon.fit(*args)
    assert r.status == "diverged" and "penetrates the body by 10.0 cm" in r.message
    assert r.object_pose is None and r.human_grip_poses == []
    assert r.free_grasp_points is None and r.free_grasp_normals is None
    j = r.to_json()
    assert j["object_pose"] is None and j["human_grip_poses"] == [] and j["free_grasp_points"] == 0
    assert r.object_vertices_cam is not None and r.human_vertices_cam is not None and r.metrics["penetration_m"] == 0.10


def _box_scene(recon, monkeypatch, spy=None):
    """A 20 cm box 2.5 m in front of the camera and a "hand" (a 5x5 grid, repeated over the Anny topology) on its
    +x face; the body and object fits are doubles (the point is what the result carries). ``spy``: list receiving
    the ``init`` of each body fit and the ``init_pose`` of each object fit."""
    import trimesh

    import interactvlm_ros.recon.metrics as M
    from interactvlm_ros.recon.body_fit import BodyFitResult
    from interactvlm_ros.recon.object_fit import ObjectFitResult

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    ov, of = trimesh.remesh.subdivide_to_size(np.asarray(box.vertices, float), np.asarray(box.faces), 0.03)[:2]
    shift = np.array([0.0, 0.0, 2.5])
    N = recon.body_fitter.poser.N
    grid = np.array([[0.11, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    hv = grid[np.arange(N) % len(grid)] + shift
    pose = np.eye(4)
    pose[:3, 3] = shift

    def body_fit(*a, **k):
        if spy is not None:
            spy.append(("body", k.get("init")))
        return BodyFitResult(None, hv, np.array([[0, 1, 2]]), np.zeros((75, 3)), {"reproj_rel": 0.01})

    def object_fit(v, *a, **k):
        if spy is not None:
            spy.append(("object", k.get("init_pose")))
        return ObjectFitResult(pose, v + shift, {})

    monkeypatch.setattr(recon.body_fitter, "fit", body_fit)
    monkeypatch.setattr(recon.object_fitter, "fit", object_fit)
    monkeypatch.setattr(M, "penetration_depth", lambda *a, **k: 0.0)
    return ov, of, N


def test_result_json_is_strict_json_when_a_metric_is_nan(recon, monkeypatch, tmp_path):
    """A frame whose human contact is nowhere above 0.5 (the localizer sees no contact) has contact_distance_m = nan;
    result.json carried it as the bare token NaN, which is not JSON (strict parsers, e.g. a planner's, reject the
    file). Now a non-finite number is null and the file is strict JSON."""
    import json

    from interactvlm_ros.recon.outputs import save_outputs

    ov, of, N = _box_scene(recon, monkeypatch)
    img = np.zeros((64, 64, 3), np.uint8)
    r = recon.fit(img, _obs(), np.full(N, 0.4), None, (ov, of))
    assert r.status == "ok" and np.isnan(r.metrics["contact_distance_m"])
    save_outputs(r, img, tmp_path)
    text = (tmp_path / "result.json").read_text()

    def reject(c):
        raise ValueError(f"non-JSON constant {c}")

    res = json.loads(text, parse_constant=reject)
    assert res["metrics"]["contact_distance_m"] is None and res["status"] == "ok"
    json.dumps(r.to_json(), allow_nan=False)  # to_json itself is JSON-safe


def test_free_grasp_points_never_lie_on_the_objects_contact():
    """The object's contact covers the whole +x face, the fitted hand only its middle 10x10 cm: the face's corners are
    more than 5 cm from the hand, and were listed as free grasp points although they are on the grip patch."""
    import trimesh

    from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    ov, of = trimesh.remesh.subdivide_to_size(np.asarray(box.vertices, float), np.asarray(box.faces), 0.03)[:2]
    oc = (ov[:, 0] > 0.099).astype(np.float32)
    hv = np.array([[0.11, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    hc = np.ones(len(hv))
    assert len(grip_poses(ov, of, oc, hv, hc)) == 1
    pts, n = free_grasp_points(ov, of, hv, hc, obj_contact=oc)
    assert len(pts) > 0 and len(n) == len(pts)
    assert not (pts[:, 0] > 0.099).any()  # nothing on the contact face
    for frame in (None, (ov, np.eye(4))):  # the per-object cache path too
        p2, _ = free_grasp_points(ov, of, hv, hc, object_frame=frame, obj_contact=oc)
        assert len(p2) == len(pts) and not (p2[:, 0] > 0.099).any()


def test_free_grasp_points_of_a_fit_exclude_the_objects_contact(recon, monkeypatch):
    ov, of, N = _box_scene(recon, monkeypatch)
    oc = (ov[:, 0] > 0.099).astype(float)
    r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), np.ones(N), oc, (ov, of))
    assert r.status == "ok" and len(r.free_grasp_points) > 0
    assert not (r.free_grasp_points[:, 0] > 0.099).any()


def test_a_non_finite_object_contact_is_bad_input(recon, monkeypatch):
    """human_contact with NaN was bad_input, object_contact with NaN was not checked: its NaN vertices read as no
    contact, and free grasp points were listed on the grip face (p > 0.3 everywhere there)."""
    ov, of, N = _box_scene(recon, monkeypatch)
    oc = (ov[:, 0] > 0.099).astype(float)
    oc[np.nonzero(oc)[0][::2]] = np.nan
    r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), np.ones(N), oc, (ov, of))
    assert r.status == "bad_input" and "object_contact" in r.message, (r.status, r.message)
    assert r.object_pose is None and r.free_grasp_points is None


def test_an_inward_wound_object_mesh_gets_outward_grip_normals(recon, monkeypatch):
    """A closed mesh whose faces are listed clockwise (negative volume; some exporters) gave every normal pointing
    into the object: the grip pose's z (documented: the outward object normal) pointed into the box. Its faces are
    now flipped (a named fallback); an outward-wound mesh is used as it is."""
    ov, of, N = _box_scene(recon, monkeypatch)
    oc = (ov[:, 0] > 0.099).astype(float)
    for faces in (of, of[:, ::-1]):
        recon.fallbacks.clear()
        r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), np.ones(N), oc, (ov, faces))
        assert r.status == "ok" and len(r.human_grip_poses) == 1
        assert np.allclose(r.human_grip_poses[0]["normal"], [1, 0, 0], atol=1e-6), r.human_grip_poses[0]["normal"]
        assert np.allclose(r.human_grip_poses[0]["pose"][:3, 2], [1, 0, 0], atol=1e-6)
        assert (faces is of) != any("wound inwards" in f for f in recon.fallbacks), recon.fallbacks
    # the winding is remembered in its own cache: the outputs' 4-slot per-mesh cache holds the meshes they use only
    from interactvlm_ros.recon import outputs
    from interactvlm_ros.recon.reconstructor import _inward_wound_cached

    outputs._MESH_CACHE.clear()
    assert _inward_wound_cached(ov, of[:, ::-1]) is True and _inward_wound_cached(ov, of) is False
    assert outputs._MESH_CACHE == []


def test_tracker_starts_a_new_track_when_the_object_mesh_or_the_camera_changes(recon, monkeypatch):
    """Tracker.update warm-started from the previous pose even when the object mesh (another object, or the same one
    with another origin) or K changed: with the real fits, the ball of tests/data/person_catching_ball.png given with
    its mesh origin moved 0.5 m came out 'ok' 0.49 m from where the cold fit had put it. Now such a change starts a
    new track (a cold fit); the same mesh and K again warm-start."""
    from interactvlm_ros.recon import Tracker

    spy: list = []
    ov, of, N = _box_scene(recon, monkeypatch, spy)
    tr = Tracker(recon)
    img = np.zeros((64, 64, 3), np.uint8)
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]])
    oc = (ov[:, 0] > 0.099).astype(float)

    def frame(mesh, K=K, **kw):
        spy.clear()
        r = tr.update(img, _obs(), np.ones(N), object_contact=oc, object_mesh=mesh, K=K, **kw)
        assert r.status == "ok", r.message
        return dict(spy)["object"] is not None, r.metrics["warm_start"]

    assert frame((ov, of)) == (False, False)  # first frame: cold
    assert frame((ov.copy(), of.copy())) == (True, True)  # the same mesh (equal arrays): warm
    assert frame((ov + [0.5, 0, 0], of)) == (False, False)  # another mesh frame: cold
    assert frame((ov + [0.5, 0, 0], of)) == (True, True)
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 60.0
    assert frame((ov + [0.5, 0, 0], of), K=K2) == (False, False)  # another camera: cold
    assert frame((ov + [0.5, 0, 0], of), K=K2, object_size=0.3) == (False, False)  # another size: cold


def test_a_closed_stl_mesh_is_closed(tmp_path):
    """An STL file gives every face its own three vertices (an OBJ with UV seams repeats vertices too); loaded
    unprocessed, no two faces shared a vertex index, so a closed box counted as open: its grip normals took the
    open-mesh rule, and the inward-wound check never flipped an inward STL. Edges are now compared by position."""
    import trimesh

    from interactvlm_ros.recon.geometry import is_closed
    from interactvlm_ros.recon.reconstructor import _inward_wound, _mesh_arrays

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    v, f = np.asarray(box.vertices, float)[box.faces].reshape(-1, 3), np.arange(36).reshape(12, 3)  # STL layout
    assert is_closed(f, len(v), v) and not is_closed(f[1:], len(v), v)  # a missing face is a hole
    assert _inward_wound(v, f[:, ::-1]) and not _inward_wound(v, f)
    box.export(tmp_path / "box.stl")  # the file as trimesh reads it for the fit (process=False)
    sv, sf = _mesh_arrays(str(tmp_path / "box.stl"))
    assert len(sv) == 36 and is_closed(sf, len(sv), sv)


def test_empty_grip_and_free_outputs_say_why(recon, monkeypatch):
    """An ok reconstruction with no grip pose (no object contact) or no free grasp point (everything in contact) gave
    empty lists with nothing saying why; metrics grip_poses_none / free_grasp_none (result.json, /diagnostics) do."""
    ov, of, N = _box_scene(recon, monkeypatch)
    img = np.zeros((64, 64, 3), np.uint8)
    r = recon.fit(img, _obs(), np.ones(N), (ov[:, 0] > 0.099).astype(float), (ov, of))
    assert r.status == "ok" and r.human_grip_poses and "grip_poses_none" not in r.metrics
    r = recon.fit(img, _obs(), np.ones(N), np.ones(len(ov)), (ov, of))
    assert r.status == "ok" and not len(r.free_grasp_points) and "in contact" in r.metrics["free_grasp_none"]
    assert json.loads(json.dumps(r.to_json()))["metrics"]["free_grasp_none"] == r.metrics["free_grasp_none"]
    r = recon.fit(img, _obs(), np.ones(N), np.zeros(len(ov)), (ov, of))
    assert r.status == "ok" and r.human_grip_poses == [] and "no contact patch" in r.metrics["grip_poses_none"]


def test_symmetry_group_is_closed_so_a_fit_equal_modulo_symmetry_reads_zero():
    """A hexagonal prism: sixth turns about its axis and half-turn flips; their products (the other flips) were
    missing, so a perfect fit turned by one of them read 60°."""
    import trimesh
    from scipy.spatial.transform import Rotation

    from interactvlm_ros.recon.geometry import rotation_angle_deg
    from interactvlm_ros.recon.metrics import symmetries, symmetry_rotation_error

    for sections, order in ((6, 12), (4, 8)):
        s = symmetries(trimesh.creation.cylinder(radius=0.5, height=0.3, sections=sections).vertices)
        assert len(s["discrete"]) == order  # the dihedral group: n turns x (no flip, flip)
        for A in s["discrete"]:
            for B in s["discrete"]:
                assert min(rotation_angle_deg(A @ B, S) for S in s["discrete"]) < 1e-3
        R_gt = Rotation.random(random_state=3).as_matrix()
        for S in s["discrete"]:
            assert symmetry_rotation_error(R_gt @ S, R_gt, s) == pytest.approx(0.0, abs=1e-3)
