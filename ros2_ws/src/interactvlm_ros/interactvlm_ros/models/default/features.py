"""Per-frame model inputs, built the SAME way from a synthetic sample (training) and from a
mediapipe ``HumanObservation`` (inference) — the reason the model trained on synthetic data carries
over to real photos.

Person frame: centre and size of the box around the visible pose landmarks (visibility > 0.5) and the
detected hand landmarks. Every 2D point is expressed as ``(p - centre) / size`` (clipped to ±2), so
the features do not depend on image size, person size or position.

Layouts (float32):
    pose  [33,3]    x, y (person-box units), visibility in [0,1]
    hands [2,21,3]  person's left, right hand; x, y, 1 for a detected hand, all 0 for a missing hand
    obj   [6]       object box x0, y0, x1, y1 (person-box units), box area (units²), present 0/1
    depth [4]       person depth (m, median), object - person depth (m), has_depth, has_object_depth
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_POSE = 33
NUM_HAND = 21
VIS_THRESHOLD = 0.5
CLIP = 2.0


class FeatureError(ValueError):
    """Cues that cannot describe a person (wrong shapes, NaN, no visible landmark)."""


@dataclass
class FrameFeatures:
    pose: np.ndarray  # [33,3]
    hands: np.ndarray  # [2,21,3]
    obj: np.ndarray  # [6]
    depth: np.ndarray  # [4]
    center: np.ndarray  # [2] px
    scale: float  # px

    def as_batch(self) -> dict[str, np.ndarray]:
        """Model inputs with a batch axis of 1 (label added by the caller)."""
        return {"pose": self.pose[None], "hands": self.hands[None], "obj": self.obj[None], "depth": self.depth[None]}


def _check(name: str, a, shape: tuple) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.shape != shape:
        raise FeatureError(f"{name} has shape {a.shape}; expected {shape}")
    if not np.isfinite(a).all():
        raise FeatureError(f"{name} contains NaN/inf; pass finite landmark coordinates")
    return a


def person_frame(pose2d: np.ndarray, hands2d: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre [2] px, size px) of the box around visible pose landmarks ∪ present hand landmarks."""
    pts = [pose2d[pose2d[:, 2] > VIS_THRESHOLD, :2]]
    for s in range(2):
        if hands2d[s, :, 2].mean() > VIS_THRESHOLD:
            pts.append(hands2d[s, :, :2])
    pts = np.concatenate(pts, 0)
    if len(pts) < 2:
        raise FeatureError("fewer than 2 visible landmarks: no person frame (is there a person in the image?)")
    lo, hi = pts.min(0), pts.max(0)
    return ((lo + hi) / 2).astype(np.float32), float(max(hi[0] - lo[0], hi[1] - lo[1], 1.0))


def build_features(pose2d, hands2d, object_bbox=None, depth_cue=None) -> FrameFeatures:
    """Normalise raw cues (pixels) into model inputs.

    Args:
        pose2d: [33,3] mediapipe Pose layout, x/y pixels + visibility.
        hands2d: [2,21,3] (left, right), pixels + visibility (a missing hand has visibility 0).
        object_bbox: [4] x0,y0,x1,y1 pixels, or None.
        depth_cue: [2] (person depth m, object depth m or nan), or None.
    """
    pose2d = _check("pose landmarks (keypoints_2d)", pose2d, (NUM_POSE, 3))
    hands2d = _check("hand landmarks (hands_2d)", hands2d, (2, NUM_HAND, 3))
    center, scale = person_frame(pose2d, hands2d)
    pose = np.zeros((NUM_POSE, 3), np.float32)
    pose[:, :2] = np.clip((pose2d[:, :2] - center) / scale, -CLIP, CLIP)
    pose[:, 2] = np.clip(pose2d[:, 2], 0.0, 1.0)
    hands = np.zeros((2, NUM_HAND, 3), np.float32)
    for s in range(2):
        if hands2d[s, :, 2].mean() > VIS_THRESHOLD:
            hands[s, :, :2] = np.clip((hands2d[s, :, :2] - center) / scale, -CLIP, CLIP)
            hands[s, :, 2] = 1.0
    obj = np.zeros(6, np.float32)
    if object_bbox is not None:
        box = _check("object_bbox", object_bbox, (4,))
        if box[2] > box[0] and box[3] > box[1]:
            nb = np.clip((box.reshape(2, 2) - center) / scale, -CLIP, CLIP).reshape(4)
            obj[:4] = nb
            obj[4] = (nb[2] - nb[0]) * (nb[3] - nb[1])
            obj[5] = 1.0
    depth = np.zeros(4, np.float32)
    if depth_cue is not None:
        dc = np.asarray(depth_cue, np.float32).reshape(-1)
        if dc.shape[0] != 2:
            raise FeatureError(f"depth_cue has {dc.shape[0]} values; expected (person depth, object depth)")
        if np.isfinite(dc[0]) and dc[0] > 0:
            depth[0] = min(float(dc[0]), 10.0) / 5.0
            depth[2] = 1.0
            if np.isfinite(dc[1]) and dc[1] > 0:
                depth[1] = float(np.clip(dc[1] - dc[0], -1.0, 1.0))
                depth[3] = 1.0
    return FrameFeatures(pose, hands, obj, depth, center, scale)


def depth_cue_from_maps(depth: np.ndarray | None, person_mask: np.ndarray | None, object_mask: np.ndarray | None):
    """(median person depth, median object depth) in metres from a depth map and masks; None if unusable."""
    if depth is None or person_mask is None:
        return None
    depth = np.asarray(depth, np.float32)
    if person_mask.shape != depth.shape:
        return None
    valid = np.isfinite(depth) & (depth > 0)  # 0 / NaN / inf: no reading
    p = depth[person_mask & valid]
    if p.size < 10:
        return None
    o = np.nan
    if object_mask is not None and object_mask.shape == depth.shape:
        od = depth[object_mask & valid]
        if od.size >= 10:
            o = float(np.median(od))
    return np.array([np.median(p), o], np.float32)


def features_from_observation(observation, object_bbox=None, depth=None, object_mask=None) -> tuple[FrameFeatures, str]:
    """(model inputs, "" or why the box was left out) from a ``perception.HumanObservation`` + the frame's optional
    object box / mask and depth map (metres): the box cue is ``object_bbox``, else the box of a non-empty
    ``object_mask``, else one a caller attached as ``observation.object_bbox``; the depth cue is the median depth of
    the person's mask (perception) and of the object mask. Raises FeatureError when the cues describe no person."""
    mask = None if object_mask is None else np.asarray(object_mask) != 0
    box, problem = cue_box(object_bbox, mask, observation)
    cue = None if depth is None else depth_cue_from_maps(depth, getattr(observation, "mask", None), mask)
    pose2d, hands2d = outside_image_not_visible(observation.keypoints_2d, observation.hands_2d,
                                                getattr(observation, "image_size", None))
    return build_features(pose2d, hands2d, box, cue), problem


def outside_image_not_visible(pose2d, hands2d, image_size) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the landmarks with visibility 0 where they fall outside the image (``image_size`` = (H, W); None
    leaves them as they are). The synthetic training cues are visible only inside the image (synth.generator), but
    mediapipe extrapolates a cut-off body with high visibility (knees 0.8 below the bottom edge of a chest crop)."""
    pose2d = np.array(pose2d, np.float32)
    hands2d = np.array(hands2d, np.float32)
    if image_size is None or pose2d.shape[-1:] != (3,) or hands2d.shape[-1:] != (3,):
        return pose2d, hands2d  # shapes are checked (named errors) by build_features
    H, W = (float(v) for v in image_size[:2])
    for a in (pose2d, hands2d):
        x, y = a[..., 0], a[..., 1]
        a[..., 2] = np.where((x >= 0) & (x < W) & (y >= 0) & (y < H), a[..., 2], 0.0)
    return pose2d, hands2d


def cue_box(object_box, object_mask, observation) -> tuple[np.ndarray | None, str]:
    """The object box cue: ``object_box``, else the box of a non-empty ``object_mask``, else a box a caller attached
    to the observation (``observation.object_bbox``). A box that is not 4 finite numbers with x1 > x0, y1 > y0 is
    left out, and the reason returned."""
    if object_box is None and object_mask is not None:
        m = np.asarray(object_mask) != 0
        if m.any():
            ys, xs = np.nonzero(m)
            object_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    if object_box is None:
        object_box = getattr(observation, "object_bbox", None)
    if object_box is None:
        return None, ""
    b = np.asarray(object_box, np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
        return None, "an object box that is not x0 < x1, y0 < y1 (finite pixels) is left out of the model's input"
    return b.astype(np.float32), ""
