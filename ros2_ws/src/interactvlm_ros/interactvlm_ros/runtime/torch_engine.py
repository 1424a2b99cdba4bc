"""PyTorch backend: wraps a plain-tensor ``nn.Module`` behind the :class:`Engine` interface."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import BackendUnavailableError, Engine, TensorSpec

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchEngine(Engine):
    """Run ``module(*[inputs[n] for n in input_names])`` under ``torch.inference_mode``.

    The module returns one tensor or a tuple matching ``output_names``. ``precision`` fp16/bf16
    casts the module's floating parameters and floating inputs (outputs come back as float32
    numpy, like the other backends). int8/fp8 are TensorRT-only and raise ``ValueError``.
    """

    def __init__(self, module, input_names: Sequence[str], output_names: Sequence[str], name: str | None = None,
                 device: str = "cpu", precision: str = "fp32", input_dtypes: dict[str, str] | None = None):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch {torch.__version__} has no usable CUDA device (torch.cuda.is_available() is False); "
                f"install a CUDA build of torch or use device='cpu'"
            )
        if precision not in _DTYPES:
            raise ValueError(f"TorchEngine: precision '{precision}' not supported (fp32, fp16, bf16; int8/fp8 need TensorRT)")
        self.torch = torch
        self.dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision])
        module = module.eval().to(device)
        if precision != "fp32":
            module = module.to(self.dtype)
        self.module = module
        input_dtypes = input_dtypes or {}
        super().__init__(name=name or type(module).__name__, backend="torch", device=device, precision=precision,
                         inputs=[TensorSpec(n, (), input_dtypes.get(n, "float32")) for n in input_names],
                         outputs=[TensorSpec(n, (), "float32") for n in output_names])

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = []
        for spec in self.inputs:
            t = torch.from_numpy(inputs[spec.name]).to(self.device)
            if t.is_floating_point():
                t = t.to(self.dtype)
            args.append(t)
        with torch.inference_mode():
            out = self.module(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != len(self.outputs):
            raise RuntimeError(f"{self.name}: module returned {len(out)} outputs, expected {self.output_names}")
        res = {}
        for spec, t in zip(self.outputs, out):
            t = t.detach()
            if t.is_floating_point():
                t = t.float()
            res[spec.name] = t.cpu().numpy()
        return res
