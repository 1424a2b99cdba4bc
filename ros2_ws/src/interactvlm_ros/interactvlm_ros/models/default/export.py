"""ONNX export of the default model's per-frame graph (``frame.onnx``).

Inputs (batch B dynamic, V views, D width, r render-embedding side):
    pose [B,33,3], hands [B,2,21,3], label [B,384], obj [B,6], depth [B,4],
    human_emb [V,D,r,r], human_cam [V,5], object_emb [V,D,r,r], object_cam [V,5]
Outputs: human_logits [B,V,R,R], object_logits [B,V,R,R] [+ human_vertex_logits [B,N] with the vertex head]
[+ object_vertex_query [B,rank] with the object vertex head (its per-mesh keys are not part of the graph)].

The static render encoder is not exported: it runs once per mesh (torch) and its output is cached.
Uses the TorchScript exporter (``dynamo=False``), which needs no extra package (onnxscript).

    python -m interactvlm_ros.models.default.export --weights DIR   # writes DIR/frame.onnx
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from .predictor import FRAME_INPUTS, ONNX_GRAPH, WEIGHTS_DIR, DefaultModelError, frame_outputs, load_checkpoint

log = logging.getLogger(__name__)


def example_inputs(net, views: int = 4, batch: int = 1) -> tuple:
    import torch

    c = net.config
    r = c["render_size"] // 4
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(views, c["dim"], r, r, generator=g)
    cam = torch.rand(views, 5, generator=g)
    return (torch.randn(batch, 33, 3, generator=g), torch.randn(batch, 2, 21, 3, generator=g),
            torch.randn(batch, 384, generator=g), torch.randn(batch, 6, generator=g), torch.randn(batch, 4, generator=g),
            emb, cam, emb.clone(), cam.clone())


def export_onnx(net, path: str | Path, human_views: int = 4, opset: int = 17, check: bool = True) -> Path:
    """Export ``net.forward`` to ``path``; with ``check`` the ORT output is compared with torch (max |Δ| < 1e-3)."""
    import torch

    path = Path(path)
    net = net.eval()
    args = example_inputs(net, human_views)
    out_names = frame_outputs(net)
    dyn = {n: {0: "batch"} for n in FRAME_INPUTS[:5]}
    dyn.update({n: {0: "batch"} for n in out_names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, str(path), input_names=list(FRAME_INPUTS), output_names=list(out_names),
                          dynamic_axes=dyn, opset_version=opset, dynamo=False)
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {n: a.numpy() for n, a in zip(FRAME_INPUTS, args)}
        got = sess.run(list(out_names), feeds)
        with torch.no_grad():
            ref = [t.numpy() for t in net(*args)]
        err = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
        if err > 1e-3:
            raise RuntimeError(f"ONNX export {path}: onnxruntime differs from torch by {err:.2e}")
        log.info("exported %s (max |ORT - torch| = %.2e)", path, err)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder with model.pt (frame.onnx is written there)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the check's max |ORT - torch| (tolerance 1e-3)
    try:
        net, _ = load_checkpoint(args.weights)
    except DefaultModelError as exc:
        print(f"--weights: {exc}", file=sys.stderr)
        return 2
    print(export_onnx(net, Path(args.weights) / ONNX_GRAPH))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
