"""Warm-start speed helpers of the reconstruction (recon.geometry caches, object-fit nearest neighbours)."""
import numpy as np
import pytest
import torch

from interactvlm_ros.assets import vertex_normals as ref_normals
from interactvlm_ros.recon.geometry import vertex_normals


def _mesh(seed=0, n=200, f=400):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, n, size=(f, 3))


def test_vertex_normals_match_assets_and_cache_is_safe():
    v, f = _mesh(0)
    np.testing.assert_allclose(vertex_normals(v, f), ref_normals(v, f), atol=1e-6)
    np.testing.assert_allclose(vertex_normals(v, f), ref_normals(v, f), atol=1e-6)  # cached path
    v2, f2 = _mesh(1)
    np.testing.assert_allclose(vertex_normals(v2, f2), ref_normals(v2, f2), atol=1e-6)  # other faces
    v3 = v * 2.0 + 1.0  # same faces, new vertex array
    np.testing.assert_allclose(vertex_normals(v3, f), ref_normals(v3, f), atol=1e-6)
    n = vertex_normals(v3, f)
    n[:] = 0  # returned arrays are copies: the cache is not corrupted
    np.testing.assert_allclose(vertex_normals(v3, f), ref_normals(v3, f), atol=1e-6)


def test_nearest_index_matches_argmin():
    from interactvlm_ros.recon.geometry import nearest_index as _nn

    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(300, 2)).astype(np.float32), rng.normal(size=(400, 2)).astype(np.float32)
    ref = torch.cdist(torch.as_tensor(q, dtype=torch.float64), torch.as_tensor(p, dtype=torch.float64)).argmin(1)
    assert torch.equal(_nn(q, torch.as_tensor(p)), ref)


def _rigid(seed=0):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = [0.1, -0.2, 1.5]
    return T


def _cup_like(n=600):
    """A closed-ish sphere mesh (convex hull) in the object frame + a contact blob."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(3)
    v = rng.normal(size=(n, 3))
    v = 0.05 * v / np.linalg.norm(v, axis=1, keepdims=True)
    f = ConvexHull(v).simplices.astype(np.int64)
    c = (v[:, 0] > 0.03).astype(np.float32) * 0.9
    return v, f, c


def test_object_frame_cache_invalidates_on_changed_contact_or_mesh():
    from interactvlm_ros.recon.outputs import contact_patches, object_frame_cache

    v, f, c = _cup_like()
    e1 = object_frame_cache(v, f, c)
    e1b = object_frame_cache(v.copy(), f.copy(), c.copy())  # same values: reused
    assert e1b["patches"] is e1["patches"] and e1b["normals"] is e1["normals"]
    c2 = c.copy()
    c2[:] = 0
    c2[v[:, 1] > 0.03] = 0.9  # another contact region
    e2 = object_frame_cache(v, f, c2)
    assert e2["patches"] is not e1["patches"] and e2["normals"] is e1["normals"]  # same mesh: its normals kept
    assert [set(p) for p in e2["patches"]] == [set(p) for p in contact_patches(v, c2, 0.3)]
    e3 = object_frame_cache(v * 1.5, f, c2)  # changed mesh
    assert e3["normals"] is not e2["normals"]
    np.testing.assert_allclose(e3["normals"], vertex_normals(v * 1.5, f), atol=1e-6)
    assert object_frame_cache(v, f, c2, thr=0.95)["patches"] is not e2["patches"]  # changed threshold
    assert object_frame_cache(v, f, None)["patches"] is None


def test_object_surface_survives_a_new_contact_every_frame():
    """A live camera gives the tracked object a new contact array every frame. The mesh's surface index (trimesh
    R-tree, ~50 ms to build for a ball) must stay: it was evicted by the second new contact and rebuilt each frame."""
    from interactvlm_ros.recon.metrics import contact_distance
    from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses, object_surface

    v, f, c = _cup_like()
    surface = object_surface(v, f)
    tree = surface.triangles_tree
    rng = np.random.default_rng(1)
    hv = v[:50] * 1.1
    hc = np.ones(50)
    for k in range(4):  # the node's per-frame calls, in its order, each frame with its own contact
        ck = np.clip(c + 0.05 * rng.random(len(c)), 0, 1).astype(np.float32)
        contact_distance(v, f, hv, hc, object_pose=np.eye(4))
        grip_poses(v, f, ck, hv, hc, object_frame=(v, np.eye(4)))
        free_grasp_points(v, f, hv, hc, object_frame=(v, np.eye(4)))
    assert object_surface(v.copy(), f.copy()) is surface and surface.triangles_tree is tree
    # the distance through the cached surface = a fresh mesh's
    P = np.eye(4)
    P[:3, 3] = [0.3, -0.1, 1.2]
    d_cached = contact_distance(v, f, hv + P[:3, 3], hc, object_pose=P)
    assert d_cached == pytest.approx(contact_distance(v + P[:3, 3], f, hv + P[:3, 3], hc), abs=1e-9)


def test_cached_outputs_match_camera_frame_computation():
    """grip poses / free grasp points through the object-frame cache = computed on the posed mesh."""
    from interactvlm_ros.recon.outputs import free_grasp_points, grip_poses

    v, f, c = _cup_like()
    T = _rigid(1)
    vc = (v @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
    rng = np.random.default_rng(5)
    # a "body": points around the contact side of the posed object, a few inside it
    hv = vc[v[:, 0] > 0.02] + rng.normal(scale=0.02, size=(int((v[:, 0] > 0.02).sum()), 3))
    hv = np.concatenate([hv, rng.normal(scale=0.3, size=(500, 3)) + T[:3, 3]])
    hc = (np.linalg.norm(hv - vc[v[:, 0] > 0.04].mean(0), axis=1) < 0.04).astype(np.float32)
    g_ref = grip_poses(vc, f, c, hv, hc)
    g = grip_poses(vc, f, c, hv, hc, object_frame=(v, T))
    assert len(g) == len(g_ref) >= 1
    for a, b in zip(g, g_ref):
        assert a["num_vertices"] == b["num_vertices"]
        np.testing.assert_allclose(a["pose"], b["pose"], atol=1e-4)
    p_ref, n_ref = free_grasp_points(vc, f, hv, hc)
    p, n = free_grasp_points(vc, f, hv, hc, object_frame=(v, T))
    np.testing.assert_array_equal(p, p_ref)
    np.testing.assert_allclose(n, n_ref, atol=1e-3)  # the reference's normals come from float32 posed vertices
    # the bounded k-d tree search keeps exactly the old rule
    from scipy.spatial import cKDTree

    keep = (cKDTree(hv[hc > 0.5]).query(vc)[0] > 0.05) & (cKDTree(hv).query(vc)[0] > 0.03)
    np.testing.assert_array_equal(p, vc[keep])


def test_penetration_depth_bounded_search_matches_full_search():
    from interactvlm_ros.recon.metrics import penetration_depth

    v, f, _ = _cup_like(800)
    for shift in (0.0, 0.02, 0.045, 0.2):  # object vertices inside, near and far from the "body" sphere
        o = v * 0.5 + [shift, 0, 0]
        hv, hn = v.astype(np.float64), vertex_normals(v, f).astype(np.float64)
        d, nn = cKDTree_query(hv, o)
        sd = ((o - hv[nn]) * hn[nn]).sum(1)
        inside = (sd < 0) & (d < 0.05)
        ref = float(-sd[inside].min()) if inside.any() else 0.0
        assert abs(penetration_depth(o, f, hv, f) - ref) < 1e-9


def cKDTree_query(pts, q):
    from scipy.spatial import cKDTree

    return cKDTree(pts).query(q)


def test_body_warm_early_stop_returns_best_state():
    """A warm fit from a converged state stops early and never returns a state with a higher loss than
    its start."""
    from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter, BodyState, get_poser

    poser = get_poser()
    K = np.array([[500.0, 0, 160], [0, 500, 120], [0, 0, 1]])
    fitter = BodyFitter(poser, BodyFitConfig(iters_warm=8))
    st = BodyState(np.zeros((16, 3)), np.diag([1.0, -1.0, -1.0]), np.array([0.0, 0.0, 3.0]), np.full(6, 0.5))
    lm = get_regressor_landmarks(poser, st)
    kp2d = np.concatenate([K[0, 0] * lm[:33, :2] / lm[:33, 2:] + K[:2, 2], np.ones((33, 1))], 1)
    r = fitter.fit(kp2d, K, init=st)
    assert r.metrics["iterations"] < 8 and r.metrics["early_stop"]
    assert np.abs(r.vertices - fitter.fit(kp2d, K, init=st, iters=0).vertices).max() < 1e-3
    off = BodyFitter(poser, BodyFitConfig(iters_warm=8, warm_patience=0)).fit(kp2d, K, init=st)
    assert off.metrics["iterations"] == 8 and not off.metrics["early_stop"]


def get_regressor_landmarks(poser, st):
    from interactvlm_ros.bodies.anny_model import ANNY_TO_BODY
    from interactvlm_ros.perception.landmarks import get_regressor

    v = poser.full_vertices(st.phenotype, st.rotvecs) @ (st.R @ ANNY_TO_BODY).T + st.t
    return get_regressor().all(v.astype(np.float32))


def test_bounded_nearest_matches_kdtree_and_cache_is_by_identity():
    from scipy.spatial import cKDTree

    from interactvlm_ros.recon.geometry import bounded_nearest

    rng = np.random.default_rng(0)
    body = rng.normal(scale=0.5, size=(3000, 3))
    obj = rng.normal(scale=0.05, size=(400, 3)) + body[0]
    d_ref, nn_ref = cKDTree(body).query(obj, distance_upper_bound=0.05)
    d, nn = bounded_nearest(body, obj, 0.05)
    np.testing.assert_array_equal(nn, nn_ref)
    np.testing.assert_allclose(d, d_ref)
    d[:] = 0  # a copy: the cache is not corrupted
    np.testing.assert_allclose(bounded_nearest(body, obj, 0.05)[0], d_ref)
    obj2 = obj + 0.01  # new array: recomputed
    np.testing.assert_array_equal(bounded_nearest(body, obj2, 0.05)[1], cKDTree(body).query(obj2, distance_upper_bound=0.05)[1])


def test_full_vertices_cache_only_for_identical_state():
    from interactvlm_ros.recon.body_fit import get_poser

    poser = get_poser()
    ph, rv = np.full(6, 0.5), np.zeros((16, 3))
    a = poser.full_vertices(ph, rv)
    rv2 = rv.copy()
    rv2[4, 0] = 0.3
    b = poser.full_vertices(ph, rv2)
    assert np.abs(a - b).max() > 1e-3
    a[:] = 0
    np.testing.assert_array_equal(poser.full_vertices(ph, rv2), b)
    assert np.abs(poser.full_vertices(ph, rv)).max() > 0.1


def test_fixed_shape_skinning_equals_the_full_rig():
    """Warm starts skin over the 16 fitted bones only: same vertices, normals and gradients as the 104-bone
    forward kinematics + blend of the subset, which itself equals Anny's full forward at those vertices."""
    from interactvlm_ros.recon.body_fit import DT, get_poser

    poser = get_poser()
    rng = np.random.default_rng(0)
    ph = rng.uniform(0.2, 0.8, 6)
    skin = poser.fixed_skinning(ph)
    assert skin is poser.fixed_skinning(ph.copy())  # cached with the rest shape
    c, rp, _ = poser.rest_cache(ph)
    for _ in range(3):
        rv = torch.tensor(rng.normal(scale=0.5, size=(16, 3)), dtype=DT, requires_grad=True)
        v_ref, Rs = poser.subset_vertices(None, rv, coeffs=c, rest_poses=rp, rest_sub=poser.rest_sub_cache(ph))
        v, n = skin(rv)
        assert float((v - v_ref).abs().max().detach()) < 1e-12 and float(v_ref.abs().max().detach()) > 0.1
        # and the subset forward is Anny's own full forward at those vertices
        full = poser.full_vertices(ph, rv.detach().numpy())
        np.testing.assert_allclose(v_ref.detach().numpy(), full[poser.subset], atol=1e-9)
        n_ref = (Rs @ poser.rest_normals_sub[..., None])[..., 0]
        assert float((n - n_ref).abs().max().detach()) < 1e-12
        w = torch.as_tensor(rng.normal(size=v.shape))
        g_ref, = torch.autograd.grad((v_ref * w).sum(), rv)
        g, = torch.autograd.grad((v * w).sum(), rv)
        assert float((g - g_ref).abs().max()) < 1e-9 and float(g_ref.abs().max()) > 1e-2


def test_cold_fit_freezes_the_shape_after_pheno_until():
    """A cold fit fits the phenotype for ``pheno_until`` of its iterations, then runs on the fixed-shape skinning of
    exactly that phenotype (the returned one); the fit is as good in 2-D as with the shape fitted throughout."""
    from interactvlm_ros.recon.body_fit import BodyFitConfig, BodyFitter, BodyState, get_poser

    poser = get_poser()
    K = np.array([[500.0, 0, 160], [0, 500, 120], [0, 0, 1]])
    rv = np.zeros((16, 3))
    rv[3, 0] = 0.4  # a bent limb
    st = BodyState(rv, np.diag([1.0, -1.0, -1.0]), np.array([0.05, 0.0, 3.0]), np.array([0.3, 0.7, 0.5, 0.6, 0.4, 0.5]))
    lm = get_regressor_landmarks(poser, st)
    kp2d = np.concatenate([K[0, 0] * lm[:33, :2] / lm[:33, 2:] + K[:2, 2], np.ones((33, 1))], 1)
    calls = []
    orig = poser.fixed_skinning

    def spy(pheno):
        calls.append(np.array(pheno, np.float64))
        return orig(pheno)

    poser.fixed_skinning = spy
    try:
        whole = BodyFitter(poser, BodyFitConfig(iters_cold=60, pheno_until=1.0)).fit(kp2d, K)
        assert calls == []  # the shape is fitted throughout: the full rig every iteration
        half = BodyFitter(poser, BodyFitConfig(iters_cold=60, pheno_until=0.5)).fit(kp2d, K)
    finally:
        del poser.fixed_skinning
    assert len(calls) == 1  # frozen once, at iteration 30
    np.testing.assert_array_equal(calls[0], half.state.phenotype)  # the returned shape is the frozen one
    assert not np.array_equal(half.state.phenotype, np.full(6, 0.5))  # it had been fitted before the freeze
    # the returned mesh is the full rig at the returned state (the frozen skinning is exact)
    from interactvlm_ros.bodies.anny_model import ANNY_TO_BODY

    ref = poser.full_vertices(half.state.phenotype, half.state.rotvecs) @ (half.state.R @ ANNY_TO_BODY).T + half.state.t
    np.testing.assert_allclose(half.vertices, ref, atol=1e-5)
    assert half.metrics["reproj_px"] <= 1.1 * whole.metrics["reproj_px"] + 0.5, (half.metrics, whole.metrics)


def test_full_vertices_of_a_kept_shape_equal_annys_skinning():
    """From the second call for a phenotype (a tracked person keeps the shape) all N vertices come from a
    FixedShapeSkinning of the whole mesh instead of Anny's 104-bone skinning: the same vertices."""
    from interactvlm_ros.recon.body_fit import DT, get_poser

    poser = get_poser()
    rng = np.random.default_rng(3)
    ph = rng.uniform(0.2, 0.8, 6)
    lazy = poser._rest_entry(ph)[4]
    for k in range(3):
        rv = rng.normal(scale=0.5, size=(16, 3))
        v = poser.full_vertices(ph, rv)
        assert ("full" in lazy) == (k > 0)
        c, rp, rest = poser.rest_cache(ph)
        with torch.no_grad():
            T, _ = poser.model.get_bone_transforms(poser.deltas(torch.as_tensor(rv, dtype=DT)), rp)
            ref = poser.model.get_skinned_vertices(rest, T)[0].numpy()
        np.testing.assert_allclose(v, ref, atol=1e-9)
        assert np.abs(ref).max() > 0.1


def test_dense_contact_patches_match_pairwise_linking(monkeypatch):
    """Dense contact (a scan, a small finely tessellated object) linked every pair within 3 cm: 11 M pairs and 1.6 s a
    frame for 5 k contact vertices on a 6 cm object. Above DENSE_PATCH_VERTICES the vertices are merged per cell first:
    the same patches (two caps of a finely tessellated ball; a third cap 5 cm away stays apart) at a fraction of the
    pairs."""
    import trimesh

    from interactvlm_ros.recon import outputs as O

    v = np.asarray(trimesh.creation.icosphere(subdivisions=5, radius=0.1).vertices)
    d = v[:, 0] / 0.1
    p = np.where((d > 0.75) | (d < -0.75), 0.9, 0.0)
    p[(v[:, 2] > 0.099)] = 0.9  # a small top cap, > 1.5 link from both side caps
    assert (p > 0.3).sum() > O.DENSE_PATCH_VERTICES
    fast = O.contact_patches(v, p)
    monkeypatch.setattr(O, "DENSE_PATCH_VERTICES", 10 ** 9)
    exact = O.contact_patches(v, p)
    assert len(fast) == 3 and {frozenset(a.tolist()) for a in fast} == {frozenset(a.tolist()) for a in exact}
