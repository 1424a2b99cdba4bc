"""ContactEstimator (pipeline.py): the one object the CLI, node, benchmarks and evaluation use."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from interactvlm_ros.pipeline import ContactEstimator, ContactResult, PipelineError  # noqa: E402


def _rgb(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def est():
    return ContactEstimator()  # default model, CPU


def test_official_tiny_checkpoint_matches_official_contact(conformance_dir):
    """Official-format checkpoint + official assets folder through the pipeline == the official code's
    per-vertex contact (generate path) within the fixture's tolerance."""
    root = conformance_dir / "interactvlm-hcontact-tiny"
    e = ContactEstimator(model=str(root / "interactvlm-3d-hcontact-damon-tiny"),
                         assets=str(root / "data" / "hcontact_vitruvian"), backend="torch", perception="none")
    assert not e.predicts_object and e.asset_size == 1024
    res = e.estimate(_rgb(root / "inputs" / "bottle__synthetic_224.png"), "bottle")
    assert res.status == "ok"
    expected = np.load(root / "expected" / "generate.npz")["pred_contact_3d"].reshape(-1)
    assert res.human_contact.shape == (6890,)
    np.testing.assert_allclose(res.human_contact, expected, atol=1e-5)
    assert e.human_lifter.unseen_filled == 0  # official checkpoints lift with the official rules (no fill)
    assert res.object_contact is None and res.human_masks.shape == (4, 1024, 1024)
    # Anny (default body) does not have the SMPL-H topology: no geometry, and that is a named fallback
    assert res.human_vertices is None
    assert any("6890" in f for f in e.fallbacks)
    assert res.overlay().shape == (256, 4 * 256, 3)


def _check_overlay_paints_the_published_contact(res):
    """The overlay shows the per-vertex contact the result publishes (the default model's human contact comes from its
    vertex head, not from its masks): each render pixel blended toward (255, 38, 25) by 0.6 x the contact interpolated
    over its triangle; ``source="masks"`` still draws the raw masks; a result without maps falls back to the masks."""
    import dataclasses

    size = res.human_view_maps.size[0]
    assert res.human_renders.shape[1] == size and res.object_view_maps.size == res.object_renders.shape[1:3]
    ov = res.overlay(tile=size).astype(np.float64)
    for row, (renders, maps, contact) in enumerate(((res.human_renders, res.human_view_maps, res.human_contact),
                                                    (res.object_renders, res.object_view_maps, res.object_contact))):
        painted = maps.paint(contact)
        for v in range(len(renders)):
            w = 0.6 * np.clip(painted[v], 0, 1)[..., None]
            expected = renders[v] * (1 - w) + np.array([255.0, 38.0, 25.0]) * w
            np.testing.assert_allclose(ov[row * size:(row + 1) * size, v * size:(v + 1) * size], expected, atol=1.0)
    hot = res.human_view_maps.paint(res.human_contact) > 0.5
    assert hot.any()  # the contact the estimate reports is visible in the picture
    tri = res.human_view_maps.dense_vertex_ids()[hot]  # [P,3] the triangles of the red pixels
    ids = tri[np.arange(len(tri)), res.human_contact[tri].argmax(1)]  # each one's most-contact vertex
    assert set(np.unique(res.part_ids[ids])) <= {res.part_names.index(p) for p in res.contact_parts(0.5)}
    masks = res.overlay(tile=size, source="masks")
    assert not np.array_equal(masks, ov.astype(np.uint8))
    no_maps = dataclasses.replace(res, human_view_maps=None, object_view_maps=None)
    np.testing.assert_array_equal(no_maps.overlay(tile=size), masks)
    with pytest.raises(ValueError, match="overlay source"):
        res.overlay(source="logits")


def test_default_model_on_real_photo(est, test_data):
    res = est.estimate(_rgb(test_data / "person_catching_ball.png"), "ball")
    assert res.status == "ok", res.message
    assert res.model == "default" and res.backend
    nh = len(res.human_vertices)
    assert res.human_contact.shape == (nh,) and res.human_faces.max() < nh
    assert res.object_contact.shape == (len(res.object_vertices),)
    for c in (res.human_contact, res.object_contact):
        assert np.all(np.isfinite(c)) and c.min() >= 0 and c.max() <= 1
    assert res.part_ids.shape == (nh,) and res.part_names
    # normalised object: longest side 1 (spec 3.6)
    ext = res.object_vertices.max(0) - res.object_vertices.min(0)
    assert ext.max() == pytest.approx(1.0, abs=1e-4)
    for k in ("perception", "localize", "lift", "total"):
        assert k in res.timings and res.timings[k] >= 0
    ov = res.overlay(tile=64)
    assert ov.shape == (128, 4 * 64, 3) and ov.dtype == np.uint8
    _check_overlay_paints_the_published_contact(res)
    # the default model fills the vertices no view sees (about a quarter of Anny's at 512²) from visible ones
    # (mesh components with no visible vertex at all, e.g. Anny's eyeballs, keep 0)
    unseen = est.human_lifter.views_per_vertex() == 0
    idx = est.human_lifter._fill_index.numpy()
    filled = idx != np.arange(nh)
    assert 0.15 * nh < est.human_lifter.unseen_filled == filled.sum() <= unseen.sum() < 0.35 * nh
    assert unseen[filled].all() and not unseen[idx[filled]].any()
    p = np.clip(res.human_masks.astype(np.float64), 1e-9, 1 - 1e-9)
    lifted = np.asarray(est.human_lifter(np.log(p / (1 - p)).astype(np.float32)))
    np.testing.assert_allclose(lifted[filled], lifted[idx[filled]], atol=1e-6)
    # the shipped model (v8) gives human contact from its vertex head alone (vertex_merge "direct"): the estimate is
    # the head's per-vertex output, not the lifted masks
    assert est.localizer.net.has_vertex_branch and est.localizer.vertex_merge == "direct"
    out = est.localizer.predict(_rgb(test_data / "person_catching_ball.png"), "ball", est.human_assets, None,
                                observation=res.observation)
    assert out.human_vertex_merge == "direct"
    np.testing.assert_allclose(res.human_contact, out.human_vertex_contact, atol=1e-6)
    assert np.abs(res.human_contact - lifted).max() > 0.3


def test_observation_from_observe_gives_the_same_result(est, test_data):
    """The node runs perception (observe) on its own thread and hands the observation to estimate: the result
    must be the one estimate computes by itself (photo mode is deterministic)."""
    img = _rgb(test_data / "person_catching_ball.png")
    direct = est.estimate(img, "ball")
    obs = est.observe(img)
    assert obs.found and obs.timings["total_ms"] > 0
    staged = est.estimate(img, "ball", observation=obs)
    assert staged.status == direct.status == "ok"
    np.testing.assert_array_equal(staged.human_contact, direct.human_contact)
    np.testing.assert_array_equal(staged.object_contact, direct.object_contact)
    assert staged.observation is obs and staged.timings["perception"] == pytest.approx(obs.timings["total_ms"])
    no_person = est.observe(_rgb(test_data / "coffee_cup_no_person.png"))
    assert est.estimate(img, "ball", observation=no_person).status == "no_person"  # the observation decides
    with pytest.raises(PipelineError, match="HxWx3"):
        est.observe(np.zeros((64, 64), np.uint8))


def test_default_model_per_frame_graph_runs_on_cpu_thread_count(monkeypatch):
    """The per-frame graph runs on INTERACTVLM_CPU_THREADS (default 1) ORT threads: on 2 shared cores a second
    thread only adds spinning (21 vs 35 CPU-ms per frame measured)."""
    pytest.importorskip("onnxruntime")
    from interactvlm_ros.models.default import load_default_localizer

    monkeypatch.delenv("INTERACTVLM_CPU_THREADS", raising=False)
    loc = load_default_localizer(backend="onnxruntime")
    assert loc._engine.session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("INTERACTVLM_CPU_THREADS", "2")
    loc2 = load_default_localizer(backend="onnxruntime")
    assert loc2._engine.session.get_session_options().intra_op_num_threads == 2


def test_no_person(est, test_data):
    res = est.estimate(_rgb(test_data / "coffee_cup_no_person.png"), "cup")
    assert res.status == "no_person"
    assert res.human_contact is None and res.object_contact is None


@pytest.mark.parametrize(
    "image, words",
    [
        (np.zeros((64, 64), np.uint8), "HxWx3"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 3), np.uint8), "16x16"),  # mediapipe perception needs 16 px a side
        ("not an image", "numpy array"),
    ],
)
def test_bad_images_give_bad_input(est, image, words):
    res = est.estimate(image, "ball")
    assert res.status == "bad_input" and words in res.message


def test_bad_label_mesh_K_depth(est, test_data, tmp_path):
    img = _rgb(test_data / "person_catching_ball.png")
    assert est.estimate(img, "   ").status == "bad_input"
    res = est.estimate(img, "ball", object_mesh=str(tmp_path / "missing.obj"))
    assert res.status == "bad_input" and "missing.obj" in res.message
    junk = tmp_path / "junk.obj"
    junk.write_text("this is not a mesh\n")
    res = est.estimate(img, "ball", object_mesh=str(junk))
    assert res.status == "bad_input" and "junk.obj" in res.message
    K = np.eye(3)
    K[0, 0] = np.nan
    assert est.estimate(img, "ball", K=K).status == "bad_input"
    assert est.estimate(img, "ball", depth=np.zeros((2, 3, 4))).status == "bad_input"
    res = est.estimate(img, "ball", object_mask=np.ones((4, 4), bool))
    assert res.status == "bad_input" and "object_mask must be HxW like the image" in res.message
    assert est.estimate(img, "ball").status == "ok"  # still fine afterwards


def test_user_mesh(est, shared_dir, test_data):
    from interactvlm_ros.objects import load_mesh, normalize_mesh

    mesh_path = shared_dir / "data" / "objects" / "bottle.obj"
    res = est.estimate(_rgb(test_data / "person_catching_ball.png"), "bottle", object_mesh=str(mesh_path))
    assert res.status == "ok"
    mesh = load_mesh(mesh_path)
    np.testing.assert_allclose(res.object_vertices, normalize_mesh(np.asarray(mesh.vertices, np.float32)), atol=1e-6)
    np.testing.assert_array_equal(res.object_faces, mesh.faces)
    assert res.object_contact.shape == (len(res.object_vertices),)
    assert res.object_source == str(mesh_path)


def test_missing_model_is_a_clear_error():
    with pytest.raises(Exception) as ei:
        ContactEstimator(model="/nonexistent/model")
    assert "/nonexistent/model" in str(ei.value)
    assert isinstance(ei.value, (PipelineError, ValueError))


def test_bad_cold_start_option_fails_before_loading():
    with pytest.raises(PipelineError, match="reconstruct_cold_start='later': use inline or background"):
        ContactEstimator(model="/nonexistent/model", reconstruct=True, reconstruct_cold_start="later")


def test_result_contact_parts():
    r = ContactResult(status="ok", human_contact=np.array([0.9, 0.1, 0.6], np.float32),
                      part_ids=np.array([0, 1, 2]), part_names=["head", "torso", "left_hand"])
    assert r.contact_parts(0.5) == ["head", "left_hand"]


def test_direct_per_vertex_contact_is_merged_with_the_lifted_masks():
    """A localizer that also predicts per vertex (LocalizerOutput.human_vertex_contact, the default model's vertex
    head): the result is the per-vertex max of both; one of the wrong size is not used and that is a named fallback."""
    from interactvlm_ros.models.base import LocalizerOutput

    class Direct:
        name, predicts_human, predicts_object, uses_observation, asset_size = "direct", True, False, False, 256

        def __init__(self, size_delta=0):
            self.size_delta = size_delta

        def predict(self, image_rgb, object_label, human_assets, object_assets=None, observation=None):
            n = int(human_assets.num_vertices) + self.size_delta
            d = np.zeros(n, np.float32)
            d[:100] = 0.9
            logits = np.full((4, 64, 64), -20.0, np.float32)
            logits[0, 28:36, 28:36] = 20.0  # a patch on the front view
            return LocalizerOutput(logits, None, None, {}, {"status": "ok"}, human_vertex_contact=d)

    img = np.zeros((48, 48, 3), np.uint8)
    plain = ContactEstimator(localizer=Direct(size_delta=1), perception="none")
    masks_only = plain.estimate(img, "cup").human_contact
    assert any("direct per-vertex contact not used" in f for f in plain.fallbacks)
    assert masks_only[:100].max() < 0.5 and masks_only.max() > 0.5
    e = ContactEstimator(localizer=Direct(), perception="none")
    res = e.estimate(img, "cup")
    assert res.status == "ok" and not any("direct" in f for f in e.fallbacks)
    np.testing.assert_allclose(res.human_contact, np.maximum(masks_only, np.where(np.arange(len(masks_only)) < 100, 0.9, 0.0)),
                               atol=1e-6)


def test_direct_per_vertex_object_contact_follows_its_merge_rule():
    """The object side (LocalizerOutput.object_vertex_contact, the default model's object vertex head, v9+): under
    "direct" the result is the direct contact (the object masks are not lifted); under "max" the per-vertex max with
    the lifted masks; one of the wrong size for the object mesh is a named fallback to the lifted masks."""
    from interactvlm_ros.models.base import LocalizerOutput

    class DirectObject:
        name, predicts_human, predicts_object, uses_observation, asset_size = "direct-object", False, True, False, 128

        def __init__(self, rule, size_delta=0):
            self.rule, self.size_delta = rule, size_delta

        def predict(self, image_rgb, object_label, human_assets, object_assets=None, observation=None):
            n = int(object_assets.num_vertices) + self.size_delta
            d = np.zeros(n, np.float32)
            d[:20] = 0.8
            logits = np.full((4, 64, 64), -20.0, np.float32)
            logits[:, 24:40, 24:40] = 20.0  # the middle of every view
            return LocalizerOutput(None, logits, None, {}, {"status": "ok"}, object_vertex_contact=d,
                                   object_vertex_merge=self.rule)

    img = np.zeros((48, 48, 3), np.uint8)
    wrong = ContactEstimator(localizer=DirectObject("direct", size_delta=3), perception="none")
    masks_only = wrong.estimate(img, "cup").object_contact
    assert any("direct per-vertex contact not used (object)" in f for f in wrong.fallbacks)
    assert masks_only.max() > 0.5 and masks_only.min() < 0.5
    direct = np.where(np.arange(len(masks_only)) < 20, 0.8, 0.0).astype(np.float32)
    for rule, want in (("direct", direct), ("max", np.maximum(masks_only, direct))):
        e = ContactEstimator(localizer=DirectObject(rule), perception="none")
        res = e.estimate(img, "cup")
        assert res.status == "ok" and not e.fallbacks, e.fallbacks
        np.testing.assert_allclose(res.object_contact, want, atol=1e-6)


def test_all_fallbacks_gathers_the_parts_run_time_fallbacks():
    """Fallbacks the localizer (an unknown label) and the reconstructor (default intrinsics) take *while running* are
    in ``all_fallbacks`` (what the node's /diagnostics and the CLIs' JSON list), once each and in order; the
    estimator's own list does not hold them."""
    import types

    from interactvlm_ros.models.base import LocalizerOutput

    class Labelled:
        name, predicts_human, predicts_object, uses_observation, asset_size = "labelled", True, False, False, 128

        def __init__(self):
            self.fallbacks = []

        def predict(self, image_rgb, object_label, human_assets, object_assets=None, observation=None):
            text = f"label '{object_label}' unknown; generic-object input"
            if object_label != "cup" and text not in self.fallbacks:
                self.fallbacks.append(text)
            return LocalizerOutput(np.full((4, 64, 64), -20.0, np.float32), None, None, {}, {"status": "ok"})

    img = np.zeros((48, 48, 3), np.uint8)
    e = ContactEstimator(localizer=Labelled(), perception="none")
    assert e.estimate(img, "cup").status == "ok" and e.all_fallbacks() == e.fallbacks
    for _ in range(2):
        e.estimate(img, "zorp")
    e.reconstructor = types.SimpleNamespace(fallbacks=["no camera intrinsics: default fx"])
    got = e.all_fallbacks()
    assert got[:len(e.fallbacks)] == e.fallbacks
    assert got[len(e.fallbacks):] == ["label 'zorp' unknown; generic-object input", "no camera intrinsics: default fx"]
    assert not any("zorp" in f for f in e.fallbacks)


def test_prepare_computes_what_the_first_frame_would_pay_for(est):
    """``prepare`` (the node calls it before it reports running) builds the object's assets and warms the default
    model's caches — the label's MiniLM embedding (loading MiniLM: seconds) and the render embeddings of both sides —
    so that the first frame does not wait for them (measured: first frame 5.7 s → the steady 0.2 s)."""
    loc = est.localizer
    est.prepare("skateboard")  # a label no other test here uses
    state = est._objects[("label", "skateboard")]
    assert "skateboard" in loc._label_cache
    assert {("human", str(est.human_assets.key)), ("object", str(state.assets.key))} <= set(loc._emb_cache)
    assert str(state.assets.key) in loc._key_cache  # the object vertex head's keys
