#!/usr/bin/env python3
"""Per-stage latency of the MV-Loc graphs: PyTorch vs ONNX Runtime CPU (tiny + ~30M-parameter random
configs built with B1's config classes), plus the speed-up of caching the SAM embeddings of the
static renders. One command, prints a table::

    python benchmarks/bench_runtime.py [--configs tiny,30m] [--repeat 5] [--threads 1] [--seq 142]

Random weights (no checkpoint needed); numbers are latencies only. Stages: ``language`` (CLIP +
LLaMA over a prompt of --seq tokens), ``sam_encoder`` (4 views, 1024^2), ``mask_decoder`` (4 views).
``frame (cached emb)`` = language + mask_decoder (what runs per camera frame);
``frame (no cache)`` adds the encoder.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_config(name: str):
    from transformers import CLIPVisionConfig

    from interactvlm_ros.models.mvloc.config import MVLocConfig, SamDecoderGeometry, SamEncoderGeometry

    if name == "tiny":  # the conformance fixture's sizes
        cfg = MVLocConfig(vocab_size=515, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=1024, mm_hidden_size=32, seg_token_idx=512,
                          sam_encoder=SamEncoderGeometry(embed_dim=32, depth=2, num_heads=2, mlp_dim=128,
                                                         global_attn_indexes=[1]))
        clip = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                                image_size=224, patch_size=14, hidden_act="quick_gelu")
    elif name == "30m":
        cfg = MVLocConfig(vocab_size=32003, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                          num_attention_heads=4, max_position_embeddings=1024, mm_hidden_size=256, seg_token_idx=32000,
                          sam_encoder=SamEncoderGeometry(embed_dim=192, depth=4, num_heads=3, mlp_dim=768,
                                                         global_attn_indexes=[3]),
                          sam_decoder=SamDecoderGeometry())
        clip = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                                image_size=224, patch_size=14, hidden_act="quick_gelu")
    else:
        raise SystemExit(f"unknown config {name!r} (tiny, 30m)")
    return cfg, clip


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up (ORT allocates its arena, torch picks kernels)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def bench(name: str, repeat: int, seq: int, views: int, threads: int) -> list[tuple]:
    from interactvlm_ros.export.mvloc_export import _example_ids, export_model
    from interactvlm_ros.models.mvloc.checkpoint import build_random
    from interactvlm_ros.runtime.localizer import torch_engines
    from interactvlm_ros.runtime.ort_engine import OrtEngine

    cfg, clip = make_config(name)
    model = build_random(cfg, clip, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    rows = []
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        manifest = export_model(model, td, exporter="torchscript", parity=False)
        export_s = time.perf_counter() - t0
        ort = {g: OrtEngine(Path(td) / f"{g}.onnx", name=g, threads=threads) for g in ("language", "sam_encoder", "mask_decoder")}
        tch = torch_engines(model)
        g = np.random.default_rng(0)
        S = cfg.sam_encoder.img_size
        feeds = {
            "language": {"pixel_values": g.standard_normal((1, 3, 224, 224)).astype(np.float32),
                         "input_ids": _example_ids(cfg, seq, 35).numpy()},
            "sam_encoder": {"images": g.standard_normal((views, 3, S, S)).astype(np.float32)},
            "mask_decoder": {"seg_hidden": g.standard_normal((1, cfg.hidden_size)).astype(np.float32),
                             "image_embeddings": g.standard_normal((views, 256, 64, 64)).astype(np.float32),
                             "cam_params": g.random((views, 5)).astype(np.float32)},
        }
        res = {}
        for backend, engines in (("torch", tch), ("onnxruntime", ort)):
            for stage, feed in feeds.items():
                res[(backend, stage)] = timeit(lambda e=engines[stage], f=feed: e.run(f), repeat)
        for stage in feeds:
            rows.append((name, f"{n_params / 1e6:.1f}M", stage, res[("torch", stage)], res[("onnxruntime", stage)]))
        for label, stages in (("frame (cached emb)", ("language", "mask_decoder")),
                              ("frame (no cache)", ("language", "sam_encoder", "mask_decoder"))):
            rows.append((name, f"{n_params / 1e6:.1f}M", label, sum(res[("torch", s)] for s in stages),
                         sum(res[("onnxruntime", s)] for s in stages)))
        print(f"[{name}] exported 3 graphs in {export_s:.1f}s ({manifest.parent})", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="tiny,30m")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for torch AND onnxruntime (default 1: on a shared 2-core machine more "
                         "threads than free cores makes torch's OpenMP pool stall, up to ~100x)")
    ap.add_argument("--seq", type=int, default=142, help="prompt length in tokens (fixture teacher-forced: 142)")
    ap.add_argument("--views", type=int, default=4)
    a = ap.parse_args(argv)
    from interactvlm_ros.models.mvloc.config import MVLocConfig

    if a.seq < 36:  # before the export: the prompt holds the image token at position 35 (an IndexError after it)
        ap.error(f"--seq {a.seq}: use >= 36 (the prompt holds the image token at position 35, as the fixture's)")
    if not 1 <= a.views <= MVLocConfig().multiview_channels:
        ap.error(f"--views {a.views}: use 1..{MVLocConfig().multiview_channels} (the mask decoder's view channels)")
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.configs.split(","):
        rows += bench(name.strip(), a.repeat, a.seq, a.views, a.threads)
    print(f"\nMV-Loc stage latency, median of {a.repeat} (ms), CPU, torch {torch.__version__}, threads {a.threads}, "
          f"seq {a.seq}, views {a.views}")
    print(f"{'config':<6} {'params':>7}  {'stage':<20} {'torch':>10} {'ORT CPU':>10} {'ORT/torch':>9}")
    for cfg, n, stage, t, o in rows:
        print(f"{cfg:<6} {n:>7}  {stage:<20} {t:>10.1f} {o:>10.1f} {o / t:>9.2f}")
    for cfg in dict.fromkeys(r[0] for r in rows):
        c = [r for r in rows if r[0] == cfg and r[2] == "frame (cached emb)"][0]
        u = [r for r in rows if r[0] == cfg and r[2] == "frame (no cache)"][0]
        print(f"{cfg}: caching the SAM embeddings speeds a frame up {u[3] / c[3]:.1f}x (torch), {u[4] / c[4]:.1f}x (ORT)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
