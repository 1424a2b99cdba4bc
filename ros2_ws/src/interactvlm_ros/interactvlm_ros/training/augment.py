"""Simulated mediapipe noise and failure modes, applied to the exact cues of synthetic samples.

What mediapipe does on real photos that exact synthetic projections do not (and what we simulate):
- landmark jitter (a few % of the person size; larger for occluded landmarks),
- continuous, imperfect visibility scores; occasional dropped landmarks; truncated lower body,
- missing hands (the hand landmarker misses small/occluded hands often) and rare left/right swaps,
- no object ROI (the pipeline usually has no object detector) and no depth (monocular cameras),
- unknown labels (label dropout -> the generic-object input).

All randomness comes from the ``numpy.random.Generator`` passed in (seeded by the trainer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOWER_BODY = np.arange(23, 33)


@dataclass
class AugmentConfig:
    jitter: float = 0.02  # σ of landmark noise, fraction of person size
    jitter_occluded: float = 0.06
    drop_landmark: float = 0.05
    truncate_lower: float = 0.08
    drop_hand: float = 0.35
    swap_hands: float = 0.03
    keep_roi: float = 0.35
    roi_jitter: float = 0.1
    keep_depth: float = 0.25
    label_dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"augment: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def _size(pose: np.ndarray) -> float:
    vis = pose[:, 2] > 0.5
    pts = pose[vis, :2] if vis.sum() >= 2 else pose[:, :2]
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))


def augment_cues(rng: np.random.Generator, pose2d: np.ndarray, hands2d: np.ndarray, bbox: np.ndarray | None,
                 depth_cue: np.ndarray | None, cfg: AugmentConfig):
    """One sample's pixel-space cues -> noisy copies (pose [33,3], hands [2,21,3], bbox or None, depth or None)."""
    pose = pose2d.astype(np.float32).copy()
    hands = hands2d.astype(np.float32).copy()
    s = _size(pose)
    vis = pose[:, 2] > 0.5
    sigma = np.where(vis, cfg.jitter, cfg.jitter_occluded)[:, None] * s
    pose[:, :2] += rng.normal(size=(33, 2)).astype(np.float32) * sigma
    # continuous visibility, as mediapipe reports it
    pose[:, 2] = np.where(vis, rng.uniform(0.6, 1.0, 33), rng.uniform(0.0, 0.4, 33))
    drop = rng.random(33) < cfg.drop_landmark
    pose[drop, 2] = rng.uniform(0.0, 0.3, int(drop.sum()))
    if rng.random() < cfg.truncate_lower:
        pose[LOWER_BODY, 2] = rng.uniform(0.0, 0.2, len(LOWER_BODY))
    for side in range(2):
        present = hands[side, :, 2].mean() > 0.5
        if not present or rng.random() < cfg.drop_hand:
            hands[side] = 0.0
            continue
        hands[side, :, :2] += (rng.normal(size=(1, 2)) * 0.01 * s + rng.normal(size=(21, 2)) * 0.006 * s).astype(np.float32)
        hands[side, :, 2] = 1.0
    if rng.random() < cfg.swap_hands:
        hands = hands[::-1].copy()
    box = None
    if bbox is not None and rng.random() < cfg.keep_roi:
        b = np.asarray(bbox, np.float32).copy()
        w, h = b[2] - b[0], b[3] - b[1]
        if w > 1 and h > 1:
            b += (rng.normal(size=4) * cfg.roi_jitter * np.array([w, h, w, h])).astype(np.float32)
            if b[2] > b[0] and b[3] > b[1]:
                box = b
    depth = None
    if depth_cue is not None and rng.random() < cfg.keep_depth:
        d = np.asarray(depth_cue, np.float32).copy()
        d = d * (1 + rng.normal(size=2).astype(np.float32) * 0.02)
        depth = d
    return pose, hands, box, depth
