"""How much of the synthetic contact do the generator's own parameters determine? A nearest-neighbour oracle.

For each sample of a split, the training samples of the same interaction and object (``object_id``; the same
category when no training sample shares the object) are ranked by the distance between *generator parameters*
the model never sees — the exact body pose (``body_pose``, axis-angle per bone) and, with ``pose+placement``, the
object's pose and size in a body frame built from the 3D landmarks — and the mean GT contact of the k nearest,
thresholded at 0.5, is scored like a prediction (per-sample F1, as ``interactvlm eval``).

It is not a model: it reads ground truth that no camera gives. It answers "is the target reachable from this
information": a localizer that sees only landmarks, hands and a label scoring about what retrieval by the *exact*
pose scores is using that information about as well as nearest neighbours can (docs/default_model.md, "v10").

    python -m interactvlm_ros.evaluation.knn_baseline --data /work/data/synth_v4 --split test --k 5
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

FEATURES = ("pose", "pose+placement")
PLACEMENT_WEIGHT = 3.0  # metres and rotation-matrix entries against axis-angle radians: a few cm ~ a few degrees


def body_frame(landmarks_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin [3], R [3,3] rows = body x/y/z axes in the camera frame) from mediapipe-order 3D landmarks [33,3]:
    origin = hip centre, y = hips → shoulders, x = left hip → right hip (orthogonalised), z = x × y."""
    lm = np.asarray(landmarks_3d, np.float64)
    hip, shoulder = (lm[23] + lm[24]) / 2, (lm[11] + lm[12]) / 2
    y = shoulder - hip
    y /= np.linalg.norm(y)
    x = lm[24] - lm[23]
    x -= x.dot(y) * y
    x /= np.linalg.norm(x)
    return hip, np.stack([x, y, np.cross(x, y)])


def sample_features(sample: dict, features: str) -> np.ndarray:
    """One sample's feature vector. ``sample``: the npz fields ``body_pose``, and for ``pose+placement`` also
    ``landmarks_3d``, ``object_pose_cam`` (normalised object → camera, scale included), ``object_scale``."""
    if features not in FEATURES:
        raise ValueError(f"features='{features}': use one of {FEATURES}")
    pose = np.asarray(sample["body_pose"], np.float64).ravel()
    if features == "pose":
        return pose
    origin, Rb = body_frame(sample["landmarks_3d"])
    T = np.asarray(sample["object_pose_cam"], np.float64)
    R = Rb @ T[:3, :3]
    R = R / np.linalg.norm(R[:, 0])  # drop the scale folded into the 3x3 block
    t = Rb @ (T[:3, 3] - origin)
    place = np.concatenate([R.ravel(), t, [float(sample["object_scale"])]])
    return np.concatenate([pose, PLACEMENT_WEIGHT * place])


def knn_contact(train_feats: np.ndarray, train_contact: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Mean contact [N] of the k training rows (feats [M,F], contact [M,N]) nearest to query [F] (Euclidean)."""
    d = np.linalg.norm(np.asarray(train_feats) - np.asarray(query)[None], axis=1)
    nn = np.argsort(d, kind="stable")[:max(1, int(k))]
    return np.asarray(train_contact, np.float64)[nn].mean(0)


def _f1(pred: np.ndarray, gt: np.ndarray) -> float:
    tp = float((pred & gt).sum())
    return 2 * tp / (pred.sum() + gt.sum() + 1e-10)


def _load(root: Path, indices, split: str) -> list[dict]:
    from ..training.data import DatasetError, sample_path

    if len(indices) == 0:  # the mean F1 of no sample was NaN (and an empty training split a np.stack traceback)
        raise DatasetError(f"split '{split}' of {root} is empty")

    keys = ("body_pose", "landmarks_3d", "object_pose_cam", "object_scale", "human_contact", "object_contact",
            "interaction", "object_id", "object_category")
    out = []
    for i in indices:
        if not sample_path(root, int(i)).is_file():
            raise DatasetError(f"{sample_path(root, int(i))} listed by split '{split}' is missing")
        with np.load(sample_path(root, int(i))) as d:
            out.append({k: (str(d[k]) if d[k].dtype.kind == "U" else np.asarray(d[k])) for k in keys})
    return out


def evaluate_knn(data_dir: str | Path, split: str, features: str = "pose", k: int = 5,
                 train_split: str = "train") -> dict:
    """-> {"human_f1", "object_f1", "per_interaction": {interaction: human F1}, "n", ...} for ``split``."""
    from ..training.data import read_meta, split_indices

    root = Path(data_dir)
    meta = read_meta(root)
    train = _load(root, split_indices(root, meta, train_split), train_split)
    test = _load(root, split_indices(root, meta, split), split)
    feats = np.stack([sample_features(s, features) for s in train])
    groups: dict[tuple, list[int]] = defaultdict(list)
    by_cat: dict[tuple, list[int]] = defaultdict(list)
    for j, s in enumerate(train):
        groups[(s["interaction"], s["object_id"])].append(j)
        by_cat[(s["interaction"], s["object_category"])].append(j)
    human, obj, per = [], [], defaultdict(list)
    for s in test:
        idx = groups.get((s["interaction"], s["object_id"]))
        same_object = idx is not None
        idx = idx or by_cat.get((s["interaction"], s["object_category"]))
        if not idx:  # an unseen category: nothing to retrieve
            f = 0.0
        else:
            q = sample_features(s, features)
            hc = knn_contact(feats[idx], np.stack([train[j]["human_contact"] for j in idx]), q, k)
            f = _f1(hc >= 0.5, s["human_contact"] > 0)
            if same_object:  # object contact is per vertex of that object's mesh
                oc = knn_contact(feats[idx], np.stack([train[j]["object_contact"] for j in idx]), q, k)
                obj.append(_f1(oc >= 0.5, s["object_contact"] > 0))
        human.append(f)
        per[s["interaction"]].append(f)
    return {"split": split, "features": features, "k": int(k), "n": len(test), "human_f1": float(np.mean(human)),
            "object_f1": float(np.mean(obj)) if obj else None, "object_n": len(obj),
            "per_interaction": {i: float(np.mean(v)) for i, v in sorted(per.items())}}


def main(argv: list[str] | None = None) -> int:
    from ..training.data import DatasetError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="synthetic dataset folder (interactvlm synth)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--features", choices=FEATURES, nargs="+", default=list(FEATURES))
    ap.add_argument("--k", type=int, nargs="+", default=[1, 5])
    a = ap.parse_args(argv)
    for n, (feats, k) in enumerate((f, k) for f in a.features for k in a.k):
        try:
            r = evaluate_knn(a.data, a.split, feats, k)
        except DatasetError as exc:  # no dataset / unknown or empty split / missing sample: one line, exit 2
            print(f"knn_baseline: {exc}")
            return 2
        if n == 0:
            print(f"{'features':16s} {'k':>2s} {'human F1':>9s} {'object F1':>9s}  per interaction (human F1)")
        obj = "-" if r["object_f1"] is None else f"{r['object_f1']:.3f}"
        print(f"{feats:16s} {k:2d} {r['human_f1']:9.3f} {obj:>9s}  " + json.dumps(
            {i: round(v, 2) for i, v in r["per_interaction"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
