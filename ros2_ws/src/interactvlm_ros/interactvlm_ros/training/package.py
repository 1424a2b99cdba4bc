"""Package a training run as the shipped default model.

    python -m interactvlm_ros.training.package RUN_DIR [--dest <package>/models/default/weights] [--metrics FILE ...]

Copies ``model.pt`` (adding the human template faces / part ids when the run did not store them),
re-exports ``frame.onnx`` from the float16 weights, copies ``config.yaml`` and writes ``metrics.json``
(training metrics + the dataset it was trained on (path, generator, seed, n) + any evaluation json given with
``--metrics``). Checks the 30 MB budget before anything in ``--dest`` is replaced; a run folder without
``model.pt``, ``config.yaml`` or ``metrics.json`` (an unfinished run) is refused.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..models.default.predictor import WEIGHTS_DIR

BUDGET_MB = 30.0
RUN_FILES = ("model.pt", "config.yaml", "metrics.json")  # what a finished `interactvlm train` run wrote


class PackageError(ValueError):
    pass


def package(run: Path, dest: Path, metrics_files: list[Path], data: str | None = None) -> dict:
    import torch

    from ..models.default.export import export_onnx
    from ..models.default.predictor import load_checkpoint
    from .assets_provider import AssetProvider

    missing = [f for f in RUN_FILES if not (Path(run) / f).is_file()]
    if missing:
        raise PackageError(f"{run} is not a finished `interactvlm train` run (no {', '.join(missing)}); give the run's "
                           "--out folder after it finished (`interactvlm train ... --resume` finishes an interrupted one)")
    for f in metrics_files:
        if not Path(f).is_file():
            raise PackageError(f"--metrics {f} not found (`interactvlm eval ... --out DIR` writes metrics_<split>.json)")
    dest.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(str(run / "model.pt"), map_location="cpu", weights_only=False)
    if ckpt.get("human_template_faces") is None or ckpt.get("human_part_ids") is None:
        body = AssetProvider(data or ckpt["data"]["path"], {}, ckpt.get("asset_size", 256)).body
        if ckpt.get("human_template") is not None and len(ckpt["human_template"]) != body.num_vertices:
            raise ValueError("the run's human template and the current body template differ")
        ckpt.update(human_template=np.asarray(body.template_vertices, np.float32),
                    human_template_faces=np.asarray(body.faces, np.int32), human_template_source=body.source,
                    human_part_ids=np.asarray(body.part_ids, np.int16), human_part_names=body.part_names)
    metrics = {"training": json.loads((run / "metrics.json").read_text())}
    for f in metrics_files:
        m = json.loads(Path(f).read_text())
        metrics[f"eval_{m.get('split', Path(f).stem)}_{m.get('cues', '')}".rstrip("_")] = m
    ckpt["metrics"] = {k: v for k, v in metrics.items() if k == "training"}
    if ckpt.get("data") is not None:  # the data seed etc. readable beside the weights, not only inside model.pt
        metrics["data"] = {k: v for k, v in ckpt["data"].items() if k != "categories"}
    # built in a scratch folder beside dest: a package over the budget (or a failed export) leaves dest as it was
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        torch.save(ckpt, str(stage / "model.pt"))
        net, _ = load_checkpoint(stage / "model.pt")
        export_onnx(net, stage / "frame.onnx")
        shutil.copy(run / "config.yaml", stage / "config.yaml")
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
        total = sum(p.stat().st_size for p in stage.iterdir() if p.is_file()) / 2**20
        if total > BUDGET_MB:
            raise PackageError(f"{run} packaged is {total:.1f} MB, over the {BUDGET_MB} MB budget; {dest} left as it was "
                               "(train a smaller model)")
        for p in stage.iterdir():
            os.replace(p, dest / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"dest": str(dest), "size_mb": round(total, 2), "files": sorted(p.name for p in dest.iterdir())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--dest", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--metrics", type=Path, nargs="*", default=[])
    ap.add_argument("--data", default=None, help="dataset folder (for the template when the run lacks it)")
    args = ap.parse_args(argv)
    try:
        print(json.dumps(package(args.run, args.dest, args.metrics, args.data), indent=1))
    except PackageError as exc:
        print(f"package: {exc}")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
