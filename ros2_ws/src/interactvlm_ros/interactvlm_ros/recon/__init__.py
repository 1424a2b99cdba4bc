"""HOI reconstruction: the person (Anny) and the object in the camera frame, with contact on both.

``Reconstructor().fit(image, observation, human_contact, object_contact, object_mesh, depth=None, K=None,
init=None)`` → ``Reconstruction``; ``Tracker`` adds per-frame warm starts with resets.
See docs/reconstruction.md. Imports nothing from ROS; Anny is loaded on first use. The fitting classes (and torch
with them) are imported on first access, so ``recon.camera`` (intrinsics, depth checks) stays light for tools that
only need it (``interactvlm-replay``'s default CameraInfo).
"""
from interactvlm_ros.recon.camera import default_intrinsics, load_depth, parse_K, validate_K, validate_depth

_FROM_RECONSTRUCTOR = ("STATUSES", "Reconstruction", "ReconInit", "Reconstructor", "Tracker", "object_size_for")


def __getattr__(name: str):
    if name in _FROM_RECONSTRUCTOR:
        from interactvlm_ros.recon import reconstructor

        return getattr(reconstructor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Reconstructor", "Reconstruction", "ReconInit", "Tracker", "STATUSES", "default_intrinsics",
           "load_depth", "parse_K", "validate_K", "validate_depth", "object_size_for", "observation_from_sample"]


def observation_from_sample(sample, with_3d: bool = True, with_mask: bool = True):
    """A HumanObservation built from a synthetic sample's ground truth (tests/benchmarks: perception is
    tested elsewhere). keypoints_3d = camera-frame landmarks minus the hip centre (mediapipe world layout)."""
    import numpy as np

    from interactvlm_ros.perception.human import HumanObservation

    lm2 = np.asarray(sample["landmarks_2d"], np.float32)
    lm3 = np.asarray(sample["landmarks_3d"], np.float32)
    H, W = np.asarray(sample["image"]).shape[:2]
    return HumanObservation(
        found=True, image_size=(H, W), keypoints_2d=lm2,
        keypoints_3d=(lm3 - 0.5 * (lm3[23] + lm3[24])) if with_3d else None,
        mask=np.asarray(sample["person_mask"], bool) if with_mask else None,
        hands_2d=np.asarray(sample["hand_landmarks_2d"], np.float32), score=float(lm2[:, 2].mean()))
