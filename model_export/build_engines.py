#!/usr/bin/env python3
"""Build (or reuse) TensorRT engines for an ONNX export folder, on the GPU that will run them.

Thin wrapper over ``interactvlm_ros.export.tensorrt_build.build_engines``. Engines are cached in
``$INTERACTVLM_CACHE_DIR/engines`` under (graph sha256, TensorRT version, GPU, precision, profile);
stale or corrupt engines are rebuilt, never loaded::

    python model_export/build_engines.py --onnx /models/onnx/hcontact-damon --precision fp16
"""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True, help="folder written by export_onnx.py / `interactvlm export`")
    ap.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8", "fp8"), default="fp16")
    ap.add_argument("--decoder-precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    ap.add_argument("--workspace-gb", type=float, default=8.0)
    ap.add_argument("--device", default="cuda",
                    help="GPU to build for (cuda, cuda:1, ...): engines only run on its GPU model")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from interactvlm_ros.export.onnx_export import ExportError, load_manifest
    from interactvlm_ros.export.tensorrt_build import build_engines, cuda_index, tensorrt_status
    from interactvlm_ros.runtime.base import BackendUnavailableError

    try:
        index = cuda_index(a.device)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        load_manifest(a.onnx, verify=True)  # refuse a folder without an export, modified / truncated graphs
    except ExportError as exc:
        print(f"cannot build engines: {exc}", file=sys.stderr)
        return 2
    ok, why = tensorrt_status(index)
    if not ok:
        print(f"cannot build engines: {why}", file=sys.stderr)
        return 3
    try:
        res = build_engines(Path(a.onnx) / "manifest.json", precision=a.precision,
                            decoder_precision=a.decoder_precision, workspace_gb=a.workspace_gb, device=index)
    except BackendUnavailableError as exc:
        print(f"cannot build engines: {exc}", file=sys.stderr)
        return 3
    for name, r in res.items():
        print(f"{name:<14} {r['status']:<10} {r['precision']:<5} {r['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
