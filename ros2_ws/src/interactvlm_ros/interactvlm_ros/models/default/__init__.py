"""The embedded default localizer (issue #5): small, open, trained here on synthetic interactions,
conditioned on offline pretrained perception (mediapipe pose/hands + MiniLM label embeddings).

    from interactvlm_ros.models.default import load_default_localizer
    loc = load_default_localizer()            # shipped weights, backend auto (onnxruntime -> torch)
    out = loc.predict(image_rgb, "cup", human_assets, object_assets)

See docs/default_model.md for the design, the training command and the measured figures.
"""
from __future__ import annotations

from pathlib import Path


def load_default_localizer(backend: str = "auto", device: str = "cpu", weights: str | Path | None = None, **kw):
    """Build the default localizer (``model="default"`` in ``models.registry.load_localizer``).

    ``weights``: a folder with ``model.pt`` (+ ``frame.onnx``) — e.g. a training run's output; default: the
    weights shipped inside the package."""
    from .predictor import DefaultLocalizer

    return DefaultLocalizer(weights=weights, backend=backend, device=device, **kw)


def load(backend: str = "auto", device: str = "cpu", **kw):
    """Hook of ``models.registry.LOADERS['default']``."""
    return load_default_localizer(backend=backend, device=device, **kw)


__all__ = ["load_default_localizer", "load"]
