"""``interactvlm export``: MV-Loc checkpoint -> ONNX graphs + manifest (+ TensorRT engines where available).

    interactvlm export --model DIR [--clip DIR] --out DIR [--precision fp32|fp16|bf16|int8|fp8] [--tensorrt]

Writes ``<out>/{language,sam_encoder,mask_decoder}.onnx`` and ``<out>/manifest.json`` (graph
hashes, IO names/shapes, model config, source checkpoint hash, parity results). With
``--tensorrt`` it also builds engines into the engine cache (``paths.cache_dir("engines")``) when
TensorRT and a GPU are present; otherwise it says so and exits 0 with only ONNX written (exit 3
with ``--require-tensorrt``). An ``--out`` that cannot be written is an error before the model loads.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="official-format InteractVLM HF folder (config.json + weights + tokenizer)")
    p.add_argument("--clip", default=None, help="CLIP ViT-L/14 folder (default: <model>/../openai/clip-vit-large-patch14 or config.vision_tower)")
    p.add_argument("--out", required=True, help="output folder for the ONNX graphs + manifest.json")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="TensorRT engine precision (ONNX graphs are always fp32); int8 and fp8 need a graph with Q/DQ nodes here (an int8 calibrator: tensorrt_build.make_int8_calibrator, Python API only)")
    p.add_argument("--decoder-precision", choices=PRECISIONS, default="fp32",
                   help="precision of the mask-decoder engine (default fp32: logits reach +-20)")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs tensorrt + a CUDA GPU)")
    p.add_argument("--require-tensorrt", action="store_true", help="fail (exit 3) if engines cannot be built")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto", help="torch.onnx exporter")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check")
    p.add_argument("--workspace-gb", type=float, default=8.0, help="TensorRT builder workspace")
    p.add_argument("--device", default="cuda", help="GPU the engines are built for and will run on (cuda, cuda:1, ...)")
    p.add_argument("-v", "--verbose", action="store_true")


def run(args) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from . import prepare_out
    from ..export.mvloc_export import export_mvloc
    from ..export.tensorrt_build import build_engines, cuda_index, tensorrt_status

    why = prepare_out(args.out)
    if why:
        print(f"interactvlm export: cannot write --out {args.out} ({why}); give a folder that can be created and "
              f"written", file=sys.stderr)
        return 2
    try:
        index = cuda_index(args.device)  # a bad --device fails before the (long) export
        manifest_path = export_mvloc(args.model, args.out, clip_dir=args.clip, opset=args.opset, exporter=args.exporter,
                                     parity=not args.no_parity)
    except (OSError, ValueError, RuntimeError) as exc:  # OSError: disk full, folder made read-only meanwhile, ...
        print(f"interactvlm export: {exc}", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())
    print(f"wrote {manifest_path}")
    for name, g in manifest["graphs"].items():
        par = manifest.get("parity", {}).get(name)
        ptxt = f", parity max rel err {max(par['rel_err'].values()):.1e} at {par['shapes']}" if par else ""
        print(f"  {g['file']:<20} {g['bytes'] / 1e6:8.1f} MB  sha256 {g['sha256'][:12]}  ({g['exporter']}, opset {g['opset']}{ptxt})")
    if not args.tensorrt:
        return 0
    ok, why = tensorrt_status(index)
    if not ok:
        print(f"TensorRT engines NOT built: {why}. Only the ONNX graphs were written; build engines later on the "
              f"target GPU with `python model_export/build_engines.py --onnx {args.out} --precision {args.precision}`.")
        return 3 if args.require_tensorrt else 0
    res = build_engines(manifest_path, precision=args.precision, decoder_precision=args.decoder_precision,
                        workspace_gb=args.workspace_gb, device=index)
    for name, r in res.items():
        print(f"  engine {name}: {r['status']} ({r['precision']}) -> {r['path']}")
    return 0
