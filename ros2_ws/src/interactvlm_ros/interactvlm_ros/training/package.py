"""Package a training run as the shipped default model.

    python -m interactvlm_ros.training.package RUN_DIR [--dest <package>/models/default/weights] [--metrics FILE ...]

Copies ``model.pt`` (adding the human template faces / part ids when the run did not store them),
re-exports ``frame.onnx`` from the float16 weights, copies ``config.yaml`` and writes ``metrics.json``
(training metrics + any evaluation json given with ``--metrics``). Checks the 30 MB budget.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ..models.default.predictor import WEIGHTS_DIR

BUDGET_MB = 30.0


def package(run: Path, dest: Path, metrics_files: list[Path], data: str | None = None) -> dict:
    import torch

    from ..models.default.export import export_onnx
    from ..models.default.predictor import load_checkpoint
    from .assets_provider import AssetProvider

    dest.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(str(run / "model.pt"), map_location="cpu", weights_only=False)
    if ckpt.get("human_template_faces") is None or ckpt.get("human_part_ids") is None:
        body = AssetProvider(data or ckpt["data"]["path"], {}, ckpt.get("asset_size", 256)).body
        if ckpt.get("human_template") is not None and len(ckpt["human_template"]) != body.num_vertices:
            raise ValueError("the run's human template and the current body template differ")
        ckpt.update(human_template=np.asarray(body.template_vertices, np.float32),
                    human_template_faces=np.asarray(body.faces, np.int32), human_template_source=body.source,
                    human_part_ids=np.asarray(body.part_ids, np.int16), human_part_names=body.part_names)
    metrics = {"training": json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}}
    for f in metrics_files:
        m = json.loads(Path(f).read_text())
        metrics[f"eval_{m.get('split', Path(f).stem)}_{m.get('cues', '')}".rstrip("_")] = m
    ckpt["metrics"] = {k: v for k, v in metrics.items() if k == "training"}
    torch.save(ckpt, str(dest / "model.pt"))
    net, _ = load_checkpoint(dest / "model.pt")
    export_onnx(net, dest / "frame.onnx")
    if (run / "config.yaml").is_file():
        shutil.copy(run / "config.yaml", dest / "config.yaml")
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=1))
    total = sum(p.stat().st_size for p in dest.iterdir() if p.is_file()) / 2**20
    if total > BUDGET_MB:
        raise ValueError(f"{dest}: {total:.1f} MB exceeds the {BUDGET_MB} MB budget")
    return {"dest": str(dest), "size_mb": round(total, 2), "files": sorted(p.name for p in dest.iterdir())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--dest", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--metrics", type=Path, nargs="*", default=[])
    ap.add_argument("--data", default=None, help="dataset folder (for the template when the run lacks it)")
    args = ap.parse_args(argv)
    print(json.dumps(package(args.run, args.dest, args.metrics, args.data), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
