"""Anny mesh ↔ mediapipe landmarks: a fixed sparse vertex regressor (33 Pose + 2×21 Hands).

Each mediapipe landmark is a convex combination of a few Anny template vertices (like SMPL's joint
regressor), so it is one sparse product on *any* posed Anny mesh of the default topology
(13718 vertices) — the generator projects these to make ``landmarks_2d/_3d`` and
``hand_landmarks_2d``, and the reconstruction fits the body to detected landmarks with the same matrix.

How the weights were made (``build_regressor``, run once on Anny's rest pose, shipped in
``perception/data/anny_landmarks.npz``):

- **joints** (shoulders, elbows, wrists, hips, knees, ankles, all hand joints): the Anny bone head
  (shoulder = ``upperarm01``, elbow = ``lowerarm01``, wrist = ``wrist``, hip = ``upperleg01``,
  knee = ``lowerleg01``, ankle = ``foot``; thumb CMC/MCP/IP = ``finger1-1/2/3``; index/middle/ring/pinky
  MCP/PIP/DIP = ``finger{2..5}-1/2/3``) written as non-negative weights (sum 1) over the 16 nearest
  surface vertices (48/128/320 when the joint is deep, e.g. hips; scipy ``nnls`` with the sum constraint
  as a heavily weighted extra row); rest-pose residual < 1 mm. Pose's hand points follow BlazePose: pinky = pinky MCP, index = index MCP,
  thumb = thumb MCP;
- **finger tips**: mean of the 3 vertices of the last phalanx farthest along the finger;
- **face** (nose, eyes inner/centre/outer, ears, mouth corners): mean of the 1–3 surface vertices
  selected geometrically around the eye bones (front-most nose vertex on the mid-line, cornea,
  lateral head extremes at eye height, lip corners);
- **feet**: heel = rear-most sole vertices, foot index = front-most toe vertices.

Left/right are the *person's* left/right (mediapipe's convention for Pose; for Hands we store index 0 =
left hand, 1 = right hand).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

POSE_LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
HAND_LANDMARK_NAMES = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip", "index_mcp", "index_pip", "index_dip",
    "index_tip", "middle_mcp", "middle_pip", "middle_dip", "middle_tip", "ring_mcp", "ring_pip", "ring_dip",
    "ring_tip", "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
NUM_POSE = len(POSE_LANDMARK_NAMES)  # 33
NUM_HAND = len(HAND_LANDMARK_NAMES)  # 21
DATA_FILE = Path(__file__).resolve().parent / "data" / "anny_landmarks.npz"

# joint landmarks → Anny bone whose head they are ("{s}" = L/R)
_POSE_JOINT_BONES = {
    "shoulder": "upperarm01.{s}", "elbow": "lowerarm01.{s}", "wrist": "wrist.{s}", "pinky": "finger5-1.{s}",
    "index": "finger2-1.{s}", "thumb": "finger1-2.{s}", "hip": "upperleg01.{s}", "knee": "lowerleg01.{s}",
    "ankle": "foot.{s}",
}
_HAND_JOINT_BONES = {
    "wrist": "wrist.{s}", "thumb_cmc": "finger1-1.{s}", "thumb_mcp": "finger1-2.{s}", "thumb_ip": "finger1-3.{s}",
    **{f"{f}_{j}": f"finger{n}-{k}.{{s}}" for f, n in (("index", 2), ("middle", 3), ("ring", 4), ("pinky", 5))
       for j, k in (("mcp", 1), ("pip", 2), ("dip", 3))},
}
_TIP_BONES = {"thumb_tip": ("finger1-2", "finger1-3"), "index_tip": ("finger2-2", "finger2-3"),
              "middle_tip": ("finger3-2", "finger3-3"), "ring_tip": ("finger4-2", "finger4-3"),
              "pinky_tip": ("finger5-2", "finger5-3")}


@dataclass
class LandmarkRegressor:
    """Sparse vertex regressor. ``indices``/``weights`` [K, k] (rows: 33 Pose, then 21 left-hand, 21 right-hand)."""

    indices: np.ndarray
    weights: np.ndarray
    num_vertices: int

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LandmarkRegressor":
        path = Path(path) if path else DATA_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"landmark regressor {path} is missing; regenerate it with "
                "`python -m interactvlm_ros.perception.landmarks` (needs anny)"
            )
        d = np.load(path)
        return cls(d["indices"].astype(np.int64), d["weights"].astype(np.float32), int(d["num_vertices"]))

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else DATA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, indices=self.indices.astype(np.int32), weights=self.weights.astype(np.float32),
                            num_vertices=np.int64(self.num_vertices),
                            names=np.array(list(POSE_LANDMARK_NAMES) + [f"left_{n}" for n in HAND_LANDMARK_NAMES]
                                           + [f"right_{n}" for n in HAND_LANDMARK_NAMES]))
        return path

    def _check(self, vertices: np.ndarray) -> np.ndarray:
        v = np.asarray(vertices)
        if v.shape[-2:] != (self.num_vertices, 3):
            raise ValueError(
                f"vertices have shape {v.shape}; the landmark regressor is defined on the Anny default topology "
                f"[..., {self.num_vertices}, 3]"
            )
        return v

    def all(self, vertices: np.ndarray) -> np.ndarray:
        """vertices [..., N, 3] → [..., 75, 3] (33 Pose, 21 left hand, 21 right hand)."""
        v = self._check(vertices)
        return (v[..., self.indices, :] * self.weights[..., None]).sum(-2).astype(np.float32)

    def pose(self, vertices: np.ndarray) -> np.ndarray:
        """[..., N, 3] → [..., 33, 3] mediapipe Pose landmarks."""
        return self.all(vertices)[..., :NUM_POSE, :]

    def hands(self, vertices: np.ndarray) -> np.ndarray:
        """[..., N, 3] → [..., 2, 21, 3] mediapipe Hands landmarks (0 = left hand, 1 = right)."""
        a = self.all(vertices)[..., NUM_POSE:, :]
        return a.reshape(a.shape[:-2] + (2, NUM_HAND, 3))

    def matrix(self):
        """scipy.sparse CSR [75, N] (landmarks = M @ vertices)."""
        from scipy.sparse import csr_matrix

        K, k = self.indices.shape
        rows = np.repeat(np.arange(K), k)
        return csr_matrix((self.weights.ravel(), (rows, self.indices.ravel())), shape=(K, self.num_vertices))


_REGRESSOR: LandmarkRegressor | None = None


def get_regressor() -> LandmarkRegressor:
    """The packaged regressor (loaded once)."""
    global _REGRESSOR
    if _REGRESSOR is None:
        _REGRESSOR = LandmarkRegressor.load()
    return _REGRESSOR


# ------------------------------------------------------------------------------------------ building
def _nnls_point(verts: np.ndarray, p: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray, float]:
    """Non-negative weights (sum 1) over the k vertices nearest to p that reproduce p."""
    from scipy.optimize import nnls

    d = np.linalg.norm(verts - p, axis=1)
    idx = np.argsort(d)[:k]
    A = np.vstack([verts[idx].T, 100.0 * np.ones((1, k))])
    b = np.concatenate([p, [100.0]])
    w, _ = nnls(A, b)
    w = w / w.sum()
    res = float(np.linalg.norm(verts[idx].T @ w - p))
    return idx, w, res


def build_regressor(poser=None, k: int = 16) -> tuple[LandmarkRegressor, dict]:
    """Build the regressor from Anny's rest pose (needs ``anny``; ``poser`` = ``bodies.anny_model.AnnyPoser``,
    default the one of ``bodies.get_body_model("anny")``). Returns it and the per-landmark residuals (m)."""
    if poser is None:
        from interactvlm_ros.bodies import get_body_model

        poser = get_body_model("anny").poser
    v, j = poser.pose_world({}, offset=False)  # rest pose, body frame
    V, joints = v.astype(np.float64), j.astype(np.float64)
    dom = poser.dominant_bone
    names = poser.bone_labels

    def bone_id(name: str) -> int:
        if name not in poser.index:
            raise KeyError(f"Anny has no bone {name!r}")
        return poser.index[name]

    def bone_verts(prefix: str) -> np.ndarray:
        ids = [i for i, n in enumerate(names) if n.startswith(prefix)]
        return np.nonzero(np.isin(dom, ids))[0]

    rows: list[tuple[np.ndarray, np.ndarray]] = []
    residual: dict[str, float] = {}

    def add_joint(name: str, bone: str) -> None:
        for kk in (k, 48, 128, 320):  # deep joints (hips) need a wider ring of vertices around them
            idx, w, res = _nnls_point(V, joints[bone_id(bone)], kk)
            if res < 1e-3:
                break
        residual[name] = res
        rows.append((idx, w))

    def add_mean(name: str, idx: np.ndarray) -> None:
        idx = np.asarray(idx, np.int64)
        residual[name] = 0.0
        rows.append((idx, np.full(len(idx), 1.0 / len(idx))))

    head = np.nonzero(np.isin(dom, [bone_id(n) for n in ("head", "neck03", "eye.L", "eye.R")]))[0]
    eyeL, eyeR = joints[bone_id("eye.L")], joints[bone_id("eye.R")]
    eye_y = 0.5 * (eyeL[1] + eyeR[1])

    def front_most(cands: np.ndarray, n: int = 1) -> np.ndarray:
        return cands[np.argsort(-V[cands, 2])[:n]]

    def nearest(cands: np.ndarray, p: np.ndarray, n: int = 2) -> np.ndarray:
        return cands[np.argsort(np.linalg.norm(V[cands] - p, axis=1))[:n]]

    mid = head[(np.abs(V[head, 0]) < 0.006) & (V[head, 1] < eye_y) & (V[head, 1] > eye_y - 0.07)]
    nose = front_most(mid, 1)
    nose_p = V[nose[0]]
    eye_surface = {}
    for s, e in (("L", eyeL), ("R", eyeR)):
        ev = bone_verts(f"eye.{s}")
        eye_surface[s] = front_most(ev, 3) if len(ev) else nearest(head, e + [0, 0, 0.012], 3)
    # mediapipe "inner" is toward the nose; the person's left eye is at +x
    sign = {"L": 1.0, "R": -1.0}
    face_rows = {}
    for s, side in (("L", "left"), ("R", "right")):
        e = V[eye_surface[s]].mean(0)
        face_rows[f"{side}_eye"] = eye_surface[s]
        face_rows[f"{side}_eye_inner"] = nearest(head, e + [-sign[s] * 0.016, 0.0, -0.004], 2)
        face_rows[f"{side}_eye_outer"] = nearest(head, e + [sign[s] * 0.018, 0.0, -0.008], 2)
        band = head[(np.abs(V[head, 1] - (eye_y - 0.015)) < 0.015) & (np.abs(V[head, 2] - (eyeL[2] - 0.06)) < 0.03)]
        side_band = band[sign[s] * V[band, 0] > 0]
        face_rows[f"{side}_ear"] = side_band[np.argsort(-sign[s] * V[side_band, 0])[:3]]
        lip = head[(np.abs(V[head, 0] - sign[s] * 0.024) < 0.006) & (V[head, 1] < nose_p[1] - 0.02)
                   & (V[head, 1] > nose_p[1] - 0.055)]
        face_rows[f"mouth_{side}"] = front_most(lip, 2)
    for s, side in (("L", "left"), ("R", "right")):
        fv = np.concatenate([bone_verts(f"foot.{s}"), bone_verts("toe") [sign[s] * V[bone_verts("toe"), 0] > 0]])
        low = fv[V[fv, 1] < V[fv, 1].min() + 0.03]
        face_rows[f"{side}_heel"] = low[np.argsort(V[low, 2])[:3]]
        face_rows[f"{side}_foot_index"] = fv[np.argsort(-V[fv, 2])[:3]]

    for name in POSE_LANDMARK_NAMES:
        if name == "nose":
            add_mean(name, nose)
            continue
        side, _, part = name.partition("_")
        s = {"left": "L", "right": "R"}.get(side)
        if s and part in _POSE_JOINT_BONES:
            add_joint(name, _POSE_JOINT_BONES[part].format(s=s))
        else:
            add_mean(name, face_rows[name])
    for s in ("L", "R"):
        for name in HAND_LANDMARK_NAMES:
            if name in _HAND_JOINT_BONES:
                add_joint(f"{s}_{name}", _HAND_JOINT_BONES[name].format(s=s))
            else:
                prev, last = _TIP_BONES[name]
                tv = bone_verts(f"{last}.{s}")
                a, c = joints[bone_id(f"{prev}.{s}")], joints[bone_id(f"{last}.{s}")]
                axis = (c - a) / np.linalg.norm(c - a)
                add_mean(f"{s}_{name}", tv[np.argsort(-(V[tv] - c) @ axis)[:3]])
    kmax = max(len(i) for i, _ in rows)
    indices = np.zeros((len(rows), kmax), np.int64)
    weights = np.zeros((len(rows), kmax), np.float32)
    for r, (i, w) in enumerate(rows):
        indices[r, : len(i)] = i
        weights[r, : len(i)] = w
    return LandmarkRegressor(indices, weights, poser.num_vertices), residual


if __name__ == "__main__":  # regenerate the packaged file
    reg, res = build_regressor()
    print("saved", reg.save(), "max joint residual (mm): %.3f" % (1e3 * max(res.values())))
