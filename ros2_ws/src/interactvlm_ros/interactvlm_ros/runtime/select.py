"""Backend auto-selection: TensorRT -> ORT CUDA -> torch CUDA -> ORT CPU -> torch CPU.

``select_backend(requested, device)`` returns a :class:`BackendChoice` naming the backend, the
device and WHY (every candidate that was skipped, with its reason, e.g. "tensorrt not importable",
"CUDA not available"). The choice is logged once per distinct outcome and kept for diagnostics
(:func:`last_choice`). Asking explicitly for a backend that cannot run raises
:class:`BackendUnavailableError` naming what is missing and how to install it.

Availability probes are plain functions in :data:`PROBES` (name -> ``() -> (ok, reason)``) so
tests can replace them; the defaults import nothing heavy unless asked.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from .base import BackendUnavailableError, parse_device

log = logging.getLogger(__name__)

# (backend, device) in auto-selection order
AUTO_ORDER: tuple[tuple[str, str], ...] = (
    ("tensorrt", "cuda"),
    ("onnxruntime", "cuda"),
    ("torch", "cuda"),
    ("onnxruntime", "cpu"),
    ("torch", "cpu"),
)

INSTALL_HINTS = {
    "tensorrt": "pip install tensorrt (NVIDIA GPU + driver), or use the CUDA Docker image which ships TensorRT",
    "onnxruntime": "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)",
    "torch": "pip install torch (a CUDA build for device='cuda')",
    "cuda": "an NVIDIA GPU with a driver and a CUDA build of torch (pip install torch --index-url https://download.pytorch.org/whl/cu124)",
}


def _probe_tensorrt() -> tuple[bool, str]:
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as exc:
        return False, f"tensorrt not importable ({type(exc).__name__}: {exc})"
    return True, f"tensorrt {getattr(trt, '__version__', '?')} importable"


def _probe_torch_cuda() -> tuple[bool, str]:
    try:
        import torch
    except Exception as exc:
        return False, f"torch not importable ({exc})"
    if not torch.cuda.is_available():
        return False, f"CUDA not available (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return True, f"CUDA device {torch.cuda.get_device_name(0)}"


def _probe_ort_cpu() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return False, f"onnxruntime not importable ({exc})"
    return True, f"onnxruntime {ort.__version__} CPUExecutionProvider"


def _probe_ort_cuda() -> tuple[bool, str]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return False, f"onnxruntime not importable ({exc})"
    provs = ort.get_available_providers()
    if "CUDAExecutionProvider" not in provs:
        return False, f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(provs)})"
    return True, f"onnxruntime {ort.__version__} CUDAExecutionProvider"


def _probe_torch_cpu() -> tuple[bool, str]:
    try:
        import torch
    except Exception as exc:
        return False, f"torch not importable ({exc})"
    return True, f"torch {torch.__version__} CPU"


def _probe_cuda_count() -> int | None:
    """Number of visible CUDA devices, or None when torch cannot tell (not importable / CPU build)."""
    try:
        import torch
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.device_count())


PROBES: dict[str, Callable[[], tuple[bool, str]]] = {
    "tensorrt": _probe_tensorrt,
    "torch_cuda": _probe_torch_cuda,
    "ort_cuda": _probe_ort_cuda,
    "ort_cpu": _probe_ort_cpu,
    "torch_cpu": _probe_torch_cpu,
    "cuda_count": _probe_cuda_count,  # () -> int | None (not a (ok, reason) probe): checks a cuda:<index>
}


@dataclass(frozen=True)
class BackendChoice:
    """Outcome of :func:`select_backend`: ``backend`` + ``device`` and the reasons behind it.

    ``considered`` lists ``(backend, device, ok, reason)`` for every candidate looked at, in order."""

    backend: str
    device: str
    reason: str
    requested: str = "auto"
    considered: tuple = field(default_factory=tuple)

    @property
    def fallback(self) -> bool:
        """True when an earlier candidate was skipped (the choice is a fallback)."""
        return any(not ok for _, _, ok, _ in self.considered)

    def summary(self) -> str:
        skipped = "; ".join(f"{b}/{d}: {r}" for b, d, ok, r in self.considered if not ok)
        s = f"backend={self.backend} device={self.device} (requested {self.requested}): {self.reason}"
        return s + (f" [skipped: {skipped}]" if skipped else "")

    def as_dict(self) -> dict:
        return {"backend": self.backend, "device": self.device, "reason": self.reason, "requested": self.requested,
                "considered": [{"backend": b, "device": d, "ok": ok, "reason": r} for b, d, ok, r in self.considered]}


_logged: set = set()
_last: BackendChoice | None = None


def last_choice() -> BackendChoice | None:
    """The most recent selection (for diagnostics / the node's /diagnostics status)."""
    return _last


def _check(backend: str, device: str, probes) -> tuple[bool, str]:
    """Is (backend, device) runnable? -> (ok, reason)."""
    if backend == "tensorrt":
        ok, why = probes["tensorrt"]()
        if not ok:
            return ok, why
        ok2, why2 = probes["torch_cuda"]()
        return (ok2, why if ok2 else why2)
    if backend == "onnxruntime":
        return probes["ort_cuda" if device == "cuda" else "ort_cpu"]()
    if backend == "torch":
        return probes["torch_cuda" if device == "cuda" else "torch_cpu"]()
    raise ValueError(f"unknown backend '{backend}' (choose auto, tensorrt, onnxruntime or torch)")


def select_backend(requested: str = "auto", device: str = "auto", probes: dict | None = None,
                   exclude: tuple[str, ...] = ()) -> BackendChoice:
    """Pick a backend. ``requested``: auto | tensorrt | onnxruntime | torch; ``device``: auto | cpu | cuda[:i].

    ``exclude`` removes backends from the auto order with a stated reason (e.g. a model that has no
    ONNX graphs and cannot be exported). Raises :class:`BackendUnavailableError` when an explicitly
    requested backend/device cannot run (message names what is missing + install hint) or ``cuda:<i>``
    is not a visible device, and ``ValueError`` on unknown names (``"cudafoo"`` is not CUDA)."""
    global _last
    probes = {**PROBES, **(probes or {})}
    requested = (requested or "auto").lower()
    device = (device or "auto").lower()
    if requested not in ("auto", "tensorrt", "onnxruntime", "torch"):
        raise ValueError(f"unknown backend '{requested}' (choose auto, tensorrt, onnxruntime or torch)")
    try:
        dev_kind, dev_index = ("auto", None) if device == "auto" else parse_device(device)
    except ValueError:
        raise ValueError(f"unknown device '{device}' (choose auto, cpu, cuda or cuda:<index>)") from None
    if dev_index is not None:
        count = probes["cuda_count"]()
        if count is not None and dev_index >= count:
            raise BackendUnavailableError(f"device '{device}' does not exist: {count} CUDA device(s) visible "
                                          f"(cuda:0 .. cuda:{count - 1}); pick one of them or device='cpu'")
    if requested == "tensorrt" and dev_kind == "cpu":
        raise BackendUnavailableError("backend 'tensorrt' needs device='cuda' (got device='cpu')")

    candidates = [(b, d) for b, d in AUTO_ORDER
                  if (requested == "auto" or b == requested) and (dev_kind == "auto" or d == dev_kind)]
    considered = []
    chosen = None
    for b, d in candidates:
        if b in exclude:
            considered.append((b, d, False, f"{b} excluded by caller"))
            continue
        ok, why = _check(b, d, probes)
        considered.append((b, d, ok, why))
        if ok:
            chosen = (b, d, why)
            break
    if chosen is None:
        details = "; ".join(f"{b}/{d}: {r}" for b, d, _, r in considered) or "no candidate"
        if requested == "auto":
            raise BackendUnavailableError(f"no backend can run on device='{device}': {details}; "
                                          f"install one of: {INSTALL_HINTS['onnxruntime']}; {INSTALL_HINTS['torch']}")
        hint = INSTALL_HINTS[requested]
        if dev_kind == "cuda" or requested == "tensorrt":
            hint += f"; CUDA needs {INSTALL_HINTS['cuda']}"
        raise BackendUnavailableError(f"backend '{requested}' (device={device}) is unavailable: {details}. To fix: {hint}")
    b, d, why = chosen
    if d == "cuda" and device.startswith("cuda:"):
        d = device
    reason = why if not any(not ok for *_, ok, _ in considered) else f"{why} (first available in order)"
    choice = BackendChoice(backend=b, device=d, reason=reason, requested=requested, considered=tuple(considered))
    key = (requested, device, b, d, tuple(r for *_, r in considered))
    if key not in _logged:
        _logged.add(key)
        (log.warning if choice.fallback else log.info)("runtime selection: %s", choice.summary())
    _last = choice
    return choice
