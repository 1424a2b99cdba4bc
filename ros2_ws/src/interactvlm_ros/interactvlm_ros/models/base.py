"""The ``Localizer`` protocol every contact localizer implements (docs/INTERFACES.md, models/).

A localizer turns one RGB photo + an object label + the static view renders of the human (and
optionally the object) into one contact-mask **logit** map per view::

    out = localizer.predict(image_rgb, "bottle", human_assets, object_assets=None)
    out.human_logits   # float32 [V, H, W]  (H, W = render resolution of ``human_assets``) or None
    out.object_logits  # float32 [V, H, W]  or None
    out.text           # generated answer text (models that generate text) or None
    out.timings        # stage name -> milliseconds
    out.human_vertex_contact  # float32 [N] in [0,1] on the human template, from a model that predicts per vertex
                              # directly (the default model's vertex head), or None; combined with the lifted masks
    out.human_vertex_merge    # by this rule (lift.merge_direct_contact): "max" (v7) or "direct" (v8: the head alone)
    out.object_vertex_contact # float32 [M] on the object mesh ``object_assets.mesh`` (the default model's object
    out.object_vertex_merge   # vertex head, v9+) or None; combined with the lifted object masks by this rule

``human_assets`` / ``object_assets`` are ``ViewAssets``-like objects (``renders`` uint8 [V,H,W,3],
``cam_params`` float32 [V,5], ``key`` str, plus the lifting maps the Lifter uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class LocalizerError(ValueError):
    """Bad input to a localizer (label, image, assets); the message names the field and the fix."""


@dataclass
class LocalizerOutput:
    """Result of :meth:`Localizer.predict`; logits are float32 ``[V, H, W]`` at render resolution."""

    human_logits: np.ndarray | None = None
    object_logits: np.ndarray | None = None
    text: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    human_vertex_contact: np.ndarray | None = None  # [N] probabilities on the human template (see module docstring)
    human_vertex_merge: str = "max"  # how the pipeline combines it with the lifted masks (lift.merge_direct_contact)
    object_vertex_contact: np.ndarray | None = None  # [M] probabilities on the object mesh of the object assets
    object_vertex_merge: str = "max"  # the same rule for the object side


@runtime_checkable
class Localizer(Protocol):
    """Anything with a ``name`` and a ``predict`` of this signature is a localizer."""

    name: str

    def predict(self, image_rgb: np.ndarray, object_label: str, human_assets: Any, object_assets: Any = None,
                observation: Any = None) -> LocalizerOutput:  # pragma: no cover - protocol
        ...


def check_image_rgb(image_rgb: Any, field_name: str = "image_rgb") -> np.ndarray:
    """Validate an ``uint8 [H, W, 3]`` RGB image; raise :class:`LocalizerError` naming the field otherwise."""
    if not isinstance(image_rgb, np.ndarray):
        raise LocalizerError(f"{field_name}: expected a numpy uint8 array [H,W,3] (RGB), got {type(image_rgb).__name__}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise LocalizerError(f"{field_name}: expected shape [H,W,3] (RGB), got {tuple(image_rgb.shape)}; "
                             f"convert grey/RGBA images to RGB first")
    if image_rgb.dtype != np.uint8:
        raise LocalizerError(f"{field_name}: expected dtype uint8 (0..255), got {image_rgb.dtype}; "
                             f"use (img*255).clip(0,255).astype(np.uint8) for float images")
    if min(image_rgb.shape[:2]) < 2:
        raise LocalizerError(f"{field_name}: image of size {image_rgb.shape[:2]} is too small")
    return image_rgb
