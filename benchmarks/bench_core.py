"""Core speed figures (render / view assets / lifting). One command, prints a table:

    python benchmarks/bench_core.py [--size 1024] [--repeat 5] [--threads N]

Targets (2 CPU cores): view-asset build for a new 10k-face object at 1024² × 4 views ≤ 300 ms; lifting 4×1024²
masks onto the 13.7k-vertex Anny body ≤ 10 ms; cached asset load ≤ 20 ms. Caches go to a temp dir, removed at
the end (~0.3 GB at 1024²).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _t(fn, repeat):
    out, ts = fn(), []  # warm-up (lazy operators, allocator)
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return out, statistics.median(ts), min(ts)


def render_label(S: int) -> str:
    """What the view-asset rows run on: the backend ``build_view_assets`` picks (``auto``: nvdiffrast on a GPU)."""
    from interactvlm_ros import render

    backend, device, _ = render.select_backend("auto")
    threads = f", views on {render._view_workers(device, 4)} threads" if str(device) == "cpu" else ""
    return f"4×{S}² ({backend} {device}{threads}, shading; cache write queued)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    cache, before = tempfile.mkdtemp(prefix="bench_core_"), os.environ.get("INTERACTVLM_CACHE_DIR")
    os.environ["INTERACTVLM_CACHE_DIR"] = cache
    try:
        return _bench(args)
    finally:  # the temp cache held ~0.3 GB of 1024² assets and was left in /tmp after every run
        from interactvlm_ros import assets

        assets.flush_cache_writes()
        shutil.rmtree(cache, ignore_errors=True)
        if before is None:
            os.environ.pop("INTERACTVLM_CACHE_DIR", None)
        else:
            os.environ["INTERACTVLM_CACHE_DIR"] = before


def _bench(args) -> int:
    import numpy as np
    import torch
    import trimesh

    if args.threads:
        torch.set_num_threads(args.threads)
    from interactvlm_ros import assets as A
    from interactvlm_ros import render
    from interactvlm_ros.bodies import get_body_model
    from interactvlm_ros.lift import Lifter
    from interactvlm_ros.render import rasterize

    S, R = args.size, args.repeat
    rows = []
    # a fresh 10k-face object (torus 100x50), different vertices each repeat so the cache never hits
    base = trimesh.creation.torus(0.35, 0.15, major_sections=100, minor_sections=50)
    v0, f0 = np.asarray(base.vertices, np.float32), np.asarray(base.faces)
    k = iter(range(1, 1000))
    def build_new():  # one new mesh at a time: the previous one's background cache write has landed (not timed)
        A.flush_cache_writes()
        t1 = time.perf_counter()
        A.build_view_assets(v0 * (1 + 1e-4 * next(k)), f0, "object", S, colors="xyz")
        return (time.perf_counter() - t1) * 1000
    build_new()
    ts = [build_new() for _ in range(R)]
    rows.append((f"view assets, new 10k-face object, {render_label(S)}", statistics.median(ts), min(ts), 300))
    t0 = time.perf_counter()
    A.flush_cache_writes()
    rows.append(("  then waiting for its background cache write", (time.perf_counter() - t0) * 1000, None, None))
    _, med, mn = _t(lambda: A.build_view_assets(v0 * (1 + 1e-4 * next(k)), f0, "object", S, colors="xyz",
                                                cache=False), R)
    rows.append(("  same, no cache", med, mn, None))

    def write_once():
        va = A.build_view_assets(v0 * (1 + 1e-4 * next(k)), f0, "object", S, colors="xyz", cache=False)
        t1 = time.perf_counter()
        A._cache_store(Path(tempfile.mkdtemp(dir=A._cache_root())) / "entry", va)
        return (time.perf_counter() - t1) * 1000
    ws = [write_once() for _ in range(3)]
    rows.append(("  cache write alone (off the critical path)", statistics.median(ws), min(ws), None))
    _, med, mn = _t(lambda: rasterize(v0, f0, "object", S, backend="torch"), R)
    rows.append((f"  dense maps API rasterize() only, views sequential (4×{S}²)", med, mn, None))
    try:
        _, med, mn = _t(lambda: rasterize(v0, f0, "object", S, backend="embree"), max(1, R // 2))
        rows.append((f"  embree ray casting, same mesh (4×{S}²)", med, mn, None))
    except Exception as exc:  # noqa: BLE001
        print("embree unavailable:", exc, file=sys.stderr)
        rows.append((f"  embree ray casting: skipped ({str(exc).splitlines()[0][:60]})", None, None, None))
    key = A.build_view_assets(v0, f0, "object", S, colors="xyz").key
    A.flush_cache_writes()  # so the next rows read the disk cache, not the in-memory pending entry
    _, med, mn = _t(lambda: A.build_view_assets(v0, f0, "object", S, colors="xyz"), R)
    rows.append((f"cached asset load (object, {S}²)", med, mn, 20))
    body = get_body_model("anny")
    t0 = time.perf_counter()
    ha = A.human_assets(body, S)
    A.flush_cache_writes()
    rows.append((f"view assets, Anny body {len(body.faces)} faces, 4×{S}² (first build)", (time.perf_counter() - t0) * 1000,
                 None, None))
    _, med, mn = _t(lambda: A.human_assets(body, S), R)
    rows.append((f"cached asset load (Anny body, {S}²)", med, mn, 20))
    t0 = time.perf_counter()
    lifter = Lifter(ha, mode="human")
    rows.append(("Lifter construction (sparse operators, human)", (time.perf_counter() - t0) * 1000, None, None))
    logits = np.random.default_rng(0).normal(0, 4, (4, S, S)).astype(np.float32)
    _, med, mn = _t(lambda: lifter(logits), R * 4)
    rows.append((f"lift 4×{S}² logits → {body.num_vertices} vertices (human, numpy in)", med, mn, 10))
    low = logits[:, ::4, ::4].copy()
    _, med, mn = _t(lambda: lifter(low), R * 4)
    rows.append((f"lift 4×{S // 4}² low-res logits (fused bilinear upsample)", med, mn, None))
    ol = Lifter(ha, mode="object")
    _, med, mn = _t(lambda: ol(logits), R * 4)
    rows.append((f"lift 4×{S}² logits (object vote rule)", med, mn, None))
    print(f"\ninteractvlm_ros core benchmark — torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}; render backend auto → {render.select_backend('auto')[2]}\n")
    print(f"{'measurement':78s} {'median ms':>10s} {'min ms':>8s} {'target':>8s}")
    for name, med, mn, tgt in rows:
        print(f"{name:78s} {'' if med is None else f'{med:10.1f}':>10s} {'' if mn is None else f'{mn:8.1f}':>8s} {'' if tgt is None else f'≤{tgt}':>8s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
