"""``interactvlm estimate`` / ``interactvlm reconstruct`` with bad input: one error line naming the problem and the fix,
exit 2, no traceback; failing frames still write an honest status; a re-run leaves no stale meshes; sizes of meshes
not in metres are named fallbacks, never silently trusted."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interactvlm_ros.cli.main import main


def _err_line(capsys) -> str:
    """The last error line; errors go to stderr (both commands), never a traceback."""
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    lines = [x for x in cap.err.splitlines() if "error" in x.lower() or x.startswith("interactvlm estimate:")]
    assert lines, cap
    return lines[-1]


# ------------------------------------------------------------------------------------------------ estimate
@pytest.mark.parametrize("extra, word", [
    (["--model", "/nonexistent/model"], "neither a registered model"),
    (["--device", "cuda:99"], "cuda:99"),
    (["--model", "JUNK"], "model.pt"),
])
def test_estimate_unusable_model_backend_or_device_is_one_line(extra, word, test_data, tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model.pt").write_bytes(b"not a checkpoint" * 64)
    extra = [str(junk) if a == "JUNK" else a for a in extra]
    rc = main(["estimate", str(test_data / "person_catching_ball.png"), "--object", "ball", *extra,
               "--out", str(tmp_path / "o")])
    line = _err_line(capsys)
    assert rc == 2 and line.startswith("interactvlm estimate:") and word in line, line
    assert not (tmp_path / "o" / "contacts.json").exists()


def test_estimate_unknown_backend_is_an_argparse_error(test_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["estimate", str(test_data / "person_catching_ball.png"), "--object", "ball", "--backend", "bogus",
              "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["estimate", "reconstruct"])
def test_out_that_cannot_be_written_is_refused_before_any_work(cmd, test_data, tmp_path, capsys):
    """An --out that is a file, or under a folder that cannot be created: exit 2 naming --out — checked before the
    model loads (a model that does not exist is not even reached)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        rc = main([cmd, str(test_data / "person_catching_ball.png"), "--object", "ball", "--model", "/nonexistent",
                   "--out", str(out)])
        line = _err_line(capsys)
        assert rc == 2 and f"cannot write --out {out}" in line, line
    assert afile.read_text() == "x"


def test_estimate_label_fields_and_stale_outputs(test_data, tmp_path):
    """``--object bottle``: a library object (its own mesh) the model does not know — library_label_known is the
    library's answer, label_known the model's. Re-running into the same --out on a photo without a person removes the
    first run's meshes and keeps the label fields."""
    out = tmp_path / "o"
    assert main(["estimate", str(test_data / "person_catching_ball.png"), "--object", "bottle", "--out", str(out)]) == 0
    info = json.loads((out / "contacts.json").read_text())
    assert info["status"] == "ok" and info["object_source"] == "library:bottle"
    # the library has its own bottle mesh; the model judges the label itself (v9: unlike every trained category)
    assert info["library_label_known"] is True and info["label_known"] is info["model_label"]["known"], info
    assert (out / "human_contact.ply").is_file() and (out / "object_contact.ply").is_file()
    assert main(["estimate", str(test_data / "coffee_cup_no_person.png"), "--object", "bottle", "--out", str(out)]) == 0
    info = json.loads((out / "contacts.json").read_text())
    assert info["status"] == "no_person"
    assert info["object_source"] == "library:bottle" and info["library_label_known"] is True, info
    assert not (out / "human_contact.ply").exists() and not (out / "object_contact.ply").exists()
    assert (out / "contacts.npz").is_file() and (out / "overlay.png").is_file()


def test_estimate_truncated_jpeg_or_folder_is_one_line(test_data, tmp_path, capsys):
    """A JPEG cut short (interrupted download/copy): OpenCV decodes it without an error, the missing rows grey, and the
    contact came out 'ok' for a partial image; a folder was reported as 'not found'. Both: one line, exit 2, before the
    model loads. A whole JPEG (also a progressive one) is not refused: it reaches the model (here one that cannot
    load)."""
    from PIL import Image

    photo = Image.open(test_data / "person_catching_ball.png").convert("RGB")
    photo.save(tmp_path / "whole.jpg", quality=90)
    photo.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    prog = (tmp_path / "progressive.jpg").read_bytes()
    (tmp_path / "cut_progressive.jpg").write_bytes(prog[:len(prog) * 2 // 3])
    (tmp_path / "photos.jpg").mkdir()
    for name, word in (("cut.jpg", "truncated JPEG"), ("cut_progressive.jpg", "truncated JPEG"),
                       ("photos.jpg", "is a folder"), ("whole.jpg", "neither a registered model"),
                       ("progressive.jpg", "neither a registered model")):
        rc = main(["estimate", str(tmp_path / name), "--object", "ball", "--model", "/nonexistent/model",
                   "--out", str(tmp_path / "o")])
        line = _err_line(capsys)
        assert rc == 2 and line.startswith("interactvlm estimate:") and word in line, (name, line)
        assert not (tmp_path / "o" / "contacts.json").exists()


# --------------------------------------------------------------------------------------------- reconstruct
def test_reconstruct_reads_images_like_estimate(test_data, tmp_path, capsys):
    """reconstruct reads IMAGE with estimate's reader (cli.read_image_rgb): a truncated JPEG or a folder is one line,
    exit 2, before any work (it used to fit a partial image)."""
    from PIL import Image

    Image.open(test_data / "person_catching_ball.png").convert("RGB").save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    (tmp_path / "photos.jpg").mkdir()
    for name, word in (("cut.jpg", "truncated JPEG"), ("photos.jpg", "is a folder"), ("none.jpg", "not found")):
        rc = main(["reconstruct", str(tmp_path / name), "--object", "ball", "--out", str(tmp_path / "o")])
        line = _err_line(capsys)
        assert rc == 2 and word in line, (name, line)
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("size", ["-0.2", "0", "nan", "inf", "big"])
def test_reconstruct_object_size_must_be_positive(size, test_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", f"--object-size={size}",
              "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--object-size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_reconstruct_non_numeric_depth_npy_is_one_line(test_data, tmp_path, capsys):
    import pickle

    bad = {"garbage": b"garbage", "object": None, "strings": None}
    (tmp_path / "garbage.npy").write_bytes(bad["garbage"])
    np.save(tmp_path / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    (tmp_path / "pickled.npy").write_bytes(pickle.dumps([1, 2, 3]))
    for name in ("garbage", "object", "strings", "pickled"):
        rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--contacts", "hands",
                   "--depth", str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / "o")])
        line = _err_line(capsys)
        assert rc == 2 and "not a numeric .npy depth array" in line, (name, line)
    assert not (tmp_path / "o").exists()


def test_reconstruct_named_model_that_cannot_load_is_an_error(test_data, tmp_path, capsys):
    """A --model the user named is never silently replaced by the hands heuristic."""
    out = tmp_path / "o"
    rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball",
               "--model", str(tmp_path / "nomodel"), "--out", str(out)])
    line = _err_line(capsys)
    assert rc == 2 and "--model" in line and "nomodel" in line, line
    assert not (out / "result.json").exists()


@pytest.mark.parametrize("photo, extra, status", [
    ("coffee_cup_no_person.png", [], "no_person"),
    ("person_catching_ball.png", ["--K", "nan,500,320,240"], "bad_input"),
])
def test_reconstruct_failed_contact_estimation_writes_result_json(photo, extra, status, test_data, tmp_path):
    """Contact estimation not ok: result.json with that status and message (no meshes), exit 1 — and the meshes of an
    earlier run in the same --out are removed."""
    out = tmp_path / "o"
    out.mkdir()
    for stale in ("human.ply", "object.ply", "scene.glb"):
        (out / stale).write_text("from an earlier run")
    rc = main(["reconstruct", str(test_data / photo), "--object", "cup", *extra, "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 1 and res["status"] == status and res["message"] and res["object_pose"] is None, res
    assert (out / "overlay.png").is_file()
    assert not any((out / f).exists() for f in ("human.ply", "object.ply", "scene.glb"))


def _radius(v) -> float:  # rotation-invariant size
    v = np.asarray(v, np.float64)
    return float(np.linalg.norm(v - v.mean(0), axis=1).max())


def _mm_bottle(tmp_path):
    """The library bottle (metric) written in millimetres; returns (path, vertices in metres)."""
    import trimesh

    from interactvlm_ros.objects import load_mesh, lookup_object

    m = load_mesh(lookup_object("bottle").mesh_path)
    path = tmp_path / "bottle_mm.ply"
    trimesh.Trimesh(np.asarray(m.vertices, np.float64) * 1000.0, m.faces, process=False).export(path)
    return path, np.asarray(m.vertices, np.float64)


def test_reconstruct_hands_mesh_in_millimetres_is_sized_like_the_pipeline(test_data, tmp_path):
    """``--contacts hands --object-mesh`` of a bottle in millimetres: not a 160 m object — the label's catalog size,
    as the pipeline path sizes it, and the fallback is named."""
    pytest.importorskip("anny")
    import trimesh

    from interactvlm_ros.recon import object_size_for

    mesh, metric = _mm_bottle(tmp_path)
    expected, why = object_size_for("bottle", str(mesh))
    assert why.startswith("catalog size of 'bottle'")
    out = tmp_path / "o"
    rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "bottle", "--contacts", "hands",
               "--object-mesh", str(mesh), "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert any(f.startswith("object size by label") and "bottle_mm.ply" in f for f in res["fallbacks"]), res["fallbacks"]
    assert rc == (0 if res["status"] == "ok" else 1)
    if (out / "object.ply").exists():  # the file's shape at the catalog size (rigidly placed), not 1000x it
        v = trimesh.load(out / "object.ply", process=False).vertices
        scale = expected / float(np.ptp(metric, 0).max())
        assert _radius(v) == pytest.approx(_radius(metric) * scale, rel=1e-3)
        assert res["object_scale"] == pytest.approx(scale / 1000.0, rel=1e-6)  # mm file → the catalog size
        if res["status"] == "ok":  # object_pose places the rescaled, centred mesh; the file itself needs
            # object_pose_mesh_file (a planner loading bottle_mm.ply and applying object_pose put it metres away)
            moved = trimesh.load(mesh, process=False).apply_transform(np.array(res["object_pose_mesh_file"])).vertices
            assert np.abs(moved - v).max() < 1e-6


def test_reconstruct_mesh_not_in_metres_never_ok_behind_the_camera(shared_dir, test_data, tmp_path):
    """The review's case: the cameraman photo with genesis' camera.glb (extent 4.88, not metres; no catalog size for
    'camera' to check it against). The fitted object ended behind the camera with status ok; now such a fit is
    'diverged' — an ok result always has the object in front of the camera."""
    pytest.importorskip("anny")
    import trimesh

    mesh = shared_dir / "data" / "objects" / "camera.glb"
    if not mesh.is_file():
        pytest.skip(f"{mesh} not available")
    out = tmp_path / "o"
    rc = main(["reconstruct", str(test_data / "cameraman_operating_camera.png"), "--object", "camera",
               "--object-mesh", str(mesh), "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == (0 if res["status"] == "ok" else 1)
    if res["status"] == "ok":
        assert float(trimesh.load(out / "object.ply", process=False).vertices[:, 2].mean()) > 0
    else:
        assert res["object_pose"] is None and not (out / "object.ply").exists(), res["message"]


def test_reconstruct_distortion_with_unusable_K_or_bad_depth_units_is_one_line(test_data, tmp_path, capsys):
    """``--D`` with a K that cannot be undistorted (fx = 0) raised a cv2.error traceback; an 8-bit depth image was read
    as millimetres (0..0.255 m); ``--depth-scale`` 0 or negative made every pixel invalid ("all zero/NaN?") after the
    whole contact estimation. Each is one error line, exit 2, before any work and nothing written."""
    import cv2

    out = tmp_path / "o"
    base = ["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--contacts", "hands",
            "--out", str(out)]
    for K in ("0,0,320,240", "-500,500,320,240", "500,500,5000,240"):
        assert main([*base, f"--K={K}", "--D=0.1,0,0,0"]) == 2
        line = _err_line(capsys)
        assert f"--K {K}" in line and "--D" in line, line
    cv2.imwrite(str(tmp_path / "d8.png"), np.full((480, 640), 200, np.uint8))
    assert main([*base, "--depth", str(tmp_path / "d8.png")]) == 2
    line = _err_line(capsys)
    assert "8-bit" in line and "--depth-scale" in line, line
    for scale in ("0", "-0.001", "nan"):
        with pytest.raises(SystemExit) as e:
            main([*base, "--depth", str(tmp_path / "d8.png"), f"--depth-scale={scale}"])
        assert e.value.code == 2 and "--depth-scale" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("box, word", [("10,10,10,50", "x1 <= x0"), ("180,153,121,95", "x1 <= x0"),
                                       ("nan,95,180,153", "four finite numbers")])
def test_reconstruct_empty_or_reversed_object_box_is_one_line(box, word, test_data, tmp_path, capsys):
    """A zero-area, reversed or non-finite --object-box ran the whole contact estimation and ended as a bad_input
    result.json; like a box of three numbers it is now one error line, exit 2, before any work."""
    out = tmp_path / "o"
    assert main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--contacts", "hands",
                 f"--object-box={box}", "--out", str(out)]) == 2
    line = _err_line(capsys)
    assert f"--object-box '{box}'" in line and word in line, line
    assert not out.exists()


class _RecordingEstimator:
    """Stands in for ContactEstimator: records what ``estimate`` was given and answers no_person (no fit runs)."""
    calls: list = []

    def __init__(self, *a, **kw):
        pass

    def estimate(self, image, label, **kw):
        from interactvlm_ros.pipeline import ContactResult

        _RecordingEstimator.calls.append(kw)
        return ContactResult(status="no_person", message="stub", object_label=label, cues="pose+hands+label+box")

    def all_fallbacks(self):
        return []


@pytest.mark.parametrize("kind", ["box", "mask01", "mask255"])
def test_reconstruct_gives_the_box_or_mask_to_the_contact_model(kind, test_data, tmp_path, monkeypatch):
    """``--object-box`` / ``--object-mask`` reached only the fit, never the contact model, which reads them as input
    cues (the default model; on the ball photo the box moves the human contact of 862 → 1130 vertices). A mask saved as
    0/1 (a segmenter's label image) was read as empty (> 127): nonzero = object, as the node's object_mask."""
    import cv2

    import interactvlm_ros.pipeline as pipeline

    monkeypatch.setattr(pipeline, "ContactEstimator", _RecordingEstimator)
    _RecordingEstimator.calls = []
    extra = ["--object-box", "121,95,180,153"]
    if kind != "box":
        m = np.zeros((480, 640), np.uint8)
        m[95:153, 121:180] = 1 if kind == "mask01" else 255
        cv2.imwrite(str(tmp_path / "mask.png"), m)
        extra = ["--object-mask", str(tmp_path / "mask.png")]
    out = tmp_path / "o"
    assert main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", *extra,
                 "--out", str(out)]) == 1
    (kw,) = _RecordingEstimator.calls
    if kind == "box":
        assert kw["object_box"] == [121.0, 95.0, 180.0, 153.0] and kw["object_mask"] is None
    else:
        assert kw["object_box"] is None and kw["object_mask"].dtype == bool and kw["object_mask"].sum() == 58 * 59
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "no_person" and res["contact_cues"] == "pose+hands+label+box"


def test_reconstruct_unreadable_object_mesh_writes_an_honest_result(test_data, tmp_path):
    """``--contacts hands --object-mesh`` of a file trimesh cannot read (an image): a traceback, and the earlier run's
    result.json (status ok) and meshes stayed in --out. Now result.json says bad_input naming the file, exit 1, and the
    earlier run's files are gone."""
    pytest.importorskip("anny")
    pytest.importorskip("mediapipe")
    out = tmp_path / "o"
    out.mkdir()
    for stale in ("human.ply", "object.ply", "scene.glb"):
        (out / stale).write_text("from an earlier run")
    (out / "result.json").write_text('{"status": "ok"}')
    rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", "--contacts", "hands",
               "--object-mesh", str(test_data / "coffee_cup_no_person.png"), "--out", str(out)])

    def strict(c):
        raise ValueError(c)

    res = json.loads((out / "result.json").read_text(), parse_constant=strict)
    assert rc == 1 and res["status"] == "bad_input" and "coffee_cup_no_person.png" in res["message"], res
    assert sorted(p.name for p in out.iterdir()) == ["overlay.png", "result.json"]


def test_reconstruct_depth_or_mask_of_another_size_is_one_line_before_any_work(test_data, tmp_path, capsys):
    """A depth (or object mask) not registered to the image was refused only after the contact estimation (~30 s on
    a CPU), as bad_depth / bad_input; now one line, exit 2, before the model loads."""
    import cv2

    cv2.imwrite(str(tmp_path / "d.png"), np.full((240, 320), 1500, np.uint16))
    cv2.imwrite(str(tmp_path / "m.png"), np.full((240, 320), 255, np.uint8))
    for flag, name in (("--depth", "d.png"), ("--object-mask", "m.png")):
        rc = main(["reconstruct", str(test_data / "person_catching_ball.png"), "--object", "ball", flag,
                   str(tmp_path / name), "--model", "/nonexistent/model", "--out", str(tmp_path / "o")])
        line = _err_line(capsys)
        assert rc == 2 and f"{flag} is 320x240 but the image is 640x480" in line, line


@pytest.mark.parametrize("argv, word", [
    (["--mesh", "/nonexistent/mesh.obj"], "not found"),
    (["--object", ""], "non-empty"),
    (["--body", "smplh:/nonexistent"], "no model file"),
    (["--body", "foo"], "unknown body model"),
    (["--object", "cup", "--size", "0"], "--size 0"),
    (["--object", "cup", "--views", "bogus"], "unknown view set"),
])
def test_render_bad_input_is_one_line(argv, word, tmp_path, capsys):
    """interactvlm render printed a traceback for every bad body, mesh, label, size or view set."""
    rc = main(["render", *argv, "--no-cache", "--out", str(tmp_path / "o")])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    line = cap.err.strip().splitlines()[-1]
    assert rc == 2 and line.startswith("interactvlm render:") and word in line, line


def test_reconstruct_hands_sizes_a_library_object_as_the_pipeline_does(test_data, tmp_path, caplog):
    """--contacts hands sized the library mesh by its file's extent (a can 0.08 m, a bottle 0.16 m) while the pipeline
    (and the node) take the label's catalog size (0.12 m, 0.25 m): one label, two sizes. Both take the catalog now."""
    from interactvlm_ros.recon.reconstructor import object_size_for

    want, why = object_size_for("can", "library:can")
    assert why.startswith("catalog size") and want == pytest.approx(0.12)
    with caplog.at_level("INFO"):
        rc = main(["reconstruct", str(test_data / "coffee_cup_no_person.png"), "--object", "can", "--contacts", "hands",
                   "--out", str(tmp_path / "o")])
    assert rc == 1 and json.loads((tmp_path / "o" / "result.json").read_text())["status"] == "no_person"
    assert any(f"size {want:.3f} m ({why})" in r.getMessage() for r in caplog.records), caplog.text
