"""Benchmark of the embedded default model (CPU). One command, prints a table:

    python benchmarks/bench_default_model.py [--weights DIR] [--threads 2] [--repeat 50]

Rows: per-frame network (torch / onnxruntime), lifting (human + object), localize+lift total per backend,
mediapipe human perception on a real photo, the whole frame (perception + localize + lift), and training
throughput (samples/s, batch 24, 1 thread, as in the shipped config). Static work (render embeddings,
lifting operators, label embedding) is done before timing, as the pipeline caches it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _time(fn, repeat: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t))
    return statistics.median(ts), float(np.percentile(ts, 90))


def _assets(loc):
    """Human/object assets: the core's (what ContactEstimator uses) when importable, else the training fallback."""
    try:
        from interactvlm_ros import assets, bodies, objects

        body = bodies.get_body_model("anny")
        h = assets.human_assets(body, loc.asset_size)
        o = assets.object_assets(objects.load_mesh(objects.lookup_object("ball").mesh_path), loc.asset_size)
        return h, o, "core assets (anny template, library ball)"
    except ImportError:
        import torch

        from interactvlm_ros.synth import catalog
        from interactvlm_ros.training.fallback_assets import map_assets

        ck = torch.load(str(loc.weights_dir / "model.pt"), map_location="cpu", weights_only=False)
        h = map_assets(ck["human_template"], ck["human_template_faces"], "human", loc.asset_size)
        v, f = catalog.normalized_mesh("ball")
        return h, map_assets(v, f, "object", loc.asset_size), "fallback assets (core assets not importable)"


def _lifters(h, o):
    try:
        from interactvlm_ros.lift import Lifter
    except ImportError:
        from interactvlm_ros.training.fallback_assets import SoftLifter as Lifter
    return Lifter(h, mode="human"), Lifter(o, mode="object"), Lifter.__module__ + "." + Lifter.__name__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="default model CPU benchmark")
    ap.add_argument("--weights", default=None, help="model folder (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--image", default=str(REPO / "tests" / "data" / "person_catching_ball.png"))
    args = ap.parse_args(argv)

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    from interactvlm_ros.models.default.predictor import DefaultLocalizer, DefaultModelError
    from interactvlm_ros.perception.human import HumanPerception

    bgr = cv2.imread(args.image)
    if bgr is None:  # cv2 returns None for a missing / unreadable file (cvtColor then failed with an assertion)
        print(f"cannot read --image {args.image}; give a photo of a person", file=sys.stderr)
        return 2
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rows = []
    try:
        loc_t = DefaultLocalizer(args.weights, backend="torch")
        loc_o = DefaultLocalizer(args.weights, backend="onnxruntime", threads=args.threads)
    except DefaultModelError as exc:
        print(f"--weights: {exc}", file=sys.stderr)
        return 2
    h, o, src = _assets(loc_t)
    hl, ol, lname = _lifters(h, o)
    perc = HumanPerception()
    obs = perc.observe(img)
    if not obs.found:
        print(f"no person in {args.image}; cannot time the per-frame path", file=sys.stderr)
        return 1
    for loc in (loc_t, loc_o):
        loc.predict(img, "ball", h, o, observation=obs)  # caches: label, render embeddings

    def localize(loc):
        return loc.predict(img, "ball", h, o, observation=obs)

    def lift(out):
        hl(out.human_logits)
        ol(out.object_logits)

    out = localize(loc_t)
    lift_ms = _time(lambda: lift(out), args.repeat)
    rows.append(("lift human+object (" + lname.split(".")[-1] + f", maps {loc_t.asset_size}²)", *lift_ms))
    totals = {}
    for name, loc in (("torch", loc_t), ("onnxruntime", loc_o)):
        rows.append((f"localize ({name})", *_time(lambda: localize(loc), args.repeat)))
        tot = _time(lambda: lift(localize(loc)), args.repeat)
        totals[name] = tot
        rows.append((f"localize+lift ({name})", *tot))
    perc_ms = _time(lambda: perc.observe(img), max(5, args.repeat // 5), warmup=1)
    rows.append(("human perception (mediapipe pose+hands)", *perc_ms))
    # a frame Pose's full-frame detector misses: the zoomed person search (9 crops; found in one: the padded photo) and
    # a frame with nobody at all (every crop searched, photo mode; video mode runs it at most every N frames)
    padded = cv2.copyMakeBorder(img, 100, 100, 200, 200, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    if perc.observe(padded).person_source == "zoom":
        rows.append(("human perception, person found by zoomed search (100 px border)",
                     *_time(lambda: perc.observe(padded), max(3, args.repeat // 10), warmup=0)))
    empty = np.full_like(img, 128)
    rows.append(("human perception, nobody in view (zoomed search, photo mode)",
                 *_time(lambda: perc.observe(empty), max(3, args.repeat // 10), warmup=0)))
    best = min(totals, key=lambda k: totals[k][0])
    rows.append((f"frame: perception + localize+lift ({best})",
                 *_time(lambda: lift(localize_obs(loc_o if best == 'onnxruntime' else loc_t, perc, img, h, o)),
                        max(5, args.repeat // 5), warmup=1)))

    # training throughput (1 thread, shipped config sizes)
    from interactvlm_ros.models.default.model import DefaultContactNet
    from interactvlm_ros.training.losses import mask_loss

    torch.set_num_threads(1)
    cfg = dict(loc_t.net.config)
    net = DefaultContactNet(**cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    B, S, R = 24, cfg["render_size"], cfg["mask_size"]
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(B, 33, 3, generator=g), torch.randn(B, 2, 21, 3, generator=g), torch.randn(B, 384, generator=g),
             torch.randn(B, 6, generator=g), torch.randn(B, 4, generator=g))
    renders = torch.rand(4, 4, S, S, generator=g)
    obj_renders = torch.rand(8, 4, S, S, generator=g)
    cam = torch.rand(4, 5, generator=g)
    tgt = (torch.rand(B, 4, R, R, generator=g) > 0.9).float()
    valid = torch.ones_like(tgt)

    def step():
        hseg, oseg = net.seg_embeddings(*batch)
        he = net.encode_renders(renders, "human")
        oe = net.encode_renders(obj_renders, "object").reshape(2, 4, *he.shape[1:])
        hlg = net.decode(hseg, he, cam, "human")
        olg = net.decode(oseg, oe[torch.arange(B) % 2], cam, "object")
        loss = mask_loss(hlg, tgt, valid)[0] + mask_loss(olg, tgt, valid)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    st = _time(step, 5, warmup=1)
    rows.append((f"training step (batch {B}, 1 thread) -> {B / (st[0] / 1e3):.1f} samples/s", *st))
    if net.has_vertex_branch:  # v8's train_only: vertex (the branch + head alone, no renders or mask decoders)
        from interactvlm_ros.training.losses import vertex_loss
        from interactvlm_ros.training.train import VERTEX_PATH

        Bv = 48
        vb = tuple(torch.cat([t, t]) for t in batch)
        vt = (torch.rand(Bv, net.vertex_count, generator=g) > 0.95).float()
        vopt = torch.optim.AdamW([p for n, p in net.named_parameters() if n.startswith(VERTEX_PATH)], lr=1e-3)

        def vstep():
            loss = vertex_loss(net.vertex_logits(*vb, None), vt)[0]
            vopt.zero_grad()
            loss.backward()
            vopt.step()

        st = _time(vstep, 10, warmup=2)
        rows.append((f"vertex-branch training step (batch {Bv}) -> {Bv / (st[0] / 1e3):.0f} samples/s", *st))
    if net.has_object_vertex_head:  # v9's train_only: object_vertex (branch + geometry-keyed head, per-mesh keys)
        from interactvlm_ros.training.losses import vertex_loss
        from interactvlm_ros.training.train import OBJECT_VERTEX_PATH

        Bo, n_obj, n_vert = 48, 14, 2000  # a synth batch holds ~14 of the 17 catalogue meshes, ~2000 vertices each
        ob = tuple(torch.cat([t, t]) for t in batch)
        geos = [torch.rand(n_vert, 6, generator=g) - 0.5 for _ in range(n_obj)]
        ot = [(torch.rand(Bo // n_obj + 1, n_vert, generator=g) > 0.95).float() for _ in range(n_obj)]
        oopt = torch.optim.AdamW([p for n, p in net.named_parameters() if n.startswith(OBJECT_VERTEX_PATH)], lr=1e-3)

        def ostep():
            q = net.object_vertex_query(*ob)
            loss = 0.0
            for k, geo in enumerate(geos):
                rows_k = torch.arange(k, Bo, n_obj)
                lg = net.object_vertex_decoder.logits(q[rows_k], net.object_vertex_keys(geo))
                loss = loss + vertex_loss(lg, ot[k][:len(rows_k)])[0]
            oopt.zero_grad()
            loss.backward()
            oopt.step()

        st = _time(ostep, 10, warmup=2)
        rows.append((f"object-vertex-branch training step (batch {Bo}) -> {Bo / (st[0] / 1e3):.0f} samples/s", *st))
        with torch.no_grad():
            rows.append((f"object vertex keys of a new {n_vert}-vertex mesh (once per mesh)",
                         *_time(lambda: net.object_vertex_keys(geos[0]), 10)))

    print(f"default model benchmark — weights {loc_t.weights_dir}, torch threads {args.threads}, ORT threads "
          f"{args.threads}, assets: {src}, image {Path(args.image).name}")
    print(f"{'stage':64s} {'median ms':>10s} {'p90 ms':>8s} {'Hz':>7s}")
    for name, med, p90 in rows:
        print(f"{name:64s} {med:10.2f} {p90:8.2f} {1e3 / med:7.1f}")
    return 0


def localize_obs(loc, perc, img, h, o):
    return loc.predict(img, "ball", h, o, observation=perc.observe(img))


if __name__ == "__main__":
    raise SystemExit(main())
