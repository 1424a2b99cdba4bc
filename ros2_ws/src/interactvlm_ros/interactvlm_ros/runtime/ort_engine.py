"""ONNX Runtime backend (CUDA or CPU execution provider)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import BackendUnavailableError, Engine, TensorSpec, parse_device

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def ort_providers() -> list[str]:
    """Execution providers of the installed onnxruntime ([] when it is not importable)."""
    try:
        import onnxruntime as ort
    except Exception:  # pragma: no cover - onnxruntime is an install requirement
        return []
    return list(ort.get_available_providers())


class OrtEngine(Engine):
    """One ONNX graph in an ``onnxruntime.InferenceSession``.

    ``device="cuda[:i]"`` uses the CUDA execution provider (``onnxruntime-gpu``) and fails with
    :class:`BackendUnavailableError` when it is missing (no silent CPU fallback: auto-selection in
    ``select.py`` is where fallbacks happen, and they are logged there). ``io_binding=True`` binds
    outputs on the device to avoid a copy per output (CUDA only; pays off for the large encoder).
    """

    def __init__(self, path: str | Path, name: str | None = None, device: str = "cpu", precision: str = "fp32",
                 io_binding: bool = False, threads: int | None = None):
        try:
            import onnxruntime as ort
        except Exception as exc:  # pragma: no cover
            raise BackendUnavailableError(f"onnxruntime is not importable ({exc}); pip install onnxruntime "
                                          f"(or onnxruntime-gpu for CUDA)") from exc
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX graph not found: {path} (run `interactvlm export --model DIR --out DIR` first)")
        kind, index = parse_device(device)  # ValueError on "cudafoo", "cuda:x", ...
        if kind == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    f"onnxruntime has no CUDAExecutionProvider (available: {ort.get_available_providers()}); "
                    f"pip install onnxruntime-gpu matching your CUDA version, or use device='cpu'"
                )
            providers = [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise RuntimeError(f"onnxruntime could not load {path}: {exc} (re-export the graph with `interactvlm export`)") from exc
        ins = [TensorSpec(i.name, tuple(i.shape), _ORT_TYPES.get(i.type, "float32")) for i in self.session.get_inputs()]
        outs = [TensorSpec(o.name, tuple(o.shape), _ORT_TYPES.get(o.type, "float32")) for o in self.session.get_outputs()]
        super().__init__(name=name or path.stem, backend="onnxruntime", device=device, precision=precision,
                         inputs=ins, outputs=outs)
        self.path = path
        self.io_binding = bool(io_binding) and device.startswith("cuda")
        self.providers = self.session.get_providers()

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.io_binding:
            binding = self.session.io_binding()
            dev_id = int(self.device.split(":")[1]) if ":" in self.device else 0
            for n, a in inputs.items():
                binding.bind_cpu_input(n, a)
            for n in self.output_names:
                binding.bind_output(n, "cuda", dev_id)
            self.session.run_with_iobinding(binding)
            return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
        outs = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, outs))
