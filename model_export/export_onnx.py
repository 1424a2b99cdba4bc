#!/usr/bin/env python3
"""Export an official-format InteractVLM checkpoint to the three ONNX graphs + manifest.json.

Thin wrapper over ``interactvlm_ros.export.mvloc_export.export_mvloc`` (the same code as
``interactvlm export``)::

    python model_export/export_onnx.py --model /models/interactvlm-3d-hcontact-damon \
        --clip /models/openai/clip-vit-large-patch14 --out /models/onnx/hcontact-damon
"""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="official HF folder (config.json + weights + tokenizer)")
    ap.add_argument("--clip", default=None, help="CLIP ViT-L/14 folder")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto")
    ap.add_argument("--no-parity", action="store_true", help="skip the ORT-vs-PyTorch parity check (saves time on 13B)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from interactvlm_ros.cli import prepare_out
    from interactvlm_ros.export.mvloc_export import export_mvloc, manifest_summary

    why = prepare_out(a.out)  # as `interactvlm export`: one line, before the (long) model load
    if why:
        print(f"export_onnx.py: cannot write --out {a.out} ({why}); give a folder that can be created and written",
              file=sys.stderr)
        return 2
    try:
        path = export_mvloc(a.model, a.out, clip_dir=a.clip, opset=a.opset, exporter=a.exporter,
                            parity=not a.no_parity)
    except (OSError, ValueError, RuntimeError) as exc:  # bad --model/--clip (CheckpointError), parity, disk full
        print(f"export_onnx.py: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {manifest_summary(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
