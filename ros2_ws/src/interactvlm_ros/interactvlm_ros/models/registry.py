"""``load_localizer(model, backend, device)``: model name or checkpoint path -> a ``Localizer``.

``LOADERS`` maps a model name to ``"module:function"``; the function is called as
``fn(backend=..., device=..., **kwargs)``. A path to an official InteractVLM HF folder (has
``config.json`` with ``seg_token_idx``) loads :class:`~interactvlm_ros.models.mvloc.predictor.MVLocPredictor`.

Hook for the embedded model: ``"default"`` -> ``interactvlm_ros.models.default:load`` (its module
provides ``load(backend, device, **kw) -> Localizer``). Backends other than PyTorch for MV-Loc come from
``interactvlm_ros.runtime`` (``MVLOC_BACKEND_LOADERS`` below is the hook for them).
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

from .base import Localizer, LocalizerError

log = logging.getLogger(__name__)

LOADERS: dict[str, str] = {
    "default": "interactvlm_ros.models.default:load",
}

# backend name -> "module:function(model_dir, device=..., **kw) -> Localizer" for official checkpoints;
# "torch" is built in. ONNX Runtime / TensorRT runtimes register here.
MVLOC_BACKEND_LOADERS: dict[str, str] = {
    "tensorrt": "interactvlm_ros.runtime.localizer:load_tensorrt",
    "onnxruntime": "interactvlm_ros.runtime.localizer:load_onnxruntime",
}
# backend="auto": TensorRT -> ORT CUDA -> torch CUDA -> ORT CPU -> torch CPU (``runtime.select_backend``);
# the chosen backend and the reasons for skipping the others are logged and kept for diagnostics.
MVLOC_AUTO_LOADER = "interactvlm_ros.runtime.localizer:load_auto"


def _resolve(spec: str) -> Callable[..., Any]:
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def is_official_checkpoint(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "seg_token_idx" in json.loads(cfg.read_text())
    except ValueError:
        return False


def load_localizer(model: str = "default", backend: str = "auto", device: str = "cpu", **kwargs) -> Localizer:
    """Return a ready localizer.

    Args:
        model: a registered name (``"default"``), a path to an official InteractVLM HF folder, or a default-model
            folder holding ``model.pt`` (an ``interactvlm train`` run).
        backend: ``"auto"`` | ``"torch"`` | a backend registered in ``MVLOC_BACKEND_LOADERS``.
        device: ``"cpu"`` | ``"cuda"`` | ``"cuda:N"``.
        kwargs: passed to the loader (MV-Loc: ``clip_dir``, ``precision``, ``mode``, ``quantization``, ...).
    """
    if model in LOADERS:
        return _resolve(LOADERS[model])(backend=backend, device=device, **kwargs)
    path = Path(model).expanduser()  # a params file's `model: ~/models/...` (no shell expands it there)
    for k in ("clip_dir", "onnx_dir"):
        if isinstance(kwargs.get(k), str):
            kwargs[k] = str(Path(kwargs[k]).expanduser())
    if not path.exists():
        raise LocalizerError(f"model {model!r}: neither a registered model ({sorted(LOADERS)}) nor an existing path")
    if not is_official_checkpoint(path):
        if (path / "model.pt").is_file():  # a default-model folder: a training run or a packaged copy
            return _resolve(LOADERS["default"])(backend=backend, device=device, weights=path, **kwargs)
        raise LocalizerError(f"model {model!r}: neither an official InteractVLM checkpoint folder ({path}/config.json "
                             f"with seg_token_idx) nor a default-model folder ({path}/model.pt, `interactvlm train`)")
    if backend not in ("auto", "torch"):
        if backend not in MVLOC_BACKEND_LOADERS:
            raise LocalizerError(f"backend {backend!r} for MV-Loc: not available (registered: "
                                 f"{['torch', *sorted(MVLOC_BACKEND_LOADERS)]})")
        return _resolve(MVLOC_BACKEND_LOADERS[backend])(path, device=device, **kwargs)
    if backend == "auto":
        return _resolve(MVLOC_AUTO_LOADER)(path, device=device, **kwargs)
    from .mvloc.predictor import MVLocPredictor

    return MVLocPredictor.from_pretrained(path, device=device, **kwargs)
