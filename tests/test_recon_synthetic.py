"""Reconstruction on held-out synthetic scenes (generator ground truth): human, object pose, contact."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("anny")
pytest.importorskip("embreex")

# held-out seeds far outside any dataset range (the generator's splits start at seed 0)
CASES = [(9000001, "hold_one_hand", "phone")]


@pytest.fixture(scope="module")
def scenes():
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    gen = Generator(GeneratorConfig(mask_res=32))
    return [gen.sample(s, inter, cat) for s, inter, cat in CASES]


@pytest.fixture(scope="module")
def recon():
    from interactvlm_ros.recon import Reconstructor

    return Reconstructor()


def _fit(recon, s, depth: bool):
    from interactvlm_ros.recon import observation_from_sample
    from interactvlm_ros.synth import catalog

    nv, nf = catalog.normalized_mesh(str(s["object_category"]))
    sc = float(s["object_scale"])
    return recon.fit(s["image"], observation_from_sample(s), s["human_contact"], s["object_contact"], (nv * sc, nf),
                     depth=s["depth"] if depth else None, K=s["K"], object_mask=s["object_mask"])


def _errors(rec, s):
    from interactvlm_ros.recon.metrics import contact_distance, symmetries, symmetry_rotation_error, vertex_error
    from interactvlm_ros.synth import catalog

    nv, nf = catalog.normalized_mesh(str(s["object_category"]))
    sc = float(s["object_scale"])
    P = s["object_pose_cam"]
    return {
        "human": vertex_error(rec.human_vertices_cam, s["human_vertices_cam"]),
        "trans": float(np.linalg.norm(rec.object_pose[:3, 3] - P[:3, 3])),
        "rot": symmetry_rotation_error(rec.object_pose[:3, :3], P[:3, :3] / sc, symmetries(nv)),
        "contact": contact_distance(rec.object_vertices_cam, nf, rec.human_vertices_cam, s["human_contact"]),
    }


def test_with_depth_meets_targets(recon, scenes):
    for s in scenes:
        rec = _fit(recon, s, depth=True)
        assert rec.status == "ok", rec.message
        e = _errors(rec, s)
        print("with depth", int(s["seed"]), {k: round(v, 4) for k, v in e.items()})
        assert e["human"] <= 0.05, e
        assert e["trans"] <= 0.03, e
        # the target: human contact vertices → fitted object surface ≤ 1 cm (0.79 cm here; the GT meshes
        # themselves score 1.09 cm on this scene, GT contact being "within 2 cm")
        assert e["contact"] <= 0.01, e
        # outputs a planner uses
        assert rec.object_pose.shape == (4, 4) and np.allclose(rec.object_pose[3], [0, 0, 0, 1])
        assert len(rec.human_grip_poses) >= 1
        g = rec.human_grip_poses[0]
        assert np.allclose(np.linalg.det(g["pose"][:3, :3]), 1.0, atol=1e-6)
        assert g["human_distance"] < 0.03  # the grip patch is where the hand is
        assert rec.free_grasp_points is not None and len(rec.free_grasp_points) > 0
        hc = rec.human_vertices_cam[rec.human_contact > 0.5]
        d = np.linalg.norm(rec.free_grasp_points[:, None] - hc[None], axis=-1).min(1)
        assert d.min() > 0.05  # free points keep the margin from the hand
        assert rec.metrics["penetration_m"] <= 0.015


def test_without_depth_reports_numbers(recon, scenes):
    for s in scenes:
        rec = _fit(recon, s, depth=False)
        assert rec.status == "ok", rec.message
        e = _errors(rec, s)
        print("without depth", int(s["seed"]), {k: round(v, 4) for k, v in e.items()})
        assert all(np.isfinite(v) for v in e.values())
        assert np.isfinite(rec.human_vertices_cam).all() and np.isfinite(rec.object_vertices_cam).all()


def test_tracker_warm_start_and_reset(recon, scenes):
    from interactvlm_ros.recon import Tracker, observation_from_sample
    from interactvlm_ros.recon.metrics import vertex_error
    from interactvlm_ros.synth import catalog

    s = scenes[0]
    nv, nf = catalog.normalized_mesh(str(s["object_category"]))
    kw = dict(object_contact=s["object_contact"], object_mesh=(nv * float(s["object_scale"]), nf), depth=s["depth"],
              K=s["K"], object_mask=s["object_mask"])
    tr = Tracker(recon)
    obs = observation_from_sample(s)
    r1 = tr.update(s["image"], obs, s["human_contact"], **kw)
    r2 = tr.update(s["image"], obs, s["human_contact"], **kw)
    assert r1.ok and r2.ok
    assert r1.metrics["warm_start"] is False and r2.metrics["warm_start"] is True
    assert r2.metrics["body_iterations"] < r1.metrics["body_iterations"]
    assert vertex_error(r2.human_vertices_cam, s["human_vertices_cam"]) <= 0.05
    # no object mask: the region is guessed, its silhouette and centroid weights are 0 — and those terms are not
    # computed at all (the node's usual case; ~10-25 % of a warm object fit on the real photo)
    r_est = recon.fit(s["image"], obs, s["human_contact"], **{**kw, "object_mask": None}, init=r2)
    assert r_est.metrics["object_mask"].startswith("estimated") and "object_loss_contact" in r_est.metrics
    assert "object_loss_mask" not in r_est.metrics and "object_loss_centroid" not in r_est.metrics
    assert "object_loss_mask" in r2.metrics and "object_loss_centroid" in r2.metrics
    # a detector's box instead of the mask: the box term (samples outside box ∪ person) instead of the silhouette;
    # the object it fits projects inside the box (the hand holding it is the person's)
    ys, xs = np.nonzero(s["object_mask"])
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    r_box = recon.fit(s["image"], obs, s["human_contact"], **{**kw, "object_mask": None, "object_box": box}, init=r2)
    assert r_box.ok and r_box.metrics["object_mask"].startswith("box [")
    assert "object_loss_box" in r_box.metrics and "object_loss_mask" not in r_box.metrics
    assert "object_loss_box" not in r2.metrics and "object_loss_box" not in r_est.metrics
    V = r_box.object_vertices_cam
    uv = (V[:, :2] / V[:, 2:]) * np.diag(s["K"])[:2] + s["K"][:2, 2]
    inside = ((uv[:, 0] >= box[0] - 2) & (uv[:, 0] <= box[2] + 2) & (uv[:, 1] >= box[1] - 2) & (uv[:, 1] <= box[3] + 2))
    assert inside.mean() >= 0.9, inside.mean()
    # a frame whose landmarks jumped (another person) → the warm fit degrades → reset to a cold fit
    obs2 = observation_from_sample(s)
    obs2.keypoints_2d = obs2.keypoints_2d.copy()
    obs2.keypoints_2d[:, 0] = s["image"].shape[1] - 1 - obs2.keypoints_2d[:, 0]  # mirrored person
    obs2.keypoints_3d = None
    r3 = tr.update(s["image"], obs2, s["human_contact"], **{**kw, "depth": None, "object_mask": None})
    assert tr.resets >= 1 or r3.metrics["body_reproj_rel"] <= tr.reset_reproj_rel


# held-out scenes with a NON-symmetric object (phone, book: only the discrete box flips are symmetries),
# visible (object mask ≥ 100 px). Rotation target with depth: ≤ 15° modulo symmetry.
ROT_CASES = [(9000001, "hold_one_hand", "phone"), (9000014, "hold_one_hand", "phone"),
             (9000017, "hold_one_hand", "phone"), (9000016, "hold_one_hand", "book")]


def test_rotation_target_with_depth_non_symmetric(recon):
    from interactvlm_ros.recon.metrics import symmetries
    from interactvlm_ros.synth import catalog
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    gen = Generator(GeneratorConfig(mask_res=32))
    rots, rots_nodepth = [], []
    for seed, inter, cat in ROT_CASES:
        s = gen.sample(seed, inter, cat)
        nv, _ = catalog.normalized_mesh(cat)
        sym = symmetries(nv)
        assert not sym["continuous"], f"{cat} must be non-symmetric for this test"
        assert int(s["object_mask"].sum()) >= 100, f"seed {seed}: object not visible enough"
        rec = _fit(recon, s, depth=True)
        assert rec.status == "ok", rec.message
        assert rec.metrics["object_depth_stage"] is True
        e = _errors(rec, s)
        rots.append(e["rot"])
        rec_nd = _fit(recon, s, depth=False)  # reported, not asserted: rotation is not determined without depth
        rots_nodepth.append(_errors(rec_nd, s)["rot"] if rec_nd.ok else float("nan"))
        print("rotation", seed, cat, "with depth %.1f°" % e["rot"], "without %.1f°" % rots_nodepth[-1],
              "t %.2f cm" % (100 * e["trans"]))
        assert e["rot"] <= 15.0, (seed, cat, e)
        assert e["trans"] <= 0.03, (seed, cat, e)


def test_a_detectors_box_or_the_depth_near_the_contact_places_a_held_laptop(recon):
    """A detector's box instead of a mask, with depth and a wall behind the person (a real depth camera sees the room;
    the generator renders no background): the box's depth points drive the depth stage. Measured on this scene
    (bench_recon.py --seeds 9000003 --depth with --background-depth 0.5 --object-input estimated|box): the region
    estimated near the contact 4.1 cm / 41°, the box 0.1 cm / 0.3°."""
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    s = dict(Generator(GeneratorConfig(mask_res=32)).sample(9000003))
    assert str(s["object_category"]) == "laptop"
    d = np.asarray(s["depth"], np.float32).copy()
    d[~(d > 0)] = float(np.median(d[np.asarray(s["person_mask"], bool) & (d > 0)])) + 0.5
    s["depth"] = d
    ys, xs = np.nonzero(s["object_mask"])
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    from interactvlm_ros.recon import observation_from_sample
    from interactvlm_ros.synth import catalog

    nv, nf = catalog.normalized_mesh("laptop")
    rec = recon.fit(s["image"], observation_from_sample(s), s["human_contact"], s["object_contact"],
                    (nv * float(s["object_scale"]), nf), depth=s["depth"], K=s["K"], object_box=box)
    assert rec.ok and rec.metrics["object_depth_stage"] is True and "object_loss_box" in rec.metrics
    e = _errors(rec, s)
    assert e["trans"] <= 0.01 and e["rot"] <= 5.0, e
    # neither box nor mask: the region guessed near the contact; its depth points near the contact run the depth stage
    # (the legacy weak term on all of them: 4.1 cm / 41° here; the depth stage on all of them, wall included: 94.5 cm)
    rec = recon.fit(s["image"], observation_from_sample(s), s["human_contact"], s["object_contact"],
                    (nv * float(s["object_scale"]), nf), depth=s["depth"], K=s["K"])
    assert rec.ok and rec.metrics["object_mask"].startswith("estimated") and rec.metrics["object_depth_stage"] is True
    e = _errors(rec, s)
    assert e["trans"] <= 0.015, e


def test_carry_with_body_follows_the_contact_region():
    """The warm start moves the object with the body region in contact, not with the body as a whole."""
    from scipy.spatial.transform import Rotation

    from interactvlm_ros.recon.reconstructor import carry_with_body

    rng = np.random.default_rng(0)
    prev = rng.normal(size=(200, 3))
    hc = np.zeros(200)
    hc[:30] = 1.0  # the "hand"
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix(), [0.1, -0.05, 0.2]
    new = prev.copy()
    new[:30] = prev[:30] @ M[:3, :3].T + M[:3, 3]  # only the hand moves
    P = np.eye(4)
    P[:3, 3] = [0.3, 0.0, 2.0]
    np.testing.assert_allclose(carry_with_body(P, prev, new, hc), M @ P, atol=1e-9)
    # too little contact: the whole body's (here: no) motion
    np.testing.assert_allclose(carry_with_body(P, prev, prev, np.zeros(200)), P, atol=1e-9)


def test_tracker_follows_a_moving_camera_with_depth(recon):
    """Frames from a camera turning 2° and moving 2 cm per frame (the generator's ``camera_motion``): the warm fits
    keep the held phone within 3 cm. (Warm-starting the object at its previous camera-frame pose instead of carrying
    it with the hand let it lag behind: 3.4, 3.3, 4.9, 7.0 cm on these frames.)"""
    from interactvlm_ros.recon import Tracker, observation_from_sample
    from interactvlm_ros.recon.metrics import vertex_error
    from interactvlm_ros.synth import catalog
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    gen = Generator(GeneratorConfig(mask_res=32))
    nv, nf = catalog.normalized_mesh("phone")
    tr = Tracker(recon)
    errs = []
    for k in range(5):
        s = gen.sample(9000001, "hold_one_hand", "phone", camera_motion=(2.0 * k, 0.02 * k))
        rec = tr.update(s["image"], observation_from_sample(s), s["human_contact"], object_contact=s["object_contact"],
                        object_mesh=(nv * float(s["object_scale"]), nf), depth=s["depth"], K=s["K"],
                        object_mask=s["object_mask"])
        assert rec.ok, rec.message
        assert rec.metrics["warm_start"] == (k > 0)
        assert vertex_error(rec.human_vertices_cam, s["human_vertices_cam"]) < 0.03
        errs.append(float(np.linalg.norm(rec.object_pose[:3, 3] - s["object_pose_cam"][:3, 3])))
    assert max(errs) < 0.03, errs
    assert tr.resets == 0


def test_camera_motion_moves_the_camera_only():
    """``camera_motion`` re-renders the same scene: the body in the camera frame moves rigidly, contact labels and
    everything drawn after the camera stay the seed's; (0, 0) is the plain sample."""
    from interactvlm_ros.recon.geometry import umeyama
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    gen = Generator(GeneratorConfig(mask_res=32))
    a = gen.sample(9000001, "hold_one_hand", "phone")
    z = gen.sample(9000001, "hold_one_hand", "phone", camera_motion=(0.0, 0.0))
    b = gen.sample(9000001, "hold_one_hand", "phone", camera_motion=(10.0, 0.1))
    np.testing.assert_array_equal(a["image"], z["image"])
    np.testing.assert_array_equal(a["human_contact"], b["human_contact"])
    assert str(a["object_label"]) == str(b["object_label"])
    R, t = umeyama(a["human_vertices_cam"], b["human_vertices_cam"])
    np.testing.assert_allclose(a["human_vertices_cam"] @ R.T + t, b["human_vertices_cam"], atol=1e-4)
    assert abs(np.degrees(np.arccos((np.trace(R) - 1) / 2)) - 10.0) < 0.01
    assert not np.array_equal(a["image"], b["image"])
