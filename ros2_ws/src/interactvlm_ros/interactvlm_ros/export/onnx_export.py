"""Export plain-tensor ``nn.Module`` graphs to ONNX with dynamic axes, a manifest and a parity check.

Generic layer (this file): :class:`GraphSpec` describes one graph (module, example inputs, IO
names, dynamic axes with TensorRT min/opt/max ranges); :func:`export_graph` writes it,
:func:`check_parity` runs it in ONNX Runtime against PyTorch at *other* shapes, and
:func:`write_manifest` records everything a runtime or the TensorRT builder needs. The MV-Loc
specific part (which three graphs, from which modules) is in ``export/mvloc_export.py``.

Exporter choice (torch 2.13, CPU, checked on Llama/CLIP/SAM-style modules from transformers 5):

- ``"torchscript"`` (``dynamo=False``): the TorchScript tracer. Fast (tiny MV-Loc in ~8 s) and
  needs nothing beyond torch, but fails on transformers-5 default masking (``aten::diff`` in
  packed-sequence detection), so modules must pass an explicit 4-D attention mask and position
  ids, which the MV-Loc wrappers do. Deprecated upstream but still shipped and stable.
- ``"dynamo"`` (``dynamo=True``): ``torch.export`` + onnxscript. Handles the default masking,
  but needs the ``onnxscript`` package and is slower to export (tiny MV-Loc: 20 s vs 8 s for the
  three graphs); dynamic dims are declared with ``torch.export.Dim`` ranges. Verified on all three
  MV-Loc graphs with the same parity as the TorchScript exporter.

``exporter="auto"`` uses ``torchscript`` and, if that raises, retries with ``dynamo`` (logged).
Both give the same numbers (parity ~5e-7 on the tiny Llama).

External data: graphs whose weights exceed ``external_data_threshold`` bytes (default 1 GiB; the
hard ONNX protobuf limit is 2 GiB, reached by LLaMA-13B and SAM ViT-H) are re-saved with all
tensors in one ``<name>.onnx.data`` file beside the graph; the graph hash covers both files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "interactvlm-onnx/1"
DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    pass


@dataclass
class GraphSpec:
    """One graph to export.

    - ``module``: ``nn.Module`` whose ``forward(*inputs)`` takes and returns plain tensors
      (one tensor or a tuple, in ``output_names`` order).
    - ``example_inputs``: tensors used for tracing (use sizes >= 2 on dynamic axes).
    - ``dynamic_axes``: ``{input_or_output name: {axis: axis_name}}``; inputs sharing an axis name
      share one dimension (e.g. ``views`` of ``cam_params`` and ``image_embeddings``).
    - ``axis_ranges``: ``{axis_name: (min, opt, max)}`` -> TensorRT optimisation profile and the
      dynamo ``Dim`` bounds.
    - ``parity_inputs``: inputs at sizes DIFFERENT from the example (checked after export).
    - ``parity_outputs``: which outputs the parity check compares (default: all).
    """

    name: str
    module: object
    example_inputs: tuple
    input_names: Sequence[str]
    output_names: Sequence[str]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    axis_ranges: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    parity_inputs: tuple | None = None
    parity_outputs: Sequence[str] | None = None
    description: str = ""


def file_sha256(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _np_dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def _symbolic_shape(spec: GraphSpec, name: str, tensor) -> list:
    dyn = spec.dynamic_axes.get(name, {})
    return [dyn.get(i, int(s)) for i, s in enumerate(tensor.shape)]


def _export_torchscript(spec: GraphSpec, path: Path, opset: int) -> None:
    import torch

    torch.onnx.export(
        spec.module, tuple(spec.example_inputs), str(path), dynamo=False, opset_version=opset,
        input_names=list(spec.input_names), output_names=list(spec.output_names),
        dynamic_axes={k: dict(v) for k, v in spec.dynamic_axes.items()}, do_constant_folding=True,
    )


def _export_dynamo(spec: GraphSpec, path: Path, opset: int) -> None:
    import torch
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401
    except Exception as exc:
        raise ExportError(f"exporter 'dynamo' needs onnxscript ({exc}); pip install onnxscript, or use exporter='torchscript'") from exc
    dims = {}
    for axes in spec.dynamic_axes.values():
        for ax_name in axes.values():
            if ax_name not in dims:
                lo, _, hi = spec.axis_ranges.get(ax_name, (1, 1, 4096))
                dims[ax_name] = Dim(ax_name, min=max(1, int(lo)), max=int(hi))
    dyn_shapes = tuple(
        ({ax: dims[n] for ax, n in spec.dynamic_axes[name].items()} if name in spec.dynamic_axes else None)
        for name in spec.input_names
    )
    prog = torch.onnx.export(
        spec.module, tuple(spec.example_inputs), None, dynamo=True, opset_version=max(opset, 18),
        input_names=list(spec.input_names), output_names=list(spec.output_names), dynamic_shapes=dyn_shapes,
        optimize=True, verbose=False,
    )
    prog.save(str(path))


def export_graph(spec: GraphSpec, out_dir: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                 external_data_threshold: int = 1 << 30) -> dict:
    """Write ``<out_dir>/<name>.onnx`` (+ ``.onnx.data`` for big graphs); return its manifest entry."""
    import onnx
    import torch

    if opset < 17:
        raise ValueError(f"opset {opset} too old: need >= 17 (LayerNormalization)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.onnx"
    data_name = f"{spec.name}.onnx.data"
    for p in (path, out_dir / data_name):
        p.unlink(missing_ok=True)
    module = spec.module.eval()
    t0 = time.perf_counter()
    used = exporter
    with torch.no_grad(), warnings.catch_warnings():
        # SAM's rel-pos tables depend on the (static) 64x64 grid only; the tracer flags them anyway
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        if exporter in ("auto", "torchscript"):
            try:
                _export_torchscript(spec, path, opset)
                used = "torchscript"
            except Exception as exc:
                if exporter == "torchscript":
                    raise ExportError(f"torchscript export of graph '{spec.name}' failed: {exc}") from exc
                log.warning("torchscript export of '%s' failed (%s: %s); falling back to the dynamo exporter",
                            spec.name, type(exc).__name__, str(exc)[:300])
                _export_dynamo(spec, path, opset)
                used = "dynamo"
        elif exporter == "dynamo":
            _export_dynamo(spec, path, opset)
        else:
            raise ValueError(f"unknown exporter '{exporter}' (auto, torchscript, dynamo)")
    export_s = time.perf_counter() - t0
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    weight_bytes += sum(b.numel() * b.element_size() for b in module.buffers())
    # per-tensor files the exporter wrote for a > 2 GiB graph: exactly the ones the graph references (a file of the
    # user's in the folder, e.g. a log `tee` writes meanwhile, is never one of them)
    external = _external_locations(path)
    model = onnx.load(str(path), load_external_data=True)
    # the dynamo exporter may name the graph differently; make IO names authoritative
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(spec.input_names) or got_out != list(spec.output_names):
        raise ExportError(f"graph '{spec.name}': exported IO names {got_in} -> {got_out} differ from "
                          f"{list(spec.input_names)} -> {list(spec.output_names)} (an input unused by the "
                          f"module is dropped by the exporter; remove it from input_names)")
    files = [path]
    stray = [out_dir / n for n in sorted(external) if n != data_name and (out_dir / n).is_file()]
    if weight_bytes > external_data_threshold or len(stray) > 0:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        for s in stray:  # per-tensor files written by the legacy exporter for > 2 GiB graphs
            s.unlink(missing_ok=True)
        files.append(out_dir / data_name)
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))
    opset_used = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    example = spec.example_inputs
    with torch.no_grad():
        ex_out = module(*example)
    ex_out = ex_out if isinstance(ex_out, (tuple, list)) else (ex_out,)
    entry = {
        "file": path.name,
        "data": [f.name for f in files[1:]],
        "sha256": file_sha256(*files),
        "bytes": int(sum(f.stat().st_size for f in files)),
        "exporter": used,
        "opset": int(opset_used),
        "export_seconds": round(export_s, 3),
        "description": spec.description,
        "inputs": [{"name": n, "shape": _symbolic_shape(spec, n, t), "dtype": _np_dtype_name(t)}
                   for n, t in zip(spec.input_names, example)],
        "outputs": [{"name": n, "shape": _symbolic_shape(spec, n, t), "dtype": _np_dtype_name(t)}
                    for n, t in zip(spec.output_names, ex_out)],
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in spec.dynamic_axes.items()},
        "axis_ranges": {k: list(v) for k, v in spec.axis_ranges.items()},
        "trt_profile": trt_profile(spec),
    }
    log.info("exported %s (%s, opset %d, %.1f MB) in %.2fs", path.name, used, opset_used, entry["bytes"] / 1e6, export_s)
    return entry


def _external_locations(path: Path) -> set[str]:
    """Files (relative to the graph) that the ONNX graph at ``path`` keeps tensors in (external data)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in _get_all_tensors(model) if uses_external_data(t) for e in t.external_data
            if e.key == "location"}


def trt_profile(spec: GraphSpec) -> dict[str, list]:
    """``{input: [min_shape, opt_shape, max_shape]}`` for every input with a dynamic axis."""
    prof = {}
    for name, t in zip(spec.input_names, spec.example_inputs):
        axes = spec.dynamic_axes.get(name)
        if not axes:
            continue
        shapes = []
        for k in range(3):
            s = [int(x) for x in t.shape]
            for ax, ax_name in axes.items():
                if ax_name not in spec.axis_ranges:
                    raise ExportError(f"graph '{spec.name}': dynamic axis '{ax_name}' of input '{name}' has no "
                                      f"(min, opt, max) in axis_ranges")
                s[ax] = int(spec.axis_ranges[ax_name][k])
            shapes.append(s)
        prof[name] = shapes
    return prof


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """``max|got - ref| / max(max|ref|, 1e-12)`` (the parity metric used everywhere in export)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def check_parity(spec: GraphSpec, onnx_path: str | Path, inputs: tuple | None = None, tol: float = 1e-4,
                 engine_factory: Callable | None = None) -> dict:
    """Run the graph in ONNX Runtime (CPU) and the module in PyTorch at ``inputs`` (default
    ``spec.parity_inputs``: shapes other than the export shapes); return per-output relative errors.

    Raises :class:`ExportError` if any compared output exceeds ``tol`` or if the parity shapes equal
    the export shapes (that would not test the dynamic axes)."""
    import torch

    from ..runtime.ort_engine import OrtEngine

    inputs = inputs if inputs is not None else spec.parity_inputs
    if inputs is None:
        raise ExportError(f"graph '{spec.name}': no parity inputs given")
    if spec.dynamic_axes and all(tuple(a.shape) == tuple(b.shape) for a, b in zip(inputs, spec.example_inputs)):
        raise ExportError(f"graph '{spec.name}': parity inputs have the export shapes; use other sizes on the dynamic axes")
    engine = (engine_factory or (lambda p: OrtEngine(p, name=spec.name)))(onnx_path)
    got = engine.run({n: t.detach().cpu().numpy() for n, t in zip(spec.input_names, inputs)})
    with torch.no_grad():
        ref = spec.module(*inputs)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    ref = {n: r.detach().float().cpu().numpy() if r.is_floating_point() else r.cpu().numpy()
           for n, r in zip(spec.output_names, ref)}
    names = list(spec.parity_outputs or spec.output_names)
    errs = {n: relative_error(got[n], ref[n]) for n in names}
    result = {
        "shapes": {n: list(t.shape) for n, t in zip(spec.input_names, inputs)},
        "rel_err": errs,
        "tol": tol,
        "ok": all(e <= tol for e in errs.values()),
    }
    if not result["ok"]:
        raise ExportError(f"graph '{spec.name}': ONNX Runtime differs from PyTorch beyond {tol}: {errs} at {result['shapes']}")
    return result


def write_manifest(out_dir: str | Path, graphs: dict[str, dict], **extra) -> Path:
    """Write ``manifest.json``: format, versions, graphs (hash, IO, dynamic axes, TRT profile) + ``extra``."""
    import onnx
    import torch

    try:
        import onnxruntime as ort

        ort_v = ort.__version__
    except Exception:  # pragma: no cover
        ort_v = None
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_unix": int(time.time()),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort_v,
                     "python": platform.python_version()},
        "graphs": graphs,
        **extra,
    }
    path = Path(out_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def load_manifest(out_dir: str | Path, verify: bool = True) -> dict:
    """Read ``manifest.json`` of an export folder; with ``verify`` re-hash each graph and raise
    :class:`ExportError` naming the file when it was modified or is missing (re-export to fix)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        raise ExportError(f"{path}: no manifest; run `interactvlm export --model DIR --out {out_dir}` first")
    try:
        manifest = json.loads(path.read_text())
    except Exception as exc:
        raise ExportError(f"{path}: unreadable manifest ({exc}); re-export") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r} is not {MANIFEST_FORMAT!r}; re-export with this version")
    if verify:
        for gname, g in manifest.get("graphs", {}).items():
            files = [out_dir / g["file"]] + [out_dir / d for d in g.get("data", [])]
            for f in files:
                if not f.is_file():
                    raise ExportError(f"{f}: graph file of '{gname}' is missing; re-export")
            if file_sha256(*files) != g["sha256"]:
                raise ExportError(f"{files[0]}: sha256 differs from the manifest (file modified or truncated); re-export")
    return manifest
