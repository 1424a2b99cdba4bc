"""TensorRT backend: a serialized engine run with named IO tensors on a torch CUDA stream.

Written against the TensorRT >= 10 Python API (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). ``tensorrt`` and CUDA torch are
imported lazily: importing this module never needs them; constructing an engine without them
raises :class:`BackendUnavailableError` saying what to install. Not exercisable on the CI machine
(no GPU); engines are built by ``export/tensorrt_build.py``, which also owns the cache/staleness logic.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import BackendUnavailableError, Engine, TensorSpec, cuda_index

log = logging.getLogger(__name__)


def import_tensorrt():
    """``import tensorrt`` or :class:`BackendUnavailableError` with the install hint."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as exc:
        raise BackendUnavailableError(
            f"TensorRT is not importable ({type(exc).__name__}: {exc}); install it with `pip install tensorrt` "
            f"(NVIDIA GPU + driver required) or use the CUDA Docker image, which ships it"
        ) from exc
    return trt


def _torch_dtype(trt, dt):
    import torch

    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.BOOL: torch.bool,
    }
    for attr, tdt in (("BF16", torch.bfloat16), ("INT64", torch.int64)):
        if hasattr(trt.DataType, attr):
            table[getattr(trt.DataType, attr)] = tdt
    if dt not in table:
        raise TypeError(f"TensorRT tensor dtype {dt} has no torch equivalent here")
    return table[dt]


class TensorRTEngine(Engine):
    """Deserialize ``engine_path`` and run it. Inputs may be numpy (copied to the GPU) or CUDA torch
    tensors via :meth:`run_torch` (zero-copy; outputs stay on the GPU)."""

    def __init__(self, engine_path: str | Path, name: str | None = None, device: str = "cuda", precision: str = "fp16"):
        index = cuda_index(device)  # ValueError on "cpu", "cudafoo", "cuda:x", ...
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError("TensorRT needs a CUDA device but torch.cuda.is_available() is False "
                                          "(install a CUDA build of torch and an NVIDIA driver)")
        engine_path = Path(engine_path)
        self.trt = trt
        self.torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        data = engine_path.read_bytes()
        dev = torch.device("cuda", index)
        # TensorRT places an engine, its context and their memory on the *current* CUDA device: make it ``dev``
        # (cuda:1 used to land on GPU 0)
        with torch.cuda.device(dev):
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {engine_path} (corrupt, or built by another "
                                   f"TensorRT version/GPU); delete it and rebuild with `interactvlm export --tensorrt`")
            self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=dev)
        ins, outs = [], []
        self._dtypes = {}
        for i in range(self.engine.num_io_tensors):
            n = self.engine.get_tensor_name(i)
            tdt = _torch_dtype(trt, self.engine.get_tensor_dtype(n))
            self._dtypes[n] = tdt
            spec = TensorSpec(n, tuple(self.engine.get_tensor_shape(n)), str(tdt).replace("torch.", ""))
            (ins if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT else outs).append(spec)
        super().__init__(name=name or engine_path.stem, backend="tensorrt", device=str(dev), precision=precision,
                         inputs=ins, outputs=outs)
        self.path = engine_path

    def run_torch(self, inputs: dict) -> dict:
        """Run on CUDA torch tensors; returns CUDA torch tensors (no host round trip)."""
        with self.torch.cuda.device(self.device):  # the engine's device current while TensorRT runs
            return self._run_torch(inputs)

    def _run_torch(self, inputs: dict) -> dict:
        torch = self.torch
        keep = []
        for spec in self.inputs:
            t = inputs[spec.name]
            if not isinstance(t, torch.Tensor):
                t = torch.from_numpy(np.ascontiguousarray(t))
            t = t.to(self.device, self._dtypes[spec.name]).contiguous()
            keep.append(t)
            if not self.context.set_input_shape(spec.name, tuple(t.shape)):
                raise ValueError(f"{self.name}: shape {tuple(t.shape)} of input '{spec.name}' is outside the engine's "
                                 f"optimisation profile; rebuild with a wider profile (export/tensorrt_build.py)")
            self.context.set_tensor_address(spec.name, t.data_ptr())
        outs = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            o = torch.empty(shape, dtype=self._dtypes[spec.name], device=self.device)
            self.context.set_tensor_address(spec.name, o.data_ptr())
            outs[spec.name] = o
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"{self.name}: TensorRT execute_async_v3 failed")
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self.stream.synchronize()
        del keep
        return outs

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.run_torch(inputs)
        return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in outs.items()}
