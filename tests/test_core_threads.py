"""CPU thread control of the rasterizer / shading / lifting (issue #2): the thread count used must not
change any result, the caller's torch thread count must be restored, and a bad env value is a logged fallback."""
import logging

import numpy as np
import torch
import trimesh

from interactvlm_ros.lift import Lifter
from interactvlm_ros.render import raster_torch
from interactvlm_ros.render.shading import shade, vertex_normals_torch


def _view_inputs():
    m = trimesh.creation.torus(0.35, 0.15, major_sections=24, minor_sections=12)
    v = torch.as_tensor(np.asarray(m.vertices, np.float32))
    vv = v.clone()
    vv[:, 2] += 2.5  # in front of the camera
    return v, vv, torch.as_tensor(np.asarray(m.faces, np.int64))


def test_rasterize_and_shade_identical_for_any_thread_count(monkeypatch):
    v, vv, f = _view_inputs()
    outs = []
    for n in ("1", "2"):
        monkeypatch.setenv("INTERACTVLM_CPU_THREADS", n)
        before = torch.get_num_threads()
        fid, bary, z = raster_torch.rasterize_view(vv, f, 96)
        img = shade(fid, bary, v, f, vertex_normals_torch(v, f), torch.full_like(v, 0.7), (0, 1, 3), (0, 0, 3))
        assert torch.get_num_threads() == before  # restored
        outs.append((fid, bary, z, img))
    assert (outs[0][0] >= 0).sum() > 500  # the torus is visible
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_lifter_restores_threads_and_matches_unwrapped():
    rng = np.random.default_rng(0)
    S, V, n = 32, 4, 50
    vid = rng.integers(0, n, (V, S, S, 3)).astype(np.int32)
    vid[:, :8] = -1  # background rows
    bary = rng.dirichlet(np.ones(3), (V, S, S)).astype(np.float32)
    logits = rng.normal(0, 3, (V, S, S)).astype(np.float32)
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for mode in ("human", "object", "legacy_binary"):
            lifter = Lifter((vid, bary, n), mode=mode)
            out = lifter(logits)
            assert torch.get_num_threads() == 2
            assert np.array_equal(out, lifter._lift(logits))
            assert out.shape == (n,) and np.isfinite(out).all() and out.max() > 0
    finally:
        torch.set_num_threads(prev)


def test_bad_thread_env_falls_back_with_log(monkeypatch, caplog):
    monkeypatch.setenv("INTERACTVLM_CPU_THREADS", "many")
    _, vv, f = _view_inputs()
    with caplog.at_level(logging.WARNING):
        fid, _, _ = raster_torch.rasterize_view(vv, f, 32)
    assert "INTERACTVLM_CPU_THREADS" in caplog.text and (fid >= 0).any()


def test_views_rendered_on_worker_threads_match_sequential_and_compact_matches_dense(monkeypatch, caplog):
    from interactvlm_ros.render import render_compact

    m = trimesh.creation.torus(0.35, 0.15, major_sections=24, minor_sections=12)
    v, f = np.asarray(m.vertices, np.float32), np.asarray(m.faces)
    outs = []
    for n in ("1", "4"):
        monkeypatch.setenv("INTERACTVLM_RENDER_WORKERS", n)
        outs.append(render_compact(v, f, "object", 96, backend="torch"))
    (i1, c1, d1, _), (i4, c4, d4, _) = outs
    np.testing.assert_array_equal(i1, i4)
    np.testing.assert_array_equal(d1, d4)
    for a in ("offsets", "pix", "vid", "bary", "fid"):
        np.testing.assert_array_equal(getattr(c1, a), getattr(c4, a))
    # the foreground-only rasterizer equals the dense one on its pixels
    vv = torch.as_tensor(v).clone()
    vv[:, 2] += 2.5
    pix, face, bary, z = raster_torch.rasterize_view_compact(vv, torch.as_tensor(f, dtype=torch.int64), 64)
    fid, bd, zd = raster_torch.rasterize_view(vv, torch.as_tensor(f, dtype=torch.int64), 64)
    assert torch.equal(torch.nonzero(fid.reshape(-1) >= 0).flatten(), pix)
    assert torch.equal(fid.reshape(-1)[pix], face)
    assert torch.equal(bd.reshape(-1, 3)[pix], bary) and torch.equal(zd.reshape(-1)[pix], z)
    monkeypatch.setenv("INTERACTVLM_RENDER_WORKERS", "many")
    with caplog.at_level(logging.WARNING):
        i_bad, *_ = render_compact(v, f, "object", 96, backend="torch")
    np.testing.assert_array_equal(i_bad, i1)
    assert any("INTERACTVLM_RENDER_WORKERS" in r.getMessage() for r in caplog.records)
