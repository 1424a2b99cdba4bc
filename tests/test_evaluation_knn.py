"""The nearest-neighbour oracle (evaluation/knn_baseline.py): retrieval by generator parameters, scored like eval."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from interactvlm_ros.evaluation.knn_baseline import body_frame, evaluate_knn, knn_contact, sample_features


def _landmarks(R=np.eye(3), t=np.zeros(3)):
    lm = np.zeros((33, 3))
    lm[23], lm[24] = [-0.1, 0, 0], [0.1, 0, 0]  # hips
    lm[11], lm[12] = [-0.2, 0.5, 0], [0.2, 0.5, 0]  # shoulders
    return lm @ R.T + t


def test_body_frame_follows_the_body_and_placement_is_invariant_to_the_camera():
    o, Rb = body_frame(_landmarks())
    assert np.allclose(o, 0) and np.allclose(Rb, np.eye(3))
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(104, 3))
    T = np.eye(4)
    T[:3, :3] = 0.3 * Rotation.from_rotvec([0.2, 0.4, 0.1]).as_matrix()  # scale folded into the 3x3 block
    T[:3, 3] = [0.1, 0.3, 0.2]
    s = {"body_pose": pose, "landmarks_3d": _landmarks(), "object_pose_cam": T, "object_scale": 0.3}
    # the same scene seen from another camera: landmarks and object pose move together
    C = np.eye(4)
    C[:3, :3], C[:3, 3] = Rotation.from_rotvec([0.5, -1.0, 0.3]).as_matrix(), [1.0, -2.0, 3.0]
    s2 = dict(s, landmarks_3d=_landmarks(C[:3, :3], C[:3, 3]), object_pose_cam=C @ T)
    assert np.allclose(sample_features(s, "pose+placement"), sample_features(s2, "pose+placement"), atol=1e-9)
    assert np.array_equal(sample_features(s, "pose"), pose.ravel())
    with pytest.raises(ValueError, match="features="):
        sample_features(s, "image")


def test_knn_contact_averages_the_k_nearest():
    feats = np.array([[0.0], [1.0], [5.0]])
    contact = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    assert np.array_equal(knn_contact(feats, contact, np.array([0.2]), 1), [1, 0])
    assert np.allclose(knn_contact(feats, contact, np.array([0.2]), 2), [1, 0.5])
    assert np.allclose(knn_contact(feats, contact, np.array([4.0]), 1), [0, 1])


def _write(root, i, pose, inter, obj, hc, oc):
    np.savez(root / "samples" / f"{i:06d}.npz", body_pose=pose, landmarks_3d=_landmarks(), object_pose_cam=np.eye(4),
             object_scale=np.float32(0.3), human_contact=np.asarray(hc, np.float32),
             object_contact=np.asarray(oc, np.float32), interaction=np.array(inter), object_id=np.array(obj),
             object_category=np.array(obj))


def test_evaluate_knn_retrieves_within_the_same_interaction_and_object(tmp_path):
    (tmp_path / "samples").mkdir()
    p0, p1 = np.zeros((104, 3)), np.ones((104, 3))
    _write(tmp_path, 1, p0, "kick", "ball", [1, 1, 0, 0], [1, 0, 0])
    _write(tmp_path, 2, p1, "kick", "ball", [0, 0, 1, 1], [0, 0, 1])
    _write(tmp_path, 3, p0, "sit", "chair", [0, 0, 0, 1], [0, 1])  # nearest in pose, but another interaction
    _write(tmp_path, 10, p0 + 0.01, "kick", "ball", [1, 1, 0, 0], [1, 0, 0])  # test: retrieves sample 1
    _write(tmp_path, 11, p1 - 0.01, "kick", "ball", [1, 1, 0, 0], [1, 0, 0])  # test: retrieves sample 2 (wrong)
    _write(tmp_path, 12, p0, "wear_head", "hat", [1, 0, 0, 0], [1])  # no training sample: scored 0
    (tmp_path / "meta.json").write_text(json.dumps({"splits": {"indices": {"train": [1, 2, 3], "test": [10, 11, 12]}}}))
    r = evaluate_knn(tmp_path, "test", "pose", k=1)
    assert r["n"] == 3 and r["object_n"] == 2
    assert r["per_interaction"] == {"kick": pytest.approx(0.5), "wear_head": 0.0}
    assert r["human_f1"] == pytest.approx(1 / 3)
    assert r["object_f1"] == pytest.approx(0.5)


def test_an_empty_unknown_or_incomplete_split_is_one_line_and_exit_2(tmp_path, capsys):
    """An empty split (a small `interactvlm synth --n` has an empty val/test) scored NaN with a numpy warning, an empty
    training split and an unknown split were tracebacks; now one line naming the split, exit 2."""
    from interactvlm_ros.evaluation.knn_baseline import main
    from interactvlm_ros.training.data import DatasetError

    (tmp_path / "samples").mkdir()
    _write(tmp_path, 1, np.zeros((104, 3)), "kick", "ball", [1, 1, 0, 0], [1, 0, 0])
    splits = {"train": [1], "val": [1, 2], "test": [], "none": []}  # sample 2 is not on disk
    (tmp_path / "meta.json").write_text(json.dumps({"splits": {"indices": splits}}))
    with pytest.raises(DatasetError, match="split 'test' of .* is empty"):
        evaluate_knn(tmp_path, "test")
    with pytest.raises(DatasetError, match="split 'none' of .* is empty"):  # an empty training split
        evaluate_knn(tmp_path, "train", train_split="none")
    for split, word in (("test", "split 'test' of"), ("nope", "split 'nope' not in"), ("val", "000002.npz listed by")):
        rc = main(["--data", str(tmp_path), "--split", split])
        out = capsys.readouterr().out.strip().splitlines()
        assert rc == 2 and len(out) == 1 and out[0].startswith("knn_baseline: ") and word in out[0], (split, out)
