"""Warm-start speed helpers of the reconstruction (recon.geometry caches, object-fit nearest neighbours)."""
import numpy as np
import torch

from interactvlm_ros.assets import vertex_normals as ref_normals
from interactvlm_ros.recon.geometry import kdtree, vertex_normals


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


def test_kdtree_reused_only_for_the_same_array():
    a = np.random.default_rng(0).normal(size=(50, 3))
    b = a.copy()
    assert kdtree(a) is kdtree(a)
    assert kdtree(b) is not kdtree(a)


def test_object_nn_matches_argmin():
    from interactvlm_ros.recon.object_fit import _nn

    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(300, 2)).astype(np.float32), rng.normal(size=(400, 2)).astype(np.float32)
    ref = torch.cdist(torch.as_tensor(q, dtype=torch.float64), torch.as_tensor(p, dtype=torch.float64)).argmin(1)
    assert torch.equal(_nn(q, torch.as_tensor(p)), ref)
