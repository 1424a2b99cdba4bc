"""The pose of the input mesh file when the reconstruction rescales the mesh (``object_size``).

``Reconstructor.fit(..., object_size=S)`` (``interactvlm reconstruct --object-mesh M --object-size S``, or a pipeline
mesh sized by label) centres the mesh on its vertex mean and scales it to S before the fit, and ``object_pose`` is
the pose of that centred, scaled mesh. result.json carried only ``object_pose``: a planner loading the original file
and applying it put the object metres away (the file's centroid, in the file's units) and at the wrong size.
Now ``Reconstruction.object_mesh_transform`` (the fitted mesh ← the input mesh's coordinates) is carried and
result.json has ``object_scale`` and ``object_pose_mesh_file`` (camera ← the file's own coordinates); ``object_pose``
stays rigid. The body and object fits are doubles here (a fixed rigid motion): the point is what the result carries.
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

# the fitted object's rigid motion (camera ← fitted mesh): 30° about a tilted axis, 2.4 m in front of the camera
_AXIS = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
_K = np.array([[0, -_AXIS[2], _AXIS[1]], [_AXIS[2], 0, -_AXIS[0]], [-_AXIS[1], _AXIS[0], 0]])
_R = np.eye(3) + np.sin(np.pi / 6) * _K + (1 - np.cos(np.pi / 6)) * _K @ _K
_T = np.array([0.1, -0.05, 2.4])


@pytest.fixture(scope="module")
def recon():
    pytest.importorskip("anny")
    from interactvlm_ros.recon import Reconstructor

    return Reconstructor()


def _obs(n=64):
    from interactvlm_ros.perception.human import HumanObservation

    kp = np.zeros((33, 3), np.float32)
    kp[:, 0] = np.linspace(20, 40, 33)
    kp[:, 1] = np.linspace(5, 60, 33)
    kp[:, 2] = 1.0
    return HumanObservation(found=True, image_size=(n, n), keypoints_2d=kp)


def _doubles(recon, monkeypatch, spy=None):
    """Body fit: a 'hand' grid 2.4 m ahead; object fit: the fixed rigid motion (_R, _T) of the vertices it is given,
    as ObjectFitter returns them (pose 4x4, float32 vertices). ``spy`` receives each object fit's ``init_pose``."""
    import interactvlm_ros.recon.metrics as M
    from interactvlm_ros.recon.body_fit import BodyFitResult
    from interactvlm_ros.recon.object_fit import ObjectFitResult

    N = recon.body_fitter.poser.N
    grid = np.array([[0.13, y, z] for y in np.linspace(-0.05, 0.05, 5) for z in np.linspace(-0.05, 0.05, 5)])
    hv = grid[np.arange(N) % len(grid)] + _T
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = _R, _T

    def object_fit(v, *a, **k):
        if spy is not None:
            spy.append(k.get("init_pose"))
        return ObjectFitResult(pose.copy(), (np.asarray(v, np.float64) @ _R.T + _T).astype(np.float32), {})

    monkeypatch.setattr(recon.body_fitter, "fit", lambda *a, **k: BodyFitResult(
        None, hv, np.array([[0, 1, 2]]), np.zeros((75, 3)), {"reproj_rel": 0.01}))
    monkeypatch.setattr(recon.object_fitter, "fit", object_fit)
    monkeypatch.setattr(M, "penetration_depth", lambda *a, **k: 0.0)
    return N


def _strict(text: str) -> dict:
    def reject(c):
        raise ValueError(f"non-JSON constant {c}")

    return json.loads(text, parse_constant=reject)


def _ball_file(tmp_path, radius, centre, name):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    m.apply_translation(centre)
    path = tmp_path / name
    m.export(path)
    return path


def test_result_json_has_the_pose_of_the_input_mesh_file_when_it_was_rescaled(recon, monkeypatch, tmp_path):
    """A ball in millimetres, its centre 0.6 m from the file's origin, sized to 0.2 m: the file moved by
    result.json's ``object_pose_mesh_file`` is object.ply (and object_vertices_cam) to 1e-6 m; the file moved by
    ``object_pose`` (all there was before) is hundreds of metres off. object_pose itself stays rigid."""
    import trimesh

    from interactvlm_ros.recon.outputs import save_outputs

    N = _doubles(recon, monkeypatch)
    path = _ball_file(tmp_path, 100.0, [400.0, -250.0, 380.0], "ball_mm.ply")  # mm, centroid far from the origin
    img = np.zeros((64, 64, 3), np.uint8)
    r = recon.fit(img, _obs(), np.ones(N), None, str(path), object_size=0.2)
    assert r.status == "ok", r.message
    raw = trimesh.load(path, process=False)
    ext = float((raw.vertices.max(0) - raw.vertices.min(0)).max())
    assert r.object_scale == pytest.approx(0.2 / ext, rel=1e-12)
    R = r.object_pose[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)  # rigid
    T = r.object_mesh_transform  # the fitted mesh ← the file: centred, scaled
    assert np.allclose(T[:3, :3], r.object_scale * np.eye(3)) and np.allclose(T[3], [0, 0, 0, 1])
    centred = raw.vertices @ T[:3, :3].T + T[:3, 3]
    assert np.allclose(centred.mean(0), 0, atol=1e-12)

    save_outputs(r, img, tmp_path / "out")
    res = _strict((tmp_path / "out" / "result.json").read_text())
    json.dumps(r.to_json(), allow_nan=False)
    fit = trimesh.load(tmp_path / "out" / "object.ply", process=False).vertices
    assert res["object_scale"] == pytest.approx(0.2 / ext, rel=1e-12)
    S = np.array(res["object_pose_mesh_file"])
    assert np.allclose(S, r.object_pose @ T) and np.allclose(S, r.object_pose_mesh_file)
    moved = raw.copy().apply_transform(S).vertices
    assert np.abs(moved - fit).max() < 1e-6  # the planner's way: load the file, apply the pose from result.json
    assert np.abs(moved - r.object_vertices_cam).max() < 1e-6
    assert np.allclose(np.array(res["object_pose"]), r.object_pose)  # object_pose unchanged: the fitted mesh's
    naive = raw.copy().apply_transform(np.array(res["object_pose"])).vertices
    assert np.linalg.norm(naive - fit, axis=1).min() > 100.0  # what a planner got before: the file's mm, off-centre


def test_a_metric_mesh_used_as_is_has_scale_one_and_its_file_pose_is_object_pose(recon, monkeypatch, tmp_path):
    """No object_size: the mesh is used as it is (its own origin, not centred) — object_mesh_transform is the identity,
    object_scale 1.0 and object_pose_mesh_file equals object_pose; the file moved by either is object.ply."""
    import trimesh

    from interactvlm_ros.recon.outputs import save_outputs

    N = _doubles(recon, monkeypatch)
    path = _ball_file(tmp_path, 0.11, [0.3, 0.1, -0.2], "ball_m.ply")  # metric, origin off the centroid
    img = np.zeros((64, 64, 3), np.uint8)
    r = recon.fit(img, _obs(), np.ones(N), None, str(path))
    assert r.status == "ok", r.message
    assert np.array_equal(r.object_mesh_transform, np.eye(4)) and r.object_scale == 1.0
    save_outputs(r, img, tmp_path / "out")
    res = _strict((tmp_path / "out" / "result.json").read_text())
    assert res["object_scale"] == 1.0 and res["object_pose_mesh_file"] == res["object_pose"]
    fit = trimesh.load(tmp_path / "out" / "object.ply", process=False).vertices
    moved = trimesh.load(path, process=False).apply_transform(np.array(res["object_pose_mesh_file"])).vertices
    assert np.abs(moved - fit).max() < 1e-6


def test_a_pipeline_mesh_sized_by_label_carries_its_transform(recon, monkeypatch):
    """A ContactResult's normalised mesh sized by its label's catalog size: object_mesh_transform maps the given
    vertices onto the fitted mesh, and object_pose_mesh_file maps them into the camera frame."""
    N = _doubles(recon, monkeypatch)
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    v = np.asarray(m.vertices) + [0.2, 0.0, 0.0]  # as given, not centred on its vertex mean
    cr = types.SimpleNamespace(human_contact=np.ones(N), object_contact=None, object_vertices=v,
                               object_faces=np.asarray(m.faces), object_label="ball", object_source="library:ball")
    size, _ = recon.object_size("ball", "library:ball")
    r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), cr)
    assert r.status == "ok", r.message
    assert r.object_scale == pytest.approx(size / float((v.max(0) - v.min(0)).max()), rel=1e-12)
    S = r.object_pose_mesh_file
    assert np.abs(v @ S[:3, :3].T + S[:3, 3] - r.object_vertices_cam).max() < 1e-6
    assert r.to_json()["object_scale"] == pytest.approx(r.object_scale)


def test_a_metric_pipeline_mesh_keeps_scale_one_but_is_centred(recon, monkeypatch, tmp_path):
    """The node's / the CLI pipeline's case: a ContactResult whose mesh file is metric is sized by its own extent —
    object_scale 1, but centred on its vertex mean, so object_pose is not the file's pose; object_pose_mesh_file is."""
    import trimesh

    N = _doubles(recon, monkeypatch)
    path = _ball_file(tmp_path, 0.11, [0.3, 0.1, -0.2], "ball_m.ply")
    m = trimesh.load(path, process=False)
    v = np.asarray(m.vertices)
    cr = types.SimpleNamespace(human_contact=np.ones(N), object_contact=None, object_vertices=v,
                               object_faces=np.asarray(m.faces), object_label="ball", object_source=str(path))
    r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), cr)
    assert r.status == "ok", r.message
    assert r.object_scale == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(r.object_mesh_transform[:3, 3], -v.mean(0), atol=1e-12)  # centred: 0.37 m from the origin
    assert not np.allclose(r.object_pose_mesh_file, r.object_pose, atol=0.1)
    S = np.array(r.to_json()["object_pose_mesh_file"])
    assert np.abs(v @ S[:3, :3].T + S[:3, 3] - r.object_vertices_cam).max() < 1e-6


def test_a_normalised_pipeline_mesh_gives_the_pose_of_its_file(recon, monkeypatch, tmp_path):
    """What the pipeline really hands over: ContactResult.object_vertices normalised (centred, longest side 1) and
    ``object_normalization`` (those vertices ← the file's). object_scale is the file's (1 for a metric file, not the
    0.22 that sized the normalised mesh) and the file moved by object_pose_mesh_file is the fitted mesh."""
    import trimesh

    from interactvlm_ros import objects

    N = _doubles(recon, monkeypatch)
    path = _ball_file(tmp_path, 0.11, [0.3, 0.1, -0.2], "ball_m.ply")
    v = np.asarray(trimesh.load(path, process=False).vertices)
    vn = objects.normalize_mesh(v)
    ext = float((v.max(0) - v.min(0)).max())
    T = np.eye(4)
    T[:3, :3] /= ext
    T[:3, 3] = -v.mean(0) / ext
    cr = types.SimpleNamespace(human_contact=np.ones(N), object_contact=None, object_vertices=vn,
                               object_faces=np.asarray(trimesh.load(path, process=False).faces), object_label="ball",
                               object_source=str(path), object_normalization=T)
    r = recon.fit(np.zeros((64, 64, 3), np.uint8), _obs(), cr)
    assert r.status == "ok", r.message
    assert r.object_scale == pytest.approx(1.0, abs=1e-6)
    S = np.array(r.to_json()["object_pose_mesh_file"])
    assert np.abs(v @ S[:3, :3].T + S[:3, 3] - r.object_vertices_cam).max() < 1e-5


def test_warm_starts_use_the_rigid_object_pose(recon, monkeypatch, tmp_path):
    """The tracker's warm start (ReconInit) carries object_pose, the fitted mesh's rigid pose — not the file's
    similarity: the next fit's candidates are that pose carried with the body and that pose as it was."""
    from interactvlm_ros.recon.reconstructor import ReconInit

    spy: list = []
    N = _doubles(recon, monkeypatch, spy)
    path = _ball_file(tmp_path, 100.0, [400.0, -250.0, 380.0], "ball_mm.ply")
    img = np.zeros((64, 64, 3), np.uint8)
    first = recon.fit(img, _obs(), np.ones(N), None, str(path), object_size=0.2)
    assert first.ok and spy[-1] is None and first.object_scale != 1.0
    init = ReconInit.from_reconstruction(first)
    assert np.array_equal(init.object_pose, first.object_pose)
    second = recon.fit(img, _obs(), np.ones(N), None, str(path), object_size=0.2, init=first)
    assert second.ok and len(spy[-1]) == 2
    for cand in spy[-1]:  # the body did not move: both candidates are the previous rigid pose
        assert np.allclose(cand, first.object_pose, atol=1e-9)
    assert np.allclose(second.object_mesh_transform, first.object_mesh_transform)


def test_results_without_an_object_mesh_have_no_scale():
    """A result with no mesh read (no person, bad input) has object_scale and object_pose_mesh_file null: strict JSON."""
    from interactvlm_ros.recon import Reconstruction

    j = Reconstruction("no_person", "no person observed in the image").to_json()
    assert j["object_scale"] is None and j["object_pose_mesh_file"] is None
    json.dumps(j, allow_nan=False)


def test_a_scan_over_the_face_budget_is_fitted_decimated_in_the_files_own_coordinates(recon, monkeypatch, tmp_path):
    """A scanner mesh given to the reconstructor (``interactvlm reconstruct --object-mesh``, or a path / arrays) was
    fitted whole: 1.3 M faces took 5 min and 4.8 GB (the object fit and the grip / free points work per vertex). It is
    now decimated to objects.PIPELINE_MAX_FACES (here a 5120-face ball over 1000), once per mesh, a named fallback: the
    result's mesh, contact and pose are of the decimated mesh, which keeps the file's size and origin (the file's ball
    moved by object_pose_mesh_file is the fitted ball), and an object_contact given on the file's vertices is carried
    to the kept vertices (from the nearest)."""
    import trimesh

    from interactvlm_ros import objects

    monkeypatch.setattr(objects, "PIPELINE_MAX_FACES", 1000)
    calls = []
    validate = objects.validate_mesh
    monkeypatch.setattr(objects, "validate_mesh", lambda *a, **k: calls.append(1) or validate(*a, **k))
    N = _doubles(recon, monkeypatch)
    centre = np.array([0.3, 0.1, -0.2])  # metric, its origin off the ball's centre
    path = tmp_path / "scan.ply"
    fine = trimesh.creation.icosphere(subdivisions=4, radius=0.1).apply_translation(centre)  # 5120 faces
    fine.export(path)
    v_in = np.asarray(fine.vertices)
    oc_in = (v_in[:, 0] > centre[0] + 0.05).astype(np.float64)  # contact on the +x cap of the file's vertices
    img = np.zeros((64, 64, 3), np.uint8)
    r = recon.fit(img, _obs(), np.ones(N), oc_in, str(path))
    assert r.status == "ok", r.message
    assert 500 <= len(r.object_faces) <= 1000 and r.object_faces.max() < len(r.object_vertices_cam)
    assert len(r.object_contact) == len(r.object_vertices_cam) < len(v_in)
    named = [f for f in recon.fallbacks if f.startswith("object mesh of 5120 faces decimated to")]
    assert len(named) == 1 and "PIPELINE_MAX_FACES = 1000" in named[0]
    assert np.array_equal(r.object_mesh_transform, np.eye(4))  # metric, used where it is: the file's coordinates
    back = (r.object_vertices_cam - r.object_pose[:3, 3]) @ r.object_pose[:3, :3]  # the decimated mesh, file frame
    assert np.abs(np.linalg.norm(back - centre, axis=1) - 0.1).max() < 0.005  # on the file's ball: size, origin kept
    away = np.abs(back[:, 0] - (centre[0] + 0.05)) > 0.01  # off the cap's rim the nearest file vertex is on its side
    assert np.array_equal(r.object_contact[away], (back[away, 0] > centre[0] + 0.05).astype(np.float32))
    S = r.object_pose_mesh_file  # the file's ball centre moved by it is the fitted (decimated) ball's centre
    assert np.abs(np.linalg.norm(r.object_vertices_cam - (S[:3, :3] @ centre + S[:3, 3]), axis=1) - 0.1).max() < 0.005
    assert len(calls) == 1
    again = recon.fit(img, _obs(), np.ones(N), oc_in, str(path))  # a tracked object: decimated once
    assert len(calls) == 1 and np.array_equal(again.object_faces, r.object_faces)
    bad = recon.fit(img, _obs(), np.ones(N), np.ones(len(r.object_vertices_cam)), str(path))
    assert bad.status == "bad_input" and f"the object mesh {len(v_in)} vertices" in bad.message  # the file's count


def test_a_mesh_files_size_is_read_once_per_file_version(tmp_path, monkeypatch):
    """The pipeline's mesh is sized from its file every frame (``object_size_for``): a 1.3 M-face scan was read again
    each frame (0.6 s). The extent is now read once per file version; a replaced file is read again."""
    import os

    from interactvlm_ros.recon import reconstructor as rec

    path = _ball_file(tmp_path, 0.1, [0.0, 0.0, 0.0], "ball.ply")
    reads = []
    real = rec._mesh_arrays
    monkeypatch.setattr(rec, "_mesh_arrays", lambda m: reads.append(m) or real(m))
    assert rec.object_size_for("ball", str(path))[0] == pytest.approx(0.2, rel=0.05)
    assert rec.object_size_for("ball", str(path))[0] == pytest.approx(0.2, rel=0.05)
    assert len(reads) == 1
    st = os.stat(path)
    _ball_file(tmp_path, 0.12, [0.0, 0.0, 0.0], "ball.ply")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time stamp, another file
    assert rec.object_size_for("ball", str(path))[0] == pytest.approx(0.24, rel=0.05)
    assert len(reads) == 2
