"""Body-part vocabulary shared by all body models, and the rules that map skinning bones to parts.

Parts (ids = index in ``PART_NAMES``): the trunk is split front/back by the vertex normal's z (the body
faces +z): ``torso``/``back`` for the chest/abdomen region, ``hips``/``buttocks`` for the pelvis region.
"""
from __future__ import annotations

import numpy as np

PART_NAMES = [
    "head", "neck", "torso", "back", "hips", "buttocks",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot",
]
PART_ID = {n: i for i, n in enumerate(PART_NAMES)}

# Anny bone-name prefixes → part (side suffix .L / .R → left_ / right_)
ANNY_PREFIX_PARTS = (
    (("head", "eye"), "head"),
    (("neck",), "neck"),
    (("wrist", "finger", "metacarpal"), "hand"),
    (("lowerarm",), "forearm"),
    (("upperarm", "shoulder"), "upper_arm"),
    (("upperleg",), "thigh"),
    (("lowerleg",), "shin"),
    (("foot", "toe"), "foot"),
    (("pelvis", "root"), "hips"),
    (("spine", "clavicle"), "torso"),
)

# SMPL / SMPL-H / SMPL-X joint index → part (first 22 joints are shared; higher = hands/face)
SMPL_JOINT_PARTS = {
    0: "hips", 1: "left_thigh", 2: "right_thigh", 3: "torso", 4: "left_shin", 5: "right_shin", 6: "torso",
    7: "left_foot", 8: "right_foot", 9: "torso", 10: "left_foot", 11: "right_foot", 12: "neck", 13: "torso",
    14: "torso", 15: "head", 16: "left_upper_arm", 17: "right_upper_arm", 18: "left_forearm", 19: "right_forearm",
    20: "left_hand", 21: "right_hand",
}


def split_front_back(labels: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """torso→back and hips→buttocks where the vertex normal points backwards (n_z < 0)."""
    out = labels.copy()
    back = normals[:, 2] < 0
    out[(labels == PART_ID["torso"]) & back] = PART_ID["back"]
    out[(labels == PART_ID["hips"]) & back] = PART_ID["buttocks"]
    return out


def anny_bone_part(name: str) -> str:
    base, side = (name[:-2], name[-1]) if name.endswith((".L", ".R")) else (name, "")
    for prefixes, part in ANNY_PREFIX_PARTS:
        if base.startswith(prefixes):
            if part in ("upper_arm", "forearm", "hand", "thigh", "shin", "foot"):
                return ("left_" if side == "L" else "right_") + part
            return part
    raise KeyError(f"Anny bone {name!r} has no part rule; extend bodies.parts.ANNY_PREFIX_PARTS")
