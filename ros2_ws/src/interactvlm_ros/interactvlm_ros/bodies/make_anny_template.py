"""Regenerate ``bodies/data/anny_vitruvian.npz`` (the canonical Anny template shipped in the package).

    python -m interactvlm_ros.bodies.make_anny_template [--out PATH]

Recipe (deterministic): Anny default rig/topology (``anny.Anny()``, cache pinned under
``paths.cache_dir("anny")``), all phenotype values 0.5, rest pose except the "Vitruvian" pose of spec 3.5
adapted to Anny: upper and lower arms straight along ±x (T pose), legs straight and abducted 30° from
vertical in the frontal plane. Pose rotations are written in the world frame and converted to Anny's
local deltas (``anny_model.AnnyPoser.local_from_world``). Vertices are mapped from Anny's frame (z up, facing −y) to
the body frame (y up, facing +z, person's left at +x) and shifted by ``CANONICAL_Y_OFFSET`` (−0.22 m) so
that the pelvis sits near the origin and the feet near y ≈ −1.04, like SMPL-H for the official human views.
Part labels: dominant skinning bone → ``parts.ANNY_PREFIX_PARTS``; the band around the hip joints → hips; trunk and
hips split front/back by the normal (torso/back, hips/buttocks). Keypoint regressor: see the comment in ``main``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "anny_vitruvian.npz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", default=str(DATA))
    args = ap.parse_args(argv)
    import json

    from .anny_model import AnnyPoser, local_rotvecs_from_world, vitruvian_world_rotations
    from .parts import PART_ID, PART_NAMES, anny_bone_part, split_front_back
    from ..assets import vertex_normals

    poser = AnnyPoser()
    world = vitruvian_world_rotations(poser)
    local = local_rotvecs_from_world(poser, world)
    posed = poser(local)  # the same pose through the public (local, body-frame) path
    verts, joints = posed.vertices[0], posed.joints[0]
    faces = poser.faces
    labels = np.array([PART_ID[anny_bone_part(poser.bone_labels[b])] for b in poser.dominant_bone], np.int16)
    # the pelvis/root bones own few vertices: the band around the hip joints (crotch level .. iliac crest) skinned
    # to the pelvis, the lowest spine bone or the upper thighs is the hips region (split front/back below)
    hy = float(joints[[poser.index["upperleg01.L"], poser.index["upperleg01.R"]], 1].mean())
    band = [poser.index[n] for n in ("root", "pelvis.L", "pelvis.R", "spine05", "upperleg01.L", "upperleg01.R")]
    region = np.isin(poser.dominant_bone, band) & (verts[:, 1] > hy - 0.10) & (verts[:, 1] < hy + 0.16)
    labels[region] = PART_ID["hips"]
    labels = split_front_back(labels, vertex_normals(verts, faces)).astype(np.int16)
    # pose check: fail loudly rather than ship a wrong template
    for side, sg in (("L", 1), ("R", -1)):
        arm = joints[poser.index[f"wrist.{side}"]] - joints[poser.index[f"upperarm01.{side}"]]
        leg = joints[poser.index[f"foot.{side}"]] - joints[poser.index[f"upperleg01.{side}"]]
        arm_dev = np.degrees(np.arccos(sg * arm[0] / np.linalg.norm(arm)))
        leg_abd = np.degrees(np.arctan2(sg * leg[0], -leg[1]))
        if arm_dev > 1.0 or abs(leg_abd - 30.0) > 1.0:
            raise RuntimeError(f"Vitruvian pose check failed ({side}: arm {arm_dev:.2f} deg off x, leg {leg_abd:.2f} deg)")
    # keypoint regressor: per keypoint bone, convex weights (NNLS, sum 1) over the 48 vertices nearest the joint
    # among those skinned to the bone or its parent, reproducing the template joint; near a joint the vertices move
    # with the two bones, so the weighted mean follows the joint on posed meshes (rest error ≤ 2.5 cm, posed ≤ ~3 cm)
    from scipy.optimize import nnls

    kp = ["pelvis.L", "pelvis.R", "spine03", "spine01", "neck01", "head", "upperarm01.L", "upperarm01.R",
          "lowerarm01.L", "lowerarm01.R", "wrist.L", "wrist.R", "upperleg01.L", "upperleg01.R", "lowerleg01.L",
          "lowerleg01.R", "foot.L", "foot.R"]
    w_all = poser.model.vertex_bone_weights.cpu().numpy()
    i_all = poser.model.vertex_bone_indices.cpu().numpy()
    dense = np.zeros((len(verts), len(poser.bone_labels)))
    np.add.at(dense, (np.repeat(np.arange(len(verts)), i_all.shape[1]), i_all.ravel()), w_all.ravel())
    rows, cols, vals, err = [], [], [], {}
    for k, name in enumerate(kp):
        b, p = poser.index[name], poser.parents[poser.index[name]]
        jp = joints[b].astype(np.float64)
        cand = np.nonzero(dense[:, b] + (dense[:, p] if p >= 0 else 0) > 0.1)[0]
        near = cand[np.argsort(np.linalg.norm(verts[cand] - jp, axis=1))[:48]]
        A = np.vstack([verts[near].T.astype(np.float64), 10.0 * np.ones((1, len(near)))])
        w, _ = nnls(A, np.concatenate([jp, [10.0]]))
        keep = w > 1e-6
        near, w = near[keep], w[keep] / w[keep].sum()
        rows += [k] * len(near)
        cols += list(near)
        vals += list(w)
        err[name] = round(float(np.linalg.norm(w @ verts[near] - jp)), 4)
    meta = {"made_by": "python -m interactvlm_ros.bodies.make_anny_template",
            "phenotype": "all 0.5 (gender, age, muscle, weight, height, proportions)",
            "pose": "Vitruvian: arms along +-x, legs abducted 30 deg (spec 3.5); other bones at rest",
            "frame": "y up, facing +z, left at +x, metres; pelvis at (0,-0.22,0)", "placement_offset": [0.0, -0.22, 0.0],
            "licence": "Anny (NAVER LABS Europe) model data: CC0-1.0",
            "bbox_min": [round(float(x), 4) for x in verts.min(0)], "bbox_max": [round(float(x), 4) for x in verts.max(0)],
            "keypoint_regressor_rest_error_m": err}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, vertices=verts.astype(np.float32), faces=faces.astype(np.int32), part_labels=labels,
        part_names=np.array(PART_NAMES), dominant_bone=poser.dominant_bone.astype(np.int16),
        bone_labels=np.array(poser.bone_labels), bone_parents=np.asarray(poser.parents, np.int16),
        joints=joints.astype(np.float32), vitruvian_local_rotvecs=local.astype(np.float32),
        keypoint_bones=np.array(kp), regressor_rows=np.asarray(rows, np.int32), regressor_cols=np.asarray(cols, np.int32),
        regressor_vals=np.asarray(vals, np.float32), meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out}: {len(verts)} vertices, {len(faces)} faces, y range {verts[:, 1].min():.3f}..{verts[:, 1].max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
