"""Inference runtimes behind one interface (see ``base.Engine``).

- ``select_backend("auto"|"tensorrt"|"onnxruntime"|"torch", device)`` -> ``BackendChoice`` (+ reasons)
- ``OrtEngine`` (ONNX Runtime CUDA/CPU), ``TensorRTEngine`` (lazy ``tensorrt``), ``TorchEngine``
- ``runtime.localizer.RuntimeMVLoc``: the MV-Loc localizer running its three exported graphs on any Engine

Nothing here imports ROS, TensorRT or CUDA at import time.
"""
from .base import BACKENDS, PRECISIONS, BackendUnavailableError, Engine, EngineInputError, TensorSpec
from .select import AUTO_ORDER, BackendChoice, last_choice, select_backend

__all__ = [
    "AUTO_ORDER", "BACKENDS", "PRECISIONS", "BackendChoice", "BackendUnavailableError", "Engine",
    "EngineInputError", "TensorSpec", "last_choice", "select_backend", "OrtEngine", "TorchEngine", "TensorRTEngine",
]


def __getattr__(name):  # lazy: onnxruntime / torch / tensorrt only when used
    if name == "OrtEngine":
        from .ort_engine import OrtEngine
        return OrtEngine
    if name == "TorchEngine":
        from .torch_engine import TorchEngine
        return TorchEngine
    if name == "TensorRTEngine":
        from .trt_engine import TensorRTEngine
        return TensorRTEngine
    raise AttributeError(name)
