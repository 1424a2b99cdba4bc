"""Regressions of the reconstruction's fit terms: projective body depth (visible surface only), the 3-D term on
occluded landmarks, the object free-space term on sparse depth, and the contact distance's definition."""
from __future__ import annotations

import numpy as np
import pytest

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
H, W = 240, 320


def _sphere(c, r, sub=4):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=sub, radius=r)
    return np.asarray(m.vertices) + c, np.asarray(m.faces), np.asarray(m.vertex_normals)


def _sphere_depth(spheres):
    """Exact depth image of a set of spheres (c, r): nearest ray-sphere hit per pixel, 0 = no hit."""
    us, vs = np.meshgrid(np.arange(W) + 0.0, np.arange(H) + 0.0)
    d = np.stack([(us - K[0, 2]) / K[0, 0], (vs - K[1, 2]) / K[1, 1], np.ones_like(us)], -1)  # z = 1 rays
    out = np.full((H, W), np.inf)
    for c, r in spheres:
        a = (d * d).sum(-1)
        b = -2 * (d @ c)
        cc = c @ c - r * r
        disc = b * b - 4 * a * cc
        z = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        out = np.minimum(out, z)
    return np.where(np.isfinite(out), out, 0.0)


def test_visible_depth_keeps_only_what_the_camera_sees():
    from interactvlm_ros.recon.body_fit import _visible_depth

    cb, rb = np.array([0.0, 0.0, 2.0]), 0.3
    cs, rs = np.array([0.0, 0.0, 1.2]), 0.06  # a small sphere ~0.5 m in front of the big one's centre
    v, _, n = _sphere(cb, rb)
    dmap = _sphere_depth([(cb, rb), (cs, rs)])
    idx, zobs = _visible_depth(v, n, K, dmap, cell_px=8.0, max_res=0.3)
    assert len(idx) > 0.3 * len(v)
    assert ((n[idx] * v[idx]).sum(1) < 0).all()  # no back-facing vertex (the old nearest-vertex term matched those)
    # the small sphere's disk in the image: big-sphere vertices behind it are measured at the small sphere's
    # depth (~0.5 m nearer) and must not be associated; everywhere else the measured depth is their own
    uv = (v[idx] @ K.T)[:, :2] / v[idx, 2:3]
    behind = np.linalg.norm(uv - K[:2, 2], axis=1) < 500 * rs / 1.2 * 0.8
    assert not behind.any()
    assert np.abs(v[idx, 2] - zobs).max() < 0.02
    # the back hemisphere (z > centre) never takes part
    assert (v[idx, 2] <= cb[2] + 0.02).all()


def test_visible_depth_point_zbuffer_drops_self_occluded_front_faces():
    from interactvlm_ros.recon.body_fit import _visible_depth

    # two parallel camera-facing plates 20 cm apart: both face the camera, only the front one is visible
    g = np.stack(np.meshgrid(np.linspace(-0.2, 0.2, 21), np.linspace(-0.2, 0.2, 21)), -1).reshape(-1, 2)
    front = np.c_[g, np.full(len(g), 1.8)]
    back = np.c_[g, np.full(len(g), 2.0)]
    v = np.r_[front, back]
    n = np.tile([0.0, 0.0, -1.0], (len(v), 1))
    dmap = np.zeros((H, W))
    dmap[:, :] = 1.8
    idx, _ = _visible_depth(v, n, K, dmap, cell_px=12.0, max_res=0.5)
    assert len(idx) > 0.8 * len(front)
    assert (idx < len(front)).all()


@pytest.fixture(scope="module")
def gen():
    pytest.importorskip("anny")
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    return Generator(GeneratorConfig(mask_res=32))


def test_body_depth_term_does_not_pull_the_body_onto_the_camera(gen):
    """Held-out kick scene: the old term matched the measured front surface to the nearest model vertex of
    either side and slid the body ~15 cm towards the camera (15.2 cm error, −15 cm mean z offset)."""
    from interactvlm_ros.recon import observation_from_sample
    from interactvlm_ros.recon.body_fit import BodyFitter
    from interactvlm_ros.recon.metrics import vertex_error

    s = gen.sample(9000004)
    assert str(s["interaction"]) == "kick"
    o = observation_from_sample(s)
    r = BodyFitter().fit(o.keypoints_2d, s["K"], o.keypoints_3d, hands2d=o.hands_2d, depth=s["depth"],
                         person_mask=s["person_mask"])
    assert r.metrics["loss_depth_points"] > 50
    off = (r.vertices - s["human_vertices_cam"]).mean(0)
    assert abs(off[2]) < 0.02, off
    assert vertex_error(r.vertices, s["human_vertices_cam"]) < 0.03


def test_occluded_landmarks_still_place_the_limb(gen):
    """Sitting on a chair with a foot hidden: without a 3-D term on hidden landmarks the foot swung freely
    (68-79 cm error on ankle/heel/toe landmarks, 7.5 cm mean vertex error)."""
    from interactvlm_ros.perception.landmarks import get_regressor
    from interactvlm_ros.recon import observation_from_sample
    from interactvlm_ros.recon.body_fit import BodyFitter

    s = gen.sample(9000002, "sit", "chair")
    o = observation_from_sample(s)
    hidden = [i for i in (27, 29, 31) if o.keypoints_2d[i, 2] <= 0.5]
    assert hidden, "the scene must hide a foot for this test"
    r = BodyFitter().fit(o.keypoints_2d, s["K"], o.keypoints_3d, hands2d=o.hands_2d, person_mask=s["person_mask"])
    lm = get_regressor().all(r.vertices.astype(np.float32))
    err = np.linalg.norm(lm[hidden] - s["landmarks_3d"][hidden], axis=1)
    assert err.max() < 0.05, err


def test_object_free_space_is_finite_where_depth_is_missing(gen):
    """Depth is 0 away from the person and the object here; the free-space lookup eroded an inf-filled map,
    which cv2 turns into FLT_MAX: samples over the background read a 3.4e38 m depth, the loss was infinite
    and every refinement stopped at its first step (``nonfinite_at``)."""
    from interactvlm_ros.recon.body_fit import get_poser
    from interactvlm_ros.recon.object_fit import ObjectFitter
    from interactvlm_ros.synth import catalog

    s = gen.sample(9000024)
    nv, nf = catalog.normalized_mesh(str(s["object_category"]))
    assert (s["depth"] == 0).mean() > 0.5
    r = ObjectFitter().fit(nv * float(s["object_scale"]), nf, s["object_contact"], s["human_vertices_cam"],
                           get_poser().faces, s["human_contact"], s["K"], s["depth"].shape, s["object_mask"],
                           s["person_mask"], s["depth"])
    assert r.metrics["depth_stage"] is True
    assert "nonfinite_at" not in r.metrics, r.metrics
    assert np.isfinite(r.metrics["loss"]) and np.isfinite(r.pose).all()


def test_contact_distance_is_to_the_object_surface():
    from interactvlm_ros.recon.metrics import contact_distance
    from scipy.spatial.transform import Rotation

    v, f, _ = _sphere(np.zeros(3), 0.1, sub=2)  # coarse: vertex-to-vertex distances would be far off
    rng = np.random.default_rng(0)
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    human = np.r_[d[:100] * 0.12, d[100:] * 0.5]  # 100 points 2 cm off the surface + 100 far away
    contact = np.r_[np.ones(100), np.zeros(100)]
    # the triangle mesh lies inside the sphere by < 2 mm at sub=2: the distance is 2-2.2 cm, not vertex spacing
    cd = contact_distance(v, f, human, contact)
    assert 0.0195 < cd < 0.0225, cd
    # object frame + pose gives the same number as the camera-frame mesh
    P = np.eye(4)
    P[:3, :3] = Rotation.from_rotvec([0.3, -1.1, 0.4]).as_matrix()
    P[:3, 3] = [0.2, -0.1, 1.5]
    cam_h = human @ P[:3, :3].T + P[:3, 3]
    assert abs(contact_distance(v @ P[:3, :3].T + P[:3, 3], f, cam_h, contact) - cd) < 1e-9
    assert abs(contact_distance(v, f, cam_h, contact, object_pose=P) - cd) < 1e-9
    assert np.isnan(contact_distance(v, f, human, np.zeros(200)))


@pytest.mark.parametrize("seed", [9000010, 9000011])
def test_feet_on_a_thin_board_do_not_count_as_inside_it(gen, seed):
    """Riding a skateboard (2.3 cm deck): a sole vertex above the deck took the tangent plane of its nearest
    sample — often an edge sample facing sideways — and counted as centimetres inside the board. The true
    pose then scored ~30x the found one (penetration weight 8000) and the fit settled 7-10 cm away."""
    from interactvlm_ros.recon.body_fit import get_poser
    from interactvlm_ros.recon.object_fit import ObjectFitter
    from interactvlm_ros.synth import catalog

    s = gen.sample(seed)
    assert str(s["object_category"]) == "skateboard"
    nv, nf = catalog.normalized_mesh("skateboard")
    sc = float(s["object_scale"])
    P = s["object_pose_cam"].astype(np.float64).copy()
    P[:3, :3] /= sc  # the fitter's pose acts on the metric (scaled) mesh
    r = ObjectFitter().fit(nv * sc, nf, s["object_contact"], s["human_vertices_cam"], get_poser().faces,
                           s["human_contact"], s["K"], s["depth"].shape, s["object_mask"], s["person_mask"],
                           s["depth"], init_pose=P, iters=1)
    assert r.metrics["loss_pen"] < 1e-6, r.metrics  # the generator keeps penetration under 6 mm (< the 8 mm margin)


def test_depth_outweighs_mediapipe_world_landmarks(gen):
    """mediapipe on the rendered kick scene: its world landmarks are rotated and small against the truth; as a
    metric 3-D term at full weight they pulled the depth fit ~10 cm off. With depth, visible landmarks keep
    w_3d_depth only (hidden ones keep their weight: nothing else places them)."""
    from interactvlm_ros.perception.human import HumanPerception
    from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter
    from interactvlm_ros.recon.metrics import vertex_error

    pytest.importorskip("mediapipe")
    s = gen.sample(9000004)
    with HumanPerception(static_image_mode=True) as hp:
        o = hp.observe(s["image"])
    assert o.found
    err = {}
    for w in (BodyFitConfig().w_3d_depth, BodyFitConfig().w_3d):
        r = BodyFitter(config=BodyFitConfig(w_3d_depth=w)).fit(o.keypoints_2d, s["K"], o.keypoints_3d, hands2d=o.hands_2d,
                                                               depth=s["depth"], person_mask=o.mask)
        err[w] = vertex_error(r.vertices, s["human_vertices_cam"])
    assert err[BodyFitConfig().w_3d_depth] < 0.05, err
    assert err[BodyFitConfig().w_3d] > 1.5 * err[BodyFitConfig().w_3d_depth], err  # the old weighting


def test_person_cloud_backprojects_the_masked_pixels():
    from interactvlm_ros.recon.body_fit import person_cloud

    K = np.array([[100.0, 0, 30], [0, 100.0, 20], [0, 0, 1]])
    dmap = np.zeros((40, 60))
    dmap[10:20, 35:50] = 2.0
    P = person_cloud(dmap, K, 50)
    assert P.shape == (50, 3) and np.all(P[:, 2] == 2.0)
    u = P[:, 0] / P[:, 2] * 100 + 30
    v = P[:, 1] / P[:, 2] * 100 + 20
    assert u.min() >= 35 - 1e-9 and u.max() <= 49 + 1e-9 and v.min() >= 10 - 1e-9 and v.max() <= 19 + 1e-9
    assert len(person_cloud(dmap, K, 1000)) == 150  # fewer pixels than asked: all of them


def test_person_cloud_pulls_a_body_off_biased_landmarks_onto_the_measured_surface(gen):
    """mediapipe on the rendered laptop scene: its 2-D landmarks are a few px off the synthetic joints and the
    projective depth term only moves the body along the rays; the person-cloud term (depth + person mask) pulls it
    onto the measured surface (measured 6.6 -> 2.7 cm over the whole mesh)."""
    from interactvlm_ros.perception.human import HumanPerception
    from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter
    from interactvlm_ros.recon.metrics import vertex_error

    pytest.importorskip("mediapipe")
    s = gen.sample(9000003)
    with HumanPerception(static_image_mode=True) as hp:
        o = hp.observe(s["image"])
    assert o.found and o.mask is not None
    err = {}
    for w in (0.0, BodyFitConfig().w_cloud):
        r = BodyFitter(config=BodyFitConfig(w_cloud=w)).fit(o.keypoints_2d, s["K"], o.keypoints_3d, hands2d=o.hands_2d,
                                                            depth=s["depth"], person_mask=o.mask)
        err[w] = vertex_error(r.vertices, s["human_vertices_cam"])
        assert ("loss_cloud" in r.metrics) == (w > 0)
    assert err[BodyFitConfig().w_cloud] < 0.04, err
    assert err[0.0] > 1.5 * err[BodyFitConfig().w_cloud], err


def test_with_depth_the_object_does_not_yield_to_a_misplaced_hand(gen):
    """End to end with mediapipe on a held-apple scene the fitted hand sits ~2-3 cm off; at the no-depth
    penetration weight the apple was pushed 4.5 cm off its measured surface, with depth observed the penetration
    weight drops (w_pen_depth) and the depth keeps it within 1 cm."""
    from interactvlm_ros.perception.human import HumanPerception
    from interactvlm_ros.recon import Reconstructor, Tracker, observation_from_sample
    from interactvlm_ros.recon.object_fit import ObjectFitConfig
    from interactvlm_ros.synth import catalog

    pytest.importorskip("mediapipe")
    s = gen.sample(9000012)
    assert str(s["object_category"]) == "apple"
    with HumanPerception(static_image_mode=True) as hp:
        o = hp.observe(s["image"])
    obs = observation_from_sample(s)
    obs.keypoints_2d, obs.keypoints_3d, obs.hands_2d, obs.mask = o.keypoints_2d, o.keypoints_3d, o.hands_2d, o.mask
    nv, nf = catalog.normalized_mesh("apple")
    err = {}
    for w in (ObjectFitConfig().w_pen_depth, ObjectFitConfig().w_pen):
        r = Tracker(Reconstructor(object_config=ObjectFitConfig(w_pen_depth=w))).update(
            s["image"], obs, s["human_contact"], object_contact=s["object_contact"],
            object_mesh=(nv * float(s["object_scale"]), nf), K=s["K"], depth=s["depth"], object_mask=s["object_mask"])
        assert r.ok, r.status
        err[w] = float(np.linalg.norm(r.object_pose[:3, 3] - s["object_pose_cam"][:3, 3]))
    assert err[ObjectFitConfig().w_pen_depth] < 0.01, err
    assert err[ObjectFitConfig().w_pen] > 0.03, err


def test_push_out_moves_the_object_until_nothing_is_deeper_than_the_margin():
    """_push_out (no-depth fits): a sphere 2 cm into a flat patch of 'body' (normals +z) ends <= margin inside."""
    from interactvlm_ros.recon.object_fit import _push_out

    g = np.linspace(-0.1, 0.1, 41)
    hv = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    hv = np.concatenate([hv, np.zeros((len(hv), 1))], 1)
    hn = np.tile([0.0, 0.0, 1.0], (len(hv), 1))
    ball = _sphere((0, 0, 0), 0.05, sub=3)[0]
    t0 = np.array([0.0, 0.0, 0.03])  # the sphere's bottom 2 cm below the surface
    t, moved = _push_out(ball, t0, hv, hn, margin=0.008, iters=5)
    assert moved == pytest.approx(0.012, abs=1e-3) and t[2] == pytest.approx(0.042, abs=1e-3)
    assert np.allclose(t[:2], 0.0, atol=1e-9)
    t2, moved2 = _push_out(ball, t, hv, hn, margin=0.008, iters=5)  # already outside: unchanged
    assert moved2 == 0.0 and np.array_equal(t2, t)


def test_warm_start_follows_a_person_who_moved_between_frames(gen):
    """A walking person moves 10-15 cm between frames at 10 Hz; the warm fit's few small steps move the body by ~3 cm,
    so the 2-D error grew frame after frame until the track was reset (pedestrians clip: 0.02 → 0.14 of the person's
    size in 8 frames). The warm start now first re-solves the translation from the frame's landmarks."""
    from interactvlm_ros.recon import observation_from_sample
    from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter

    s = gen.sample(9000001, "hold_one_hand", "phone")
    o = observation_from_sample(s)
    K = s["K"]
    cold = BodyFitter().fit(o.keypoints_2d, K, o.keypoints_3d)
    assert cold.metrics["reproj_rel"] < 0.03
    move = np.array([0.15, 0.0, 0.3])  # 15 cm sideways, 30 cm away from the camera
    lm = s["landmarks_3d"][:33] + move
    kp2d = o.keypoints_2d.copy()
    kp2d[:, 0] = K[0, 0] * lm[:, 0] / lm[:, 2] + K[0, 2]
    kp2d[:, 1] = K[1, 1] * lm[:, 1] / lm[:, 2] + K[1, 2]
    out = {}
    for recentre in (True, False):
        r = BodyFitter(config=BodyFitConfig(warm_recentre=recentre)).fit(kp2d, K, o.keypoints_3d, init=cold.state)
        out[recentre] = (r.metrics["reproj_rel"], r.state.t - cold.state.t, r.metrics["recentred_m"])
    rel, dt, recentred = out[True]
    assert rel < 0.03 and np.linalg.norm(dt - move) < 0.05 and recentred > 0.25, out[True]
    rel_old, dt_old, recentred_old = out[False]
    assert rel_old > 2 * rel and np.linalg.norm(dt_old - move) > 0.2 and recentred_old == 0.0, out[False]


def test_warm_fit_keeps_its_associations_while_the_object_moves_little(gen):
    """Warm object fits keep the loss's nearest-neighbour associations (k-d tree queries, most of an evaluation's
    cost) while no surface sample has moved more than ``reassoc_warm_m``: they find them less than half as often,
    and come as close to the truth as with fresh associations at every evaluation. Cold fits always associate
    afresh."""
    from scipy.spatial.transform import Rotation

    from interactvlm_ros.recon.body_fit import get_poser
    from interactvlm_ros.recon.object_fit import ObjectFitConfig, ObjectFitter
    from interactvlm_ros.synth import catalog

    s = gen.sample(9000005)
    nv, nf = catalog.normalized_mesh(str(s["object_category"]))
    sc = float(s["object_scale"])
    P = s["object_pose_cam"].astype(np.float64).copy()
    P[:3, :3] /= sc
    start = P.copy()  # 1.5 cm and 4° off
    start[:3, :3] = Rotation.from_rotvec([0.0, 0.07, 0.0]).as_matrix() @ P[:3, :3]
    start[:3, 3] += [0.01, -0.005, 0.01]
    args = (nv * sc, nf, s["object_contact"], s["human_vertices_cam"], get_poser().faces, s["human_contact"], s["K"],
            s["depth"].shape, s["object_mask"], s["person_mask"], s["depth"])
    fresh = ObjectFitter(ObjectFitConfig(reassoc_warm_m=0.0)).fit(*args, init_pose=start, iters=25)
    kept = ObjectFitter(ObjectFitConfig(reassoc_warm_m=0.005)).fit(*args, init_pose=start, iters=25)
    assert fresh.metrics["associations"] == fresh.metrics["loss_evaluations"] > 5
    assert kept.metrics["associations"] < kept.metrics["loss_evaluations"] / 2, kept.metrics
    err = lambda r: np.linalg.norm((r if isinstance(r, np.ndarray) else r.pose)[:3, 3] - P[:3, 3])  # noqa: E731
    assert err(fresh) < 0.5 * err(start) and err(kept) < 0.5 * err(start), (err(fresh), err(kept))
    assert err(kept) < err(fresh) + 0.001  # measured: 15 mm off at the start -> 5.8 (fresh), 4.3 mm (kept)
    cold = ObjectFitter(ObjectFitConfig(reassoc_warm_m=0.005)).fit(*args[:-1], iters=3)  # cold, no depth
    assert cold.metrics["associations"] == cold.metrics["loss_evaluations"]
