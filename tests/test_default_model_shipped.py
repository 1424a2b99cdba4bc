"""The shipped default model: packaging, offline loading, real photos, label robustness.

Real-photo checks go through perception (mediapipe) -> DefaultLocalizer -> lifting on the template's
view assets (the core's ``assets``/``lift`` when importable, else the training fallback); the
``ContactEstimator`` path (what the node and ``interactvlm estimate`` use) is tested separately and
skipped only while the core parts it needs are missing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mediapipe")

import interactvlm_ros  # noqa: E402
from interactvlm_ros.models.default.predictor import WEIGHTS_DIR  # noqa: E402

PKG = Path(interactvlm_ros.__file__).resolve().parent


def _read(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def stack():
    """(localizer, perception, human assets, human lifter, part ids, part names)."""
    import torch

    from interactvlm_ros.models.default import load_default_localizer
    from interactvlm_ros.perception.human import HumanPerception

    loc = load_default_localizer(backend="auto")
    ck = torch.load(str(WEIGHTS_DIR / "model.pt"), map_location="cpu", weights_only=False)
    try:
        from interactvlm_ros import assets, bodies
        from interactvlm_ros.lift import Lifter

        body = bodies.get_body_model("anny")
        h = assets.human_assets(body, loc.asset_size)
        part_ids, part_names = np.asarray(body.part_labels), list(body.part_names)
    except ImportError:
        from interactvlm_ros.training.fallback_assets import SoftLifter as Lifter
        from interactvlm_ros.training.fallback_assets import map_assets

        h = map_assets(ck["human_template"], ck["human_template_faces"], "human", loc.asset_size)
        part_ids, part_names = np.asarray(ck["human_part_ids"]), list(ck["human_part_names"])
    return loc, HumanPerception(), h, Lifter(h, mode="human"), part_ids, part_names


def _contact(stack, image, label):
    loc, perc, h, lifter, _, _ = stack
    obs = perc.observe(image)
    out = loc.predict(image, label, h, None, observation=obs)
    if out.human_logits is None:
        return obs, out, None
    return obs, out, np.asarray(lifter(out.human_logits))


def _part_scores(contact, part_ids, part_names):
    return {n: float(contact[part_ids == i].mean()) for i, n in enumerate(part_names) if (part_ids == i).any()}


def test_weights_ship_inside_the_package_within_budget():
    files = {p.name: p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file()}
    for f in ("model.pt", "frame.onnx", "config.yaml", "metrics.json"):
        assert f in files, f"{f} missing from {WEIGHTS_DIR}"
    assert sum(files.values()) <= 30 * 2**20
    assert WEIGHTS_DIR.resolve().is_relative_to(PKG)
    metrics = json.loads((WEIGHTS_DIR / "metrics.json").read_text())
    assert "training" in metrics and any(k.startswith("eval_") for k in metrics), sorted(metrics)
    # the dataset the weights were trained on (its generator and seed) readable beside them, as model.pt records it
    import torch

    data = torch.load(str(WEIGHTS_DIR / "model.pt"), map_location="cpu", weights_only=False)["data"]
    assert {k: metrics["data"][k] for k in ("generator", "seed", "n")} == {k: data[k] for k in ("generator", "seed", "n")}


def test_loads_and_runs_offline_with_a_fresh_cache(tmp_path):
    code = (
        "import numpy as np, types\n"
        "from interactvlm_ros.models.registry import load_localizer\n"
        "from interactvlm_ros.training.fallback_assets import map_assets\n"
        "import torch\n"
        "loc = load_localizer('default', backend='auto')\n"
        "ck = torch.load(str(loc.weights_dir / 'model.pt'), map_location='cpu', weights_only=False)\n"
        "h = map_assets(ck['human_template'], ck['human_template_faces'], 'human', 64)\n"
        "pose = np.zeros((33, 3), np.float32); pose[:, :2] = np.random.default_rng(0).uniform(100, 300, (33, 2)); pose[:, 2] = 1\n"
        "obs = types.SimpleNamespace(found=True, keypoints_2d=pose, hands_2d=np.zeros((2, 21, 3), np.float32), mask=None)\n"
        "out = loc.predict(np.zeros((400, 400, 3), np.uint8), 'cup', h, None, observation=obs)\n"
        "assert out.human_logits.shape[0] == 4 and np.isfinite(out.human_logits).all()\n"
        "print('OK', loc.backend, loc.weights_dir)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", INTERACTVLM_CACHE_DIR=str(tmp_path / "cache"),
               HF_HOME=str(tmp_path / "hf"), NO_PROXY="*", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("OK")][0]
    assert str(PKG) in line


def test_catching_ball_photo_puts_contact_on_the_hands(stack, test_data):
    img = _read(test_data / "person_catching_ball.png")
    obs, out, contact = _contact(stack, img, "ball")
    assert obs.found and contact is not None
    scores = _part_scores(contact, stack[4], stack[5])
    top = max(scores, key=scores.get)
    assert "hand" in top, scores
    assert contact.max() >= 0.5  # a confident contact, not a flat map


def test_a_person_who_fills_less_of_the_frame_still_gets_contact_on_the_hands(stack, test_data):
    """The catching photo with a 100 px grey border: Pose's detector no longer finds the (now smaller) man in the
    full frame — the result was no_person — while the zoomed person search finds him in a crop (perception.human)."""
    import cv2

    img = cv2.copyMakeBorder(_read(test_data / "person_catching_ball.png"), 100, 100, 200, 200, cv2.BORDER_CONSTANT,
                             value=(128, 128, 128))
    obs, out, contact = _contact(stack, img, "ball")
    assert obs.found and obs.person_source == "zoom" and contact is not None
    scores = _part_scores(contact, stack[4], stack[5])
    assert "hand" in max(scores, key=scores.get), scores
    assert contact.max() >= 0.5


def test_held_object_label_on_a_real_photo_puts_contact_on_a_hand(stack, test_data):
    """Pose + label path on real pixels: a held-object label ('cup', trained as hold_one_hand) -> a hand."""
    img = _read(test_data / "person_catching_ball.png")
    _, out, contact = _contact(stack, img, "cup")
    scores = {n: float(contact[stack[4] == i].max()) for i, n in enumerate(stack[5]) if (stack[4] == i).any()}
    top = max(scores, key=scores.get)
    assert "hand" in top and scores[top] >= 0.5, scores


def test_coffee_cup_photo_is_no_person(stack, test_data):
    img = _read(test_data / "coffee_cup_no_person.png")
    obs, out, contact = _contact(stack, img, "cup")
    assert not obs.found
    assert out.human_logits is None and out.object_logits is None and out.extras["status"] == "no_person"


def test_synonyms_give_consistent_contact_and_unknown_labels_are_flagged(stack, test_data):
    img = _read(test_data / "person_catching_ball.png")
    res = {lab: _contact(stack, img, lab) for lab in ("ball", "basketball", "football", "cup", "mug", "flux capacitor")}
    c = {k: v[2] for k, v in res.items()}
    for a, b in (("ball", "basketball"), ("ball", "football"), ("cup", "mug")):
        assert np.corrcoef(c[a], c[b])[0, 1] > 0.95, (a, b)
        assert np.abs(c[a] - c[b]).max() < 0.2, (a, b)
    for lab in ("ball", "basketball", "football", "cup", "mug"):
        assert res[lab][1].extras["label_known"], lab
    unk = res["flux capacitor"][1]
    assert unk.extras["label_known"] is False and unk.extras["status"] == "ok"
    assert np.isfinite(c["flux capacitor"]).all()


def test_estimate_cli_through_the_pipeline_no_person(tmp_path, test_data):
    from interactvlm_ros.cli.main import main

    out2 = tmp_path / "cup"
    assert main(["estimate", str(test_data / "coffee_cup_no_person.png"), "--object", "cup", "--out", str(out2)]) == 0
    info2 = json.loads((out2 / "contacts.json").read_text())
    assert info2["status"] == "no_person" and info2["contact_parts"] == []
    assert (out2 / "overlay.png").is_file() and (out2 / "contacts.npz").is_file()


def test_estimate_cli_through_the_pipeline(tmp_path, test_data):
    from interactvlm_ros.cli.main import main

    out = tmp_path / "ball"
    assert main(["estimate", str(test_data / "person_catching_ball.png"), "--object", "ball", "--out", str(out)]) == 0
    info = json.loads((out / "contacts.json").read_text())
    assert info["status"] == "ok" and info["label_known"] is True
    assert "hand" in next(iter(info["human_parts"]))  # parts sorted by max contact
    z = np.load(out / "contacts.npz")
    assert z["human_contact"].shape == (z["human_vertices"].shape[0],)
    for f in ("overlay.png", "human_contact.ply", "object_contact.ply"):
        assert (out / f).is_file(), f
    assert info["fallbacks"] == []  # a known label, a library mesh: nothing was substituted
    # an unknown label: both substitutions (stand-in mesh, generic-object input) are named in contacts.json
    out3 = tmp_path / "flux"
    assert main(["estimate", str(test_data / "person_catching_ball.png"), "--object", "flux capacitor",
                 "--out", str(out3)]) == 0
    fb = json.loads((out3 / "contacts.json").read_text())["fallbacks"]
    assert any("stand-in mesh" in f for f in fb) and any("unlike every trained category" in f for f in fb), fb


def test_estimate_cli_on_a_person_operating_a_camera(tmp_path, test_data):
    """A real photo no model was tuned on (scikit-image's CC0 cameraman, tests/data/SOURCES.md): a man with his hands on a
    camera on a tripod. Label 'camera' (a library mesh) -> the highest-contact part is a hand, confidently."""
    from interactvlm_ros.cli.main import main

    out = tmp_path / "camera"
    assert main(["estimate", str(test_data / "cameraman_operating_camera.png"), "--object", "camera",
                 "--out", str(out)]) == 0
    info = json.loads((out / "contacts.json").read_text())
    assert info["status"] == "ok" and info["label_known"] is True and info["object_source"] == "library:camera"
    top, stats = next(iter(info["human_parts"].items()))  # sorted by max contact
    assert "hand" in top and stats["max"] >= 0.5, info["human_parts"]
    assert not any(p in info["human_parts"] and info["human_parts"][p]["max"] >= 0.5
                   for p in ("left_foot", "right_foot", "head"))



def test_estimator_answers_bad_input_for_images_too_small_for_perception_and_labels_naming_nothing(stack, test_data):
    """ContactEstimator took images from 8x8 up, mediapipe perception from 16x16: a 12-pixel-high frame raised a bare
    ValueError out of estimate() (documented: never raises for bad input) and out of observe() (the node expects a
    PipelineError there: anything else is an internal_error with a traceback); so did the label '_'. Now both are
    bad_input, and DefaultLocalizer.predict without an observation raises LocalizerError."""
    from interactvlm_ros.models.base import LocalizerError
    from interactvlm_ros.pipeline import ContactEstimator, PipelineError

    loc, _, h = stack[:3]
    est = ContactEstimator(localizer=loc)
    for small in (np.zeros((12, 640, 3), np.uint8), np.zeros((480, 10, 3), np.uint8)):
        res = est.estimate(small, "cup")
        assert res.status == "bad_input" and "16x16" in res.message, res.message
        with pytest.raises(PipelineError, match="16x16"):
            est.observe(small)
        with pytest.raises(LocalizerError, match="16x16"):
            loc.predict(small, "cup", h)
    img = _read(test_data / "person_catching_ball.png")
    for label in ("_", "-", "__-__"):
        res = est.estimate(img, label)
        assert res.status == "bad_input" and "object_label" in res.message, res.message
    assert est.estimate(img, "cup").status == "ok"


def test_the_frames_object_box_mask_and_depth_reach_the_default_model(stack, test_data):
    """The default model was trained with an optional object box and depth cue (``interactvlm eval --cues full``), but
    ContactEstimator gave it only pose, hands and label: a node's detector box, object mask and depth went to the
    reconstruction alone. Now they are model inputs too (ContactResult.cues), and they change its output; an unusable
    box is left out with a named fallback, the frame still answered."""
    from interactvlm_ros.pipeline import ContactEstimator

    loc = stack[0]
    est = ContactEstimator(localizer=loc)
    img = _read(test_data / "person_catching_ball.png")
    H, W = img.shape[:2]
    obs = est.observe(img)
    plain = est.estimate(img, "ball", observation=obs)
    assert plain.status == "ok" and plain.cues == "pose+hands+label"
    box = (W * 0.40, H * 0.05, W * 0.60, H * 0.30)
    depth = np.full((H, W), 2.0, np.float32)
    depth[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = 1.6  # the ball, 40 cm in front of the person
    cued = est.estimate(img, "ball", observation=obs, object_box=box, depth=depth)
    assert cued.status == "ok" and cued.cues == "pose+hands+label+box+depth"
    assert np.abs(cued.human_masks - plain.human_masks).max() > 1e-3  # the cues are read, not ignored
    mask = np.zeros((H, W), bool)
    mask[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = True
    assert est.estimate(img, "ball", observation=obs, object_mask=mask).cues == "pose+hands+label+box"
    bad = est.estimate(img, "ball", observation=obs, object_box=(50, 50, 10, 10))
    assert bad.status == "ok" and bad.cues == "pose+hands+label"
    assert any("object box" in f for f in est.all_fallbacks())
    est.close()


def test_estimator_answers_bad_input_for_depth_in_millimetres_or_of_another_size_and_non_numeric_K_or_box(
        stack, test_data):
    """A uint16 depth (a 16UC1 driver's millimetres) was read as metres: the model's depth cue clipped at 10 m, frame
    'ok' (now millimetres, as the node and recon.load_depth read integer depth; 8-bit depth is bad_input); a depth of another size than the image was silently left out of the cues; a non-numeric depth, K or
    object_box raised a bare ValueError out of estimate() (documented: never raises for bad input). All bad_input now,
    naming the field; float metres of the image's size still reach the model."""
    from interactvlm_ros.pipeline import ContactEstimator

    est = ContactEstimator(localizer=stack[0], perception="none")
    img = _read(test_data / "person_catching_ball.png")
    H, W = img.shape[:2]
    for kw, words in (({"depth": np.full((H, W), 200, np.uint8)}, ("uint8", "millimetres")),
                      ({"depth": np.full((H // 2, W // 2), 2.0, np.float32)}, ("depth is 320x240", "image is 640x480")),
                      ({"depth": np.full((H, W), "a")}, ("depth", "numeric")),
                      ({"K": "abc"}, ("K",)),
                      ({"object_box": "abcd"}, ("object_box", "not numeric")),
                      ({"object_box": ("a", "b", "c", "d")}, ("object_box", "not numeric")),
                      # a NaN float mask counted as all object (NaN != 0); a non-observation read as "no person"
                      ({"object_mask": np.full((H, W), np.nan, np.float32)}, ("object_mask", "NaN")),
                      ({"observation": "x"}, ("observation is a str", "HumanObservation"))):
        res = est.estimate(img, "ball", **kw)
        assert res.status == "bad_input" and all(w in res.message for w in words), (kw, res.message)
    res = est.estimate(img, "ball", depth=np.full((H, W), 2.0, np.float32))
    assert res.status == "ok" and res.cues.endswith("+depth"), res.cues
    mm = est.estimate(img, "ball", depth=np.full((H, W), 2000, np.uint16))  # 16UC1 millimetres: the same 2 m
    assert mm.status == "ok" and mm.cues == res.cues
    np.testing.assert_allclose(mm.human_contact, res.human_contact, atol=1e-6)
    est.close()


def test_estimator_is_a_context_manager_and_refuses_use_after_close(stack, test_data):
    """close() was the only way to release the estimator's perception (``with`` raised TypeError), and a frame after
    close() raised "HumanPerception.observe after close()" (or, without perception, went on building a new one). Now
    ``with ContactEstimator(...)`` closes it, a second close() does nothing and use after close is one PipelineError."""
    from interactvlm_ros.pipeline import ContactEstimator, PipelineError

    img = _read(test_data / "person_catching_ball.png")
    with ContactEstimator(localizer=stack[0]) as est:
        assert est.estimate(img, "ball").status == "ok"
    est.close()  # a second time: nothing
    for call in (lambda: est.estimate(img, "ball"), lambda: est.observe(img), lambda: est.prepare("ball")):
        with pytest.raises(PipelineError, match="after close"):
            call()
    assert stack[0].predict(img, "ball", stack[2]).human_logits is not None  # a given localizer is not closed


def test_a_result_moved_in_place_leaves_other_frames_and_estimators_alone(stack, test_data):
    """ContactResult.human_vertices was the process-wide body template itself (object_vertices / faces / part_ids /
    part_names the estimator's cached ones): a caller moving one result's mesh into its frame in place
    (res.human_vertices += t) moved the template of every later frame and of every other ContactEstimator in the
    process. Results now own those arrays; the cached renders (12 MB, not copied per frame) are read-only views."""
    from interactvlm_ros import bodies
    from interactvlm_ros.pipeline import ContactEstimator

    img = _read(test_data / "person_catching_ball.png")
    template = np.array(bodies.get_body_model("anny").template_vertices)
    a, b = ContactEstimator(localizer=stack[0]), ContactEstimator(localizer=stack[0])
    try:
        r = a.estimate(img, "ball")
        assert r.status == "ok"
        obj = r.object_vertices.copy()
        r.human_vertices += 1.0
        r.object_vertices *= 2.0
        r.human_faces[:] = 0
        r.object_faces[:] = 0
        r.part_ids[:] = 0
        r.object_normalization[:] = 0
        r.part_names.append("tail")
        np.testing.assert_array_equal(bodies.get_body_model("anny").template_vertices, template)
        for est in (a, b):
            r2 = est.estimate(img, "ball")
            np.testing.assert_array_equal(r2.human_vertices, template)
            np.testing.assert_array_equal(r2.object_vertices, obj)
            assert r2.human_faces.max() > 0 and r2.object_faces.max() > 0 and r2.part_ids.max() > 0
            assert "tail" not in r2.part_names and r2.object_normalization[3, 3] == 1.0
        with pytest.raises(ValueError, match="read-only"):
            r.human_renders[0, 0, 0] = 0
    finally:
        a.close()
        b.close()


def test_close_releases_the_perception_the_default_model_built_for_itself(test_data):
    """perception='none' with the default model: the localizer builds its own mediapipe perception (it needs the
    landmarks) — said in the fallbacks — and ContactEstimator.close() now releases it (mediapipe keeps ~300 MB and 10
    threads per instance until closed); a given localizer is left to its owner."""
    from interactvlm_ros.pipeline import ContactEstimator

    est = ContactEstimator(model="default", perception="none")
    assert any("runs its own" in f for f in est.all_fallbacks())
    img = _read(test_data / "person_catching_ball.png")
    assert est.estimate(img, "ball").status == "ok"
    own = est.localizer._perception
    assert own is not None
    est.close()
    assert est.localizer._perception is None
    with pytest.raises(RuntimeError, match="after close"):
        own.observe(img)
    given = ContactEstimator(localizer=est.localizer, perception="none")
    assert given.estimate(img, "ball").status == "ok"  # builds a new one
    kept = est.localizer._perception
    given.close()
    assert est.localizer._perception is kept
    est.localizer.close()


def test_bench_default_model_refuses_a_missing_image_or_weights_folder_in_one_line(tmp_path, test_data, capsys):
    """benchmarks/bench_default_model.py --image typo was a cv2 assertion traceback (cvtColor of None), --weights typo
    a DefaultModelError traceback: one line each and exit 2."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_default_model.py"
    spec = importlib.util.spec_from_file_location("bench_default_model", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--image", str(tmp_path / "nope.png"), "--threads", "1"]) == 2
    assert f"cannot read --image {tmp_path / 'nope.png'}" in capsys.readouterr().err
    img = str(test_data / "person_catching_ball.png")
    assert bench.main(["--weights", str(tmp_path / "nope"), "--image", img, "--threads", "1"]) == 2
    assert "--weights: default model checkpoint not found" in capsys.readouterr().err
