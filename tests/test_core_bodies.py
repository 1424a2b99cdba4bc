"""Body models: the shipped Anny Vitruvian template, part labels, keypoints, posing, SMPL errors."""
from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from interactvlm_ros.bodies import PART_NAMES, BodyError, get_body_model

REQUIRED_PARTS = ["head", "torso", "back", "hips", "left_upper_arm", "right_upper_arm", "left_forearm",
                  "right_forearm", "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin",
                  "left_foot", "right_foot"]


@pytest.fixture(scope="module")
def anny():
    return get_body_model("anny")


def test_template_loads_fast_with_valid_topology(anny):
    t = time.perf_counter()
    from interactvlm_ros.bodies import AnnyBody

    AnnyBody()  # uncached load of the shipped npz (no Anny build)
    assert time.perf_counter() - t < 2.0  # generous: it is ~20 ms; guards against building the model here
    v, f = anny.template_vertices, anny.faces
    assert v.dtype == np.float32 and v.shape == (13718, 3) and anny.num_vertices == 13718
    assert f.dtype == np.int64 and f.shape == (27420, 3)
    assert f.min() == 0 and f.max() == 13717
    assert np.isfinite(v).all()
    assert len(np.unique(f)) == 13718  # every vertex is used by a face


def _flip_diagonal(faces, i):
    """Faces i, i+1 (one quad, as Anny emits them) split along the quad's other diagonal."""
    f = faces.copy()
    shared = sorted(set(f[i]) & set(f[i + 1]))
    r = (set(f[i]) - set(shared)).pop()
    s = (set(f[i + 1]) - set(shared)).pop()
    f[i], f[i + 1] = [r, s, shared[0]], [s, r, shared[1]]
    return f


def test_an_anny_install_that_splits_quads_the_other_way_poses_the_shipped_triangulation(anny):
    """Anny picks each quad's diagonal from float positions, so near-square quads flip between installs (seen: 6
    quads on a fresh machine with the same anny wheel): the posers keep the shipped faces; any other topology
    difference is a BodyError naming the template file and the regenerate command."""
    import torch

    from interactvlm_ros.bodies import TEMPLATE_PATH
    from interactvlm_ros.bodies.anny_model import package_faces, same_quad_mesh

    shipped = anny.faces
    quads = [i for i in range(0, 2000) if len(set(shipped[i]) | set(shipped[i + 1])) == 4][:3]
    assert len(quads) == 3
    flipped = shipped
    for i in quads:
        flipped = _flip_diagonal(flipped, i)
    assert (flipped != shipped).any(1).sum() == 6 and same_quad_mesh(shipped, flipped)
    other = flipped.copy()
    other[quads[0]] = [0, 1, 2]  # not the same quad any more
    assert not same_quad_mesh(shipped, other) and not same_quad_mesh(shipped, flipped[:-1])

    class Installed:  # the two things package_faces reads from an anny model
        def __init__(self, faces, n=anny.num_vertices):
            self.faces, self.template_vertices = faces, torch.zeros(n, 3)

        def get_triangular_faces(self):
            return torch.as_tensor(self.faces)

    np.testing.assert_array_equal(package_faces(Installed(flipped)), shipped)
    for bad in (Installed(other), Installed(flipped, n=anny.num_vertices + 1)):
        with pytest.raises(BodyError, match="make_anny_template") as err:
            package_faces(bad)
        assert str(TEMPLATE_PATH) in str(err.value)


def test_template_is_vitruvian_in_the_official_frame(anny):
    v = anny.template_vertices
    J = dict(zip(anny.bone_labels, anny.template_joints))
    # y up: head on top, feet at the bottom; placed like SMPL-H (pelvis ≈ (0, −0.22, 0), feet ≈ −1.0)
    assert J["head"][1] > 0.3 and J["foot.L"][1] < -0.85
    assert abs(J["root"][1] + 0.22) < 1e-4 and abs(J["root"][0]) < 1e-4
    assert -1.1 < v[:, 1].min() < -0.95 and 0.45 < v[:, 1].max() < 0.6
    # arms in T along ±x: shoulder→wrist direction within 1° of ±x, left arm at +x
    for side, sg in (("L", 1), ("R", -1)):
        arm = J[f"wrist.{side}"] - J[f"upperarm01.{side}"]
        assert np.degrees(np.arccos(sg * arm[0] / np.linalg.norm(arm))) < 1.0
        leg = J[f"foot.{side}"] - J[f"upperleg01.{side}"]
        assert abs(np.degrees(np.arctan2(sg * leg[0], -leg[1])) - 30.0) < 1.0  # abducted 30°
        assert abs(leg[2]) < 0.02
    # facing +z: the nose (head part's most forward vertex) is in front of the head joint
    head = v[anny.part_vertex_ids("head")]
    assert head[:, 2].max() - J["head"][2] > 0.08
    # left/right symmetric about x = 0
    assert abs(v[:, 0].max() + v[:, 0].min()) < 1e-3


def test_part_labels_cover_required_parts_and_sides(anny):
    assert anny.part_names == PART_NAMES
    for p in REQUIRED_PARTS:
        assert p in anny.part_names
    counts = np.bincount(anny.part_labels, minlength=len(anny.part_names))
    assert (counts > 0).all() and counts.sum() == anny.num_vertices
    v = anny.template_vertices
    for p in anny.part_names:
        c = v[anny.part_vertex_ids(p)].mean(0)
        if p.startswith("left_"):
            assert c[0] > 0.05, p
        elif p.startswith("right_"):
            assert c[0] < -0.05, p
    # torso (front) vs back, hips vs buttocks: split by facing direction
    assert v[anny.part_vertex_ids("torso"), 2].mean() > v[anny.part_vertex_ids("back"), 2].mean() + 0.05
    assert v[anny.part_vertex_ids("hips"), 2].mean() > v[anny.part_vertex_ids("buttocks"), 2].mean() + 0.05
    # hands at the far ends of the T, feet lowest
    assert v[anny.part_vertex_ids("left_hand"), 0].min() > 0.6
    assert v[anny.part_vertex_ids("left_foot"), 1].mean() < v[anny.part_vertex_ids("left_shin"), 1].mean()
    with pytest.raises(KeyError, match="no part 'tail'"):
        anny.part_vertex_ids("tail")


def test_keypoint_regressor_on_template(anny):
    kp = anny.keypoints(anny.template_vertices)
    J = dict(zip(anny.bone_labels, anny.template_joints))
    ref = np.stack([J[n] for n in anny.keypoint_names])
    assert kp.shape == (len(anny.keypoint_names), 3)
    assert np.linalg.norm(kp - ref, axis=1).max() < 0.03
    batched = anny.keypoints(np.stack([anny.template_vertices] * 2))
    assert batched.shape == (2,) + kp.shape and np.allclose(batched[1], kp)
    with pytest.raises(ValueError, match="13718"):
        anny.keypoints(anny.template_vertices[:100])


def test_pose_reproduces_template_and_moves_bones(anny):
    """Builds the posable Anny (cache in paths.cache_dir('anny'); ~5 s warm)."""
    v = anny.pose(anny.vitruvian_rotvecs)
    assert np.abs(v - anny.template_vertices).max() < 1e-4
    rest, jr = anny.pose(None, return_joints=True)
    # world rotation of the left upper arm by +90° about z (body frame): the whole arm turns rigidly about the
    # shoulder, so shoulder→wrist is the rest vector rotated by Rz(90°) (x, y) → (−y, x): the arm goes up
    up, ju = anny.pose({"upperarm01.L": [0, 0, np.pi / 2]}, world=True, return_joints=True)
    w = anny.bone_labels.index("wrist.L")
    s = anny.bone_labels.index("upperarm01.L")
    d0, d1 = jr[w] - jr[s], ju[w] - ju[s]
    assert np.allclose(d1, [-d0[1], d0[0], d0[2]], atol=1e-4)
    assert d1[1] > 0.2
    r = anny.bone_labels.index("wrist.R")
    assert np.allclose(ju[r], jr[r], atol=1e-5)  # the other arm did not move
    # batched + phenotype + keypoints follow a random pose
    rng = np.random.default_rng(0)
    rot = rng.normal(0.0, 0.3, (2, len(anny.bone_labels), 3))
    vb, jb = anny.pose(rot, phenotype={"height": 0.8}, return_joints=True)
    assert vb.shape == (2, 13718, 3) and jb.shape == (2, len(anny.bone_labels), 3)
    idx = [anny.bone_labels.index(n) for n in anny.keypoint_names]
    err = np.linalg.norm(anny.keypoints(vb) - jb[:, idx], axis=-1)
    assert err.max() < 0.05
    with pytest.raises(ValueError, match="phenotype"):
        anny.pose(None, phenotype={"shoe_size": 1.0})
    with pytest.raises(KeyError, match="no bone"):
        anny.pose({"tail01": [0, 0, 1]})


def test_bad_body_specs_name_the_fix(tmp_path):
    with pytest.raises(BodyError, match="SMPLH_NEUTRAL.pkl"):
        get_body_model(f"smplh:{tmp_path}")
    with pytest.raises(BodyError, match="SMPLX_NEUTRAL.npz"):
        get_body_model(f"smplx:{tmp_path / 'nope'}")
    with pytest.raises(BodyError, match="unknown body model 'mannequin'"):
        get_body_model("mannequin")
    with pytest.raises(BodyError):
        get_body_model("")
    bad = tmp_path / "SMPLH_NEUTRAL.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(BodyError, match="cannot load"):
        get_body_model(f"smplh:{bad}")


# --------------------------------------------------------------------------------- SMPL-H through smplx
def _write_fake_smplh(path, seed=0):
    """Synthetic SMPL-H-format file (6890 vertices, 52 joints, one-hot skinning) — NOT the real model."""
    rng = np.random.default_rng(seed)
    N, J = 6890, 52
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
    for wrist in (20, 21):
        for f in range(5):
            parents += [wrist, len(parents), len(parents) + 1]
    joints = rng.normal(0, 0.3, (J, 3))
    joints[1], joints[2] = (0.1, -0.3, 0), (-0.1, -0.3, 0)
    owner = np.arange(N) % J
    v = joints[owner] + rng.normal(0, 0.05, (N, 3))
    Jreg = np.zeros((J, N))
    for j in range(J):
        Jreg[j, owner == j] = 1.0 / (owner == j).sum()
    # make the regressed joints exactly the vertex means
    weights = np.eye(J)[owner]
    faces = np.stack([np.arange(N - 2), np.arange(1, N - 1), np.arange(2, N)], 1)
    d = dict(v_template=v, shapedirs=np.zeros((N, 3, 10)), posedirs=np.zeros((N, 3, (J - 1) * 9), np.float32),
             J_regressor=Jreg, kintree_table=np.array([[2**32 - 1] + parents[1:], list(range(J))]), weights=weights,
             f=faces, hands_componentsl=np.eye(45), hands_componentsr=np.eye(45), hands_meanl=np.zeros(45),
             hands_meanr=np.zeros(45))
    with open(path, "wb") as fh:
        pickle.dump(d, fh)
    return d


def test_smplh_vitruvian_pose_on_a_synthetic_model_file(tmp_path):
    """A synthetic file in the SMPL-H format (the real model cannot be shipped): the template must be the official
    Vitruvian pose — left hip +30° about z, right hip −30° — applied through smplx."""
    pytest.importorskip("smplx")
    folder = tmp_path / "models" / "smplh"
    folder.mkdir(parents=True)
    d = _write_fake_smplh(folder / "SMPLH_NEUTRAL.pkl")
    body = get_body_model(f"smplh:{tmp_path / 'models'}")  # finds models/smplh/SMPLH_NEUTRAL.pkl
    assert body.name == "smplh" and body.num_vertices == 6890 and body.faces.shape == (6888, 3)
    owner = np.arange(6890) % 52
    J = d["J_regressor"] @ d["v_template"]
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    for joint, sign in ((1, 1.0), (2, -1.0)):  # left hip +30°, right hip −30° about z
        Rz = np.array([[c, -sign * s, 0], [sign * s, c, 0], [0, 0, 1]])
        sel = owner == joint
        expected = (d["v_template"][sel] - J[joint]) @ Rz.T + J[joint]
        assert np.abs(body.template_vertices[sel] - expected).max() < 1e-5
    other = ~np.isin(owner, [1, 2, 4, 5, 7, 8, 10, 11])  # not on the legs: unchanged
    assert np.abs(body.template_vertices[other] - d["v_template"][other]).max() < 1e-5
    assert set(body.part_names) >= set(REQUIRED_PARTS) and body.part_labels.shape == (6890,)
    assert body.keypoints(body.template_vertices).shape == (22, 3)
    assert np.allclose(body.pose(), body.template_vertices, atol=1e-6)


def test_smpl_model_file_of_any_name_loads_as_the_kind_asked(tmp_path):
    """smplx.create took the model type from the file's name, not from the spec: the SMPL-H download laid out as
    'smplh/neutral/model.npz' (AMASS / MANO site) failed as 'Unknown model type model.npz', and a SMPL-H file given
    as 'smplx:' loaded silently as a SMPL-H model named smplx."""
    pytest.importorskip("smplx")
    folder = tmp_path / "smplh" / "neutral"
    folder.mkdir(parents=True)
    d = _write_fake_smplh(folder / "model.pkl")
    np.savez(folder / "model.npz", **d)
    for name in ("model.pkl", "model.npz"):
        body = get_body_model(f"smplh:{folder / name}")
        assert body.name == "smplh" and type(body.model).__name__ == "SMPLH" and body.num_vertices == 6890, name
    renamed = tmp_path / "SMPLH_NEUTRAL.pkl"
    renamed.write_bytes((folder / "model.pkl").read_bytes())
    with pytest.raises(BodyError, match=r"smplx: cannot load .*SMPLH_NEUTRAL.pkl.*SMPLX_NEUTRAL.npz"):
        get_body_model(f"smplx:{renamed}")


def test_warp_kernel_cache_follows_the_interactvlm_cache_when_the_home_is_unusable(tmp_path, monkeypatch, caplog):
    """Anny's skinning initialises warp, which compiles into ~/.cache/warp/<version>: a read-only (or missing) home
    raised PermissionError out of anny.Anny() — ContactEstimator(reconstruct=True) could not start — even with
    INTERACTVLM_CACHE_DIR set as the error told. Now the kernels go under paths.cache_dir("warp") (logged); a usable
    default, WARP_CACHE_PATH or a kernel_cache_dir of the user's own is left alone."""
    warp_config = pytest.importorskip("warp.config")
    from interactvlm_ros.bodies import anny_model

    monkeypatch.delenv("WARP_CACHE_PATH", raising=False)
    monkeypatch.setattr(warp_config, "kernel_cache_dir", None)  # warp not initialised yet in this "process"
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "iv"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))  # usable: warp's own choice stands
    anny_model._warp_cache_fallback()
    assert warp_config.kernel_cache_dir is None
    blocker = tmp_path / "file"  # a read-only home (root ignores permissions: a file where the folder must go)
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with caplog.at_level("WARNING", logger="interactvlm_ros.bodies.anny_model"):
        anny_model._warp_cache_fallback()
    assert warp_config.kernel_cache_dir == str(tmp_path / "iv" / "warp")
    assert any("fallback: warp kernel cache" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(warp_config, "kernel_cache_dir", "/users/own/choice")
    anny_model._warp_cache_fallback()
    assert warp_config.kernel_cache_dir == "/users/own/choice"
