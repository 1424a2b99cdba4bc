"""Reconstruction on a real photo: converges (finite, no deep penetration) and writes the overlay/files."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("anny")
pytest.importorskip("mediapipe")


def test_real_photo_ball(test_data, tmp_path):
    from interactvlm_ros.cli.main import main

    out = tmp_path / "ball"
    rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball",
               "--contacts", "hands", "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 0 and res["status"] == "ok", res["message"]
    # no intrinsics were given: the default-K fallback is named in result.json, not only in the log
    assert any("no camera intrinsics" in f for f in res["fallbacks"]), res["fallbacks"]
    for f in ("human.ply", "object.ply", "scene.glb", "overlay.png"):
        assert (out / f).stat().st_size > 0
    import cv2
    import trimesh

    # scene.glb: the optical-frame meshes under nodes rotated 180° about x (glTF is y up, its cameras look down -z):
    # upright in a glTF viewer (it was upside down), the .ply files unchanged
    scene = trimesh.load(out / "scene.glb")
    for name in ("human", "object"):
        T, geom = scene.graph[name]
        np.testing.assert_allclose(T, np.diag([1.0, -1.0, -1.0, 1.0]))
        ply = trimesh.load(out / f"{name}.ply", process=False).vertices
        np.testing.assert_allclose(scene.geometry[geom].vertices, ply, atol=1e-6)

    ov = cv2.imread(str(out / "overlay.png"))
    img = cv2.imread(str(test_data / "person_catching_ball.png"))
    assert ov.shape == img.shape and np.abs(ov.astype(int) - img.astype(int)).mean() > 1.0  # meshes drawn
    h = trimesh.load(out / "human.ply", process=False)
    o = trimesh.load(out / "object.ply", process=False)
    assert np.isfinite(h.vertices).all() and np.isfinite(o.vertices).all()
    assert res["metrics"]["penetration_m"] <= 0.01
    # the ball touches the hands: its nearest surface point is within 2 cm of the hand vertices
    from scipy.spatial import cKDTree

    from interactvlm_ros.cli.reconstruct import hand_contact

    hands = h.vertices[hand_contact(len(h.vertices)) > 0.5]
    assert cKDTree(o.vertices).query(hands)[0].min() <= 0.02
    # the person (left of the image) is where the fitted body projects
    K = np.array(res["K"])
    uv = h.vertices[:, :2] / h.vertices[:, 2:] * K[0, 0] + K[:2, 2]
    assert 30 < np.median(uv[:, 0]) < 200


def test_real_photo_operating_a_camera(test_data, tmp_path):
    """The cameraman photo with the model's own contact (not the hands heuristic): converges, no penetration beyond
    1 cm, the fitted camera touches the predicted contact, and the overlay is saved for a person to look at."""
    from interactvlm_ros.cli.main import main

    out = tmp_path / "camera"
    rc = main(["reconstruct", str(test_data / "cameraman_operating_camera.png"), "--object", "camera",
               "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 0 and res["status"] == "ok", res["message"]
    m = res["metrics"]
    assert m["object_human_contact_vertices"] > 0 and m["penetration_m"] <= 0.01 and m["contact_distance_m"] <= 0.02
    import trimesh

    h = trimesh.load(out / "human.ply", process=False)
    o = trimesh.load(out / "object.ply", process=False)
    assert np.isfinite(h.vertices).all() and np.isfinite(o.vertices).all()
    assert (out / "overlay.png").stat().st_size > 0


def test_no_person_photo(test_data, tmp_path):
    from interactvlm_ros.cli.main import main

    out = tmp_path / "cup"
    rc = main(["reconstruct", str(test_data / "coffee_cup_no_person.png"), "--object", "cup",
               "--contacts", "hands", "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 1 and res["status"] == "no_person" and res["object_pose"] is None


def test_hands_heuristic_takes_the_object_library_by_label(test_data, tmp_path, capsys):
    """``--contacts hands`` resolves the label in the object library, as the pipeline does: a category the synthetic
    catalog lacks (racket) is fitted at its metric library size; an unknown label is refused before any work."""
    import trimesh

    from interactvlm_ros.cli.main import main
    from interactvlm_ros.objects import lookup_object

    out = tmp_path / "unknown"
    assert main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "zorblax",
                 "--contacts", "hands", "--out", str(out)]) == 2
    assert "not in the object library" in capsys.readouterr().err and not out.exists()

    out = tmp_path / "racket"
    rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "tennis racket",
               "--contacts", "hands", "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 0 and res["status"] == "ok", res["message"]
    lib = trimesh.load(lookup_object("racket").mesh_path, process=False)
    fit = trimesh.load(out / "object.ply", process=False)
    assert len(fit.vertices) == len(lib.vertices)
    radius = lambda v: float(np.linalg.norm(v - v.mean(0), axis=1).max())  # noqa: E731 - rotation-invariant size
    assert abs(radius(fit.vertices) - radius(lib.vertices)) < 1e-3 * radius(lib.vertices)  # rigid, metric


def test_bad_intrinsics_or_depth_file_is_one_error_line(test_data, tmp_path, capsys):
    """A malformed --K or a missing --depth file: exit 2 with the problem and the fix, no traceback, nothing written."""
    from interactvlm_ros.cli.main import main

    base = ["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--out", str(tmp_path / "o")]
    assert main([*base, "--K", "600,600"]) == 2
    assert "expected four comma-separated numbers fx,fy,cx,cy" in capsys.readouterr().err
    assert main([*base, "--depth", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_object_box_reaches_the_fit_and_a_bad_one_is_one_error_line(test_data, tmp_path, capsys):
    """``--object-box x0,y0,x1,y1`` (a detector's box around the ball in the photo) goes to the fit — result.json names
    it as the object's region; a malformed one is exit 2 with the fix, nothing written."""
    from interactvlm_ros.cli.main import main

    base = ["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--contacts", "hands"]
    assert main([*base, "--object-box", "121,95,180", "--out", str(tmp_path / "bad")]) == 2
    assert "expected four numbers x0,y0,x1,y1" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "box"
    assert main([*base, "--object-box", "121,95,180,153", "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "ok" and res["metrics"]["object_mask"].startswith("box [121, 95, 180, 153]")
    assert "object_loss_box" in res["metrics"] and res["metrics"]["penetration_m"] <= 0.01
