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
