"""Input preprocessing exactly as the official demo (spec 2.1).

* CLIP branch: transformers' PIL ``CLIPImageProcessor`` (shortest side -> 224 bicubic, centre crop,
  /255, OpenAI mean/std) read from the CLIP folder's ``preprocessor_config.json`` -> ``[1,3,224,224]``.
* SAM branch: ``ResizeLongestSide(1024)`` (PIL bilinear, new size ``int(h*s+0.5)``), ``(x-mean)/std`` on
  0..255 values, zero-pad right/bottom -> ``[V,3,1024,1024]`` float32 + the pre-pad size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

SAM_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SAM_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


class ClipPreprocessor:
    """``__call__(image_rgb uint8 [H,W,3]) -> float32 tensor [1,3,224,224]``."""

    def __init__(self, clip_dir: str | Path | None = None):
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        cfg = Path(clip_dir) / "preprocessor_config.json" if clip_dir else None
        if cfg is not None and cfg.is_file():
            self.processor = CLIPImageProcessorPil.from_pretrained(str(clip_dir), local_files_only=True)
        else:  # OpenAI ViT-L/14 defaults (the class defaults are exactly those)
            self.processor = CLIPImageProcessorPil()

    def __call__(self, image_rgb: np.ndarray) -> torch.Tensor:
        out = self.processor(images=Image.fromarray(image_rgb), return_tensors="pt")
        return out["pixel_values"].float()


def sam_preprocess(renders: np.ndarray, img_size: int = 1024) -> tuple[torch.Tensor, tuple[int, int]]:
    """``renders uint8 [V,H,W,3]`` -> ``(float32 [V,3,img_size,img_size], (h', w'))`` (spec 2.1 steps 2-4)."""
    renders = np.asarray(renders)
    if renders.ndim != 4 or renders.shape[-1] != 3 or renders.dtype != np.uint8:
        raise ValueError(f"renders: expected uint8 [V,H,W,3], got {renders.dtype} {tuple(renders.shape)}")
    h, w = renders.shape[1:3]
    scale = img_size / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    out = np.zeros((renders.shape[0], 3, img_size, img_size), dtype=np.float32)
    for v, img in enumerate(renders):
        if (nh, nw) != (h, w):
            img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        x = (img.astype(np.float32) - SAM_MEAN) / SAM_STD
        out[v, :, :nh, :nw] = x.transpose(2, 0, 1)
    return torch.from_numpy(out), (nh, nw)
