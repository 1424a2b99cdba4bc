"""The one interface every inference backend implements.

An :class:`Engine` runs ONE graph (e.g. the SAM image encoder) on named numpy arrays::

    engine.run({"images": x})  # x float32 [V,3,1024,1024]  ->  {"image_embeddings": [V,256,64,64]}

Backends: TensorRT (``trt_engine.TensorRTEngine``), ONNX Runtime (``ort_engine.OrtEngine``),
PyTorch (``torch_engine.TorchEngine``). They are interchangeable: same input names, same output
names, numpy in and numpy out, so a localizer can be written once against this interface.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

BACKENDS = ("tensorrt", "onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


_DEVICE_RE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def parse_device(device: str) -> tuple[str, int | None]:
    """``"cpu"`` -> ``("cpu", None)``, ``"cuda"`` -> ``("cuda", None)``, ``"cuda:1"`` -> ``("cuda", 1)``.

    Anything else (``"cudafoo"``, ``"cuda:x"``, ``"cuda:-1"``, ``"cpu:1"``) raises ``ValueError`` naming the
    accepted forms, so a typo never silently becomes CUDA device 0."""
    m = _DEVICE_RE.fullmatch(str(device))
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"unknown device '{device}' (choose cpu, cuda or cuda:<index>, e.g. cuda:1)")
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def cuda_index(device: int | str | None) -> int:
    """CUDA device index of ``device``: an int, ``"cuda"`` (0; None too) or ``"cuda:<i>"``. ValueError for a
    device that is not CUDA (TensorRT engines are built for and run on one GPU) or a typo (:func:`parse_device`)."""
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    kind, index = parse_device(device)
    if kind != "cuda":
        raise ValueError(f"device '{device}' is not a CUDA device: TensorRT needs cuda or cuda:<index>")
    return index or 0


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend (or device) cannot run here; the message says what to install."""


class EngineInputError(ValueError):
    """The inputs given to :meth:`Engine.run` do not match the graph's declared inputs."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, symbolic shape (ints or axis names such as ``"views"``) and numpy dtype name of one graph IO."""

    name: str
    shape: tuple = ()
    dtype: str = "float32"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d.get("shape", ())), d.get("dtype", "float32"))


@dataclass
class Engine(ABC):
    """One runnable graph. Subclasses fill ``inputs``/``outputs`` and implement :meth:`_run`.

    Attributes: ``name`` (graph name, e.g. ``"sam_encoder"``), ``backend`` (``"onnxruntime"`` ...),
    ``device`` (``"cpu"`` / ``"cuda"`` / ``"cuda:1"``), ``precision`` (``"fp32"`` ...).
    """

    name: str
    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph: ``{input name: array}`` -> ``{output name: float32/int64 array}``.

        Missing or unexpected input names raise :class:`EngineInputError` naming them (never a
        backend-specific crash deep inside the runtime)."""
        if not isinstance(inputs, dict):
            raise EngineInputError(f"{self.name}: Engine.run expects a dict of numpy arrays, got {type(inputs).__name__}")
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise EngineInputError(
                f"{self.name} ({self.backend}): inputs do not match the graph; missing {missing}, unexpected {extra}; "
                f"expected exactly {self.input_names}"
            )
        arrays = {}
        for spec in self.inputs:
            a = np.asarray(inputs[spec.name])
            if a.ndim != len(spec.shape) and spec.shape:
                raise EngineInputError(
                    f"{self.name}: input '{spec.name}' has {a.ndim} dims {a.shape}, graph expects {len(spec.shape)} "
                    f"dims {list(spec.shape)}"
                )
            try:
                want = np.dtype(spec.dtype)
            except TypeError:  # e.g. bfloat16: no numpy dtype; the backend converts
                want = None
            if want is not None and a.dtype != want:
                a = a.astype(want)
            arrays[spec.name] = np.ascontiguousarray(a)
        return self._run(arrays)

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def describe(self) -> dict:
        """Diagnostics: backend, device, precision and IO of this engine."""
        return {
            "name": self.name,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }
