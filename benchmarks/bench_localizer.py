"""MV-Loc per-stage latency on CPU with PyTorch (one command, prints a table).

    python benchmarks/bench_localizer.py [--repeats 3] [--threads 2] [--configs tiny,30m]

Stages: CLIP vision tower (+projector), LLM (one teacher-forced pass over the demo prompt, and greedy
generation of the fixture answer), SAM image encoder (4 views), decoder part (text_hidden_fcs + camera
gate + prompt encoder + mask decoder), mask post-processing, 2D->3D lift. "per frame" = everything but
the SAM encoder, i.e. what the predictor runs when the render embeddings are cached; the speed-up
column compares it with running the SAM encoder every frame.

Configs: ``tiny`` = the conformance checkpoint (shared/conformance/interactvlm-hcontact-tiny);
``30m`` = a random ~30M-parameter model of the same structure (LLaMA 512x6, CLIP 256x4, SAM ViT 256x4).
``run_torch_stages(model, inputs)`` is the reusable core (bench_runtime.py adds ONNX Runtime columns).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTERACTVLM_SHARED_DIR", REPO.parent / "shared"))
FX = SHARED / "conformance" / "interactvlm-hcontact-tiny"


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def run_torch_stages(model, inputs: dict, repeats: int = 3, lift_fn=None) -> dict[str, float]:
    """Median milliseconds per stage for an :class:`MVLocModel` on CPU/GPU with PyTorch.

    ``inputs``: ``pixel_values [1,3,224,224]``, ``input_ids [1,L]`` (with -200), ``sam_images [V,3,S,S]``,
    ``cam_params [V,5]``, optional ``max_new_tokens`` (generation), ``render_size`` (H, W).
    ``lift_fn(logits [V,H,W] np.float32) -> contact`` adds a "lift" stage."""
    from interactvlm_ros.models.mvloc.model import postprocess_masks

    pv, ids = inputs["pixel_values"], inputs["input_ids"]
    sam, cams = inputs["sam_images"], inputs["cam_params"]
    size = tuple(inputs.get("render_size", sam.shape[-2:]))
    out: dict[str, float] = {}
    with torch.inference_mode():
        lang = model.language
        feats = lang.image_features(pv)
        out["clip"] = _time(lambda: lang.image_features(pv), repeats)
        embeds = lang.embed(ids, feats)
        out["llm_forward"] = _time(lambda: lang.run_llm(embeds), repeats)
        n_new = int(inputs.get("max_new_tokens", 4))
        gen = model.generate(pv, ids, n_new)
        out["generate_tokens"] = len(gen["output_ids"]) - ids.shape[1]
        out["llm_generate"] = _time(lambda: model.generate(pv, ids, n_new), repeats)
        out["sam_encoder"] = _time(lambda: model.encode_images(sam), max(1, repeats - 1))
        emb = model.encode_images(sam)
        seg = gen["seg_hidden"] if gen["seg_hidden"] is not None else gen["final_hidden"][0, -1:]
        out["decoder"] = _time(lambda: model.decode_masks(seg, emb, cams), repeats)
        low, _ = model.decode_masks(seg, emb, cams)
        out["postprocess"] = _time(lambda: postprocess_masks(low, size, size, model.image_encoder.img_size), repeats)
        logits = postprocess_masks(low, size, size, model.image_encoder.img_size).numpy()
        if lift_fn is not None:
            out["lift"] = _time(lambda: lift_fn(logits), repeats)
    per_frame = out["clip"] + out["llm_generate"] + out["decoder"] + out["postprocess"] + out.get("lift", 0.0)
    out["per_frame_cached"] = per_frame
    out["per_frame_uncached"] = per_frame + out["sam_encoder"]
    out["cache_speedup"] = out["per_frame_uncached"] / per_frame
    return out


def _fixture_inputs():
    from PIL import Image

    from interactvlm_ros.assets import load_official_human_assets
    from interactvlm_ros.models.mvloc.config import view_type_cam_params
    from interactvlm_ros.models.mvloc.preprocess import ClipPreprocessor, sam_preprocess

    inp = np.load(FX / "inputs" / "inputs.npz")
    cams = view_type_cam_params("4MV-Z_Vitru")
    assets = load_official_human_assets(FX / "data" / "hcontact_vitruvian", view_set="4MV-Z_Vitru")
    image = np.asarray(Image.open(FX / "inputs" / "bottle__synthetic_224.png").convert("RGB"))
    sam, _ = sam_preprocess(assets.renders)
    return dict(pixel_values=ClipPreprocessor(FX / "openai" / "clip-vit-large-patch14")(image),
                input_ids=torch.from_numpy(inp["gen_input_ids"]), sam_images=sam,
                cam_params=torch.tensor(cams), max_new_tokens=4, render_size=(1024, 1024)), assets


def _model_30m():
    from transformers import CLIPVisionConfig

    from interactvlm_ros.models.mvloc.checkpoint import build_random
    from interactvlm_ros.models.mvloc.config import MVLocConfig, SamDecoderGeometry, SamEncoderGeometry

    cfg = MVLocConfig(vocab_size=515, hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
                      num_attention_heads=8, mm_hidden_size=256, seg_token_idx=512, multiview_channels=4,
                      sam_encoder=SamEncoderGeometry(embed_dim=256, depth=4, num_heads=4, mlp_dim=1024,
                                                     global_attn_indexes=[3], window_size=14),
                      sam_decoder=SamDecoderGeometry())
    clip = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                            image_size=224, patch_size=14, hidden_act="quick_gelu")
    return build_random(cfg, clip, seed=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="tiny,30m")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not FX.is_dir():
        print(f"conformance fixture not found at {FX} (set INTERACTVLM_SHARED_DIR)")
        return 2
    from interactvlm_ros.models.mvloc.checkpoint import load_mvloc
    from interactvlm_ros.lift import Lifter

    inputs, assets = _fixture_inputs()
    lifter = Lifter(assets, mode="human")  # core lifter, built once (sparse operators), as the predictor's user does
    rows = []
    for name in args.configs.split(","):
        if name == "tiny":
            model, _ = load_mvloc(FX / "interactvlm-3d-hcontact-damon-tiny")
        elif name == "30m":
            model = _model_30m()
        else:
            raise SystemExit(f"unknown config {name!r} (tiny, 30m)")
        params = sum(p.numel() for p in model.parameters()) / 1e6
        r = run_torch_stages(model, inputs, args.repeats, lift_fn=lifter)
        rows.append((name, params, r))
        del model
    cols = ["clip", "llm_forward", "llm_generate", "sam_encoder", "decoder", "postprocess", "lift",
            "per_frame_cached", "per_frame_uncached"]
    print(f"\nMV-Loc PyTorch CPU, {args.threads} threads, torch {torch.__version__}, median of {args.repeats} "
          f"(ms; generate = {int(rows[0][2]['generate_tokens'])} new tokens, 4 views, 1024 px renders)")
    print(f"| config | params (M) | " + " | ".join(cols) + " | cache speed-up |")
    print("|" + "---|" * (len(cols) + 3))
    for name, params, r in rows:
        print(f"| {name} | {params:.1f} | " + " | ".join(f"{r.get(c, float('nan')):.1f}" for c in cols)
              + f" | {r['cache_speedup']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
