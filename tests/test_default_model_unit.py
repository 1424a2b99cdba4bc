"""Default model: features, labels, network/ONNX, losses, metrics, training mechanics (no shipped weights needed)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interactvlm_ros.models.default.features import FeatureError, build_features  # noqa: E402
from interactvlm_ros.models.default.labels import LabelSpace  # noqa: E402


def _person(rng, scale=200.0, offset=(300.0, 200.0)):
    pose = np.zeros((33, 3), np.float32)
    pose[:, :2] = rng.uniform(-0.5, 0.5, (33, 2)) * scale + np.asarray(offset)
    pose[:, 2] = 1.0
    hands = np.zeros((2, 21, 3), np.float32)
    hands[1, :, :2] = pose[16, :2] + rng.normal(size=(21, 2)) * 5
    hands[1, :, 2] = 1.0
    return pose, hands


def test_features_are_invariant_to_person_position_and_scale():
    rng = np.random.default_rng(0)
    pose, hands = _person(rng)
    box = np.array([250, 150, 330, 260], np.float32)
    f1 = build_features(pose, hands, box, None)
    # same person twice as large, elsewhere in the image
    s, t = 2.0, np.array([-100.0, 50.0], np.float32)
    pose2, hands2 = pose.copy(), hands.copy()
    pose2[:, :2] = pose[:, :2] * s + t
    hands2[1, :, :2] = hands[1, :, :2] * s + t
    box2 = (box.reshape(2, 2) * s + t).reshape(4)
    f2 = build_features(pose2, hands2, box2, None)
    np.testing.assert_allclose(f1.pose, f2.pose, atol=1e-5)
    np.testing.assert_allclose(f1.hands, f2.hands, atol=1e-5)
    np.testing.assert_allclose(f1.obj, f2.obj, atol=1e-5)
    assert f1.obj[5] == 1.0 and f1.depth.sum() == 0.0
    # the missing left hand is all zeros, the present right hand has visibility 1
    assert np.all(f1.hands[0] == 0) and np.all(f1.hands[1, :, 2] == 1)
    assert np.abs(f1.pose[:, :2]).max() <= 0.5 + 1e-5  # box-normalised


def test_features_reject_bad_cues_with_named_errors():
    rng = np.random.default_rng(1)
    pose, hands = _person(rng)
    bad = pose.copy()
    bad[3, 0] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        build_features(bad, hands)
    with pytest.raises(FeatureError, match=r"shape"):
        build_features(pose[:20], hands)
    invisible = pose.copy()
    invisible[:, 2] = 0.0
    with pytest.raises(FeatureError, match="visible landmarks"):
        build_features(invisible, np.zeros((2, 21, 3), np.float32))


def test_landmarks_outside_the_image_are_not_visible_as_in_training():
    """The synthetic cues are visible only inside the image (synth.generator); mediapipe extrapolates a cut-off body with
    high visibility (knees 0.8 below a chest crop of the catching photo). Those landmarks were read as visible: the person
    box stretched past the image and the model saw legs that are not in it."""
    import types

    from interactvlm_ros.models.default.features import features_from_observation

    rng = np.random.default_rng(3)
    pose, hands = _person(rng, scale=200.0, offset=(300.0, 200.0))  # landmarks in x 200..400, y 100..300
    pose[25:29, 1] = [330.0, 335.0, 400.0, 410.0]  # knees and ankles below the 320-px-high image, visibility 1
    hands[1, :11, 1] = 325.0  # most of the right hand below the bottom edge: not a visible hand (training's rule)
    obs = types.SimpleNamespace(found=True, keypoints_2d=pose, hands_2d=hands, image_size=(320, 640), mask=None)
    f, _ = features_from_observation(obs)
    assert np.all(f.pose[25:29, 2] == 0.0) and np.all(f.pose[:25, 2] == 1.0)
    assert np.all(f.hands[1] == 0.0)
    inside = pose[pose[:, 1] < 320, :2]
    assert f.scale == pytest.approx(float((inside.max(0) - inside.min(0)).max()))  # the box covers what the image shows
    assert obs.keypoints_2d[25, 2] == 1.0  # the observation itself is left as perception gave it
    # an observation without image_size (a caller's own cues) is taken as it is
    del obs.image_size
    assert np.all(features_from_observation(obs)[0].pose[25:29, 2] == 1.0)


def test_label_space_projects_synonyms_and_flags_unknown_words():
    text = pytest.importorskip("interactvlm_ros.perception.text")
    enc = text.TextEncoder()
    cats = ["ball", "cup", "chair", "table", "hat", "box"]
    space = LabelSpace(cats, enc.encode(cats))
    for word, cat in (("basketball", "ball"), ("football", "ball"), ("mug", "cup"), ("coffee cup", "cup")):
        lf = space.project(enc.encode([word])[0])
        assert lf.known and lf.nearest == cat, (word, lf.nearest, lf.similarity)
        # the feature is (almost) the category embedding: synonyms give the same model input
        assert float(lf.feature @ space.embeddings[cats.index(cat)]) > 0.95
    unk = space.project(enc.encode(["flux capacitor"])[0])
    assert not unk.known and np.all(unk.feature == 0)


def test_plural_and_article_forms_keep_the_category_of_the_label():
    """MiniLM put 'the cans' (0.38), 'red cans' (0.41) and 'cameras' (0.44) below the known threshold while 'can' (1.0)
    and 'camera' (0.52) were known: a plural or an article switched the model to the generic-object input (the object
    library knew all three). An unknown label is now also tried without its article and with its last word singular;
    one that is unknown in every form stays unknown ('canes' is not 'can')."""
    pytest.importorskip("interactvlm_ros.perception.text")
    from interactvlm_ros.models.default.labels import label_variants
    from interactvlm_ros.models.default.predictor import DefaultLocalizer

    assert label_variants("the cans") == ["the can", "cans", "can"]
    assert label_variants("boxes") == ["box"] and label_variants("batteries") == ["battery"]
    assert "knife" in label_variants("knives") and label_variants("canes") == ["cane"] and label_variants("glass") == []
    loc = DefaultLocalizer(backend="torch")
    for label, form in (("the cans", "can"), ("red cans", "red can"), ("cameras", "camera")):
        lf = loc.label_feature(label)
        assert lf.known and lf.read_as == form, (label, lf)
        np.testing.assert_array_equal(lf.feature, loc.label_feature(form).feature)
    assert loc.label_feature("can").read_as == ""  # a known label is read as it is
    for label in ("canes", "flux capacitors"):
        assert not loc.label_feature(label).known, label


def test_network_shapes_and_onnx_matches_torch(tmp_path):
    from interactvlm_ros.models.default.export import export_onnx, example_inputs
    from interactvlm_ros.models.default.model import DefaultContactNet

    torch.manual_seed(0)
    net = DefaultContactNet(dim=32, depth=1, heads=2, render_size=32, mask_size=32, up_channels=8).eval()
    args = example_inputs(net, batch=3)
    h, o = net(*args)
    assert tuple(h.shape) == (3, 4, 32, 32) and tuple(o.shape) == (3, 4, 32, 32)
    emb = net.encode_renders(torch.rand(4, 4, 32, 32), "object")
    assert tuple(emb.shape) == (4, 32, 8, 8)
    path = export_onnx(net, tmp_path / "frame.onnx")  # raises when ORT and torch differ by > 1e-3
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()][:3] == ["pose", "hands", "label"]


def test_vertex_head_shapes_pca_start_and_onnx_parity(tmp_path):
    """The vertex head adds one output (per-vertex logits on the training template); its keys start from the
    principal components of the training contact; the ONNX graph gives the same three outputs as torch."""
    from interactvlm_ros.models.default.export import export_onnx, example_inputs
    from interactvlm_ros.models.default.model import DefaultContactNet

    torch.manual_seed(0)
    net = DefaultContactNet(dim=32, depth=1, heads=2, render_size=32, mask_size=32, up_channels=8, vertex_head=4,
                            vertices=50).eval()
    assert net.has_vertex_head and net.vertex_count == 50 and net.config["vertices"] == 50
    args = example_inputs(net, batch=3)
    h, o, v = net(*args)
    assert tuple(h.shape) == (3, 4, 32, 32) and tuple(v.shape) == (3, 50)
    # PCA start: contact made of 3 patterns -> the keys span them (explained variance 1), bias = logit(rate)
    rng = np.random.default_rng(0)
    pats = (rng.random((3, 50)) < 0.2).astype(np.float32)
    contact = torch.as_tensor(pats[rng.integers(0, 3, 40)])
    assert net.human_vertex_decoder.init_from_contacts(contact) == pytest.approx(1.0)
    key = net.human_vertex_decoder.key.detach().numpy()
    centred = contact.numpy() - contact.numpy().mean(0)
    resid = centred - centred @ key @ np.linalg.pinv(key)
    assert np.abs(resid).max() < 1e-4
    rate = np.clip(contact.numpy().mean(0), 1e-3, 0.5)
    np.testing.assert_allclose(net.human_vertex_decoder.bias.detach().numpy(), np.log(rate / (1 - rate)), atol=1e-5)
    path = export_onnx(net, tmp_path / "frame.onnx")  # raises when ORT and torch differ by > 1e-3
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["human_logits", "object_logits", "human_vertex_logits"]
    got = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})[2]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(*args)[2].numpy(), atol=1e-4)
    # a model without the head keeps its config and graph (older checkpoints load unchanged)
    plain = DefaultContactNet(dim=32, depth=1, heads=2, render_size=32, mask_size=32, up_channels=8)
    assert not plain.has_vertex_head and "vertex_head" not in plain.config and len(plain(*args)) == 2
    with pytest.raises(ValueError, match="vertices"):
        DefaultContactNet(dim=32, depth=1, heads=2, vertex_head=4)


def test_vertex_branch_reads_its_own_encoder_starts_as_the_main_one_and_exports(tmp_path):
    """vertex_branch: the head's query comes from a separate encoder; copied from the main encoder it gives exactly
    the shared-hseg output, once it differs the masks do not move; ONNX keeps the three outputs."""
    from interactvlm_ros.models.default.export import export_onnx, example_inputs
    from interactvlm_ros.models.default.model import DefaultContactNet

    torch.manual_seed(0)
    kw = dict(dim=32, depth=1, heads=2, render_size=32, mask_size=32, up_channels=8, vertex_head=4, vertices=50)
    shared = DefaultContactNet(**kw).eval()
    branch = DefaultContactNet(**kw, vertex_branch=True).eval()
    assert branch.has_vertex_branch and branch.config["vertex_branch"] and "vertex_branch" not in shared.config
    branch.load_state_dict(shared.state_dict(), strict=False)
    args = example_inputs(branch, batch=2)
    with torch.no_grad():
        ref = shared(*args)
        assert not torch.allclose(branch(*args)[2], ref[2])  # a fresh branch is not the main encoder
        branch.init_vertex_branch_from_main()
        out = branch(*args)
        torch.testing.assert_close(out[2], ref[2])
        for p in branch.vertex_transformer.parameters():
            p.add_(0.1)
        out2 = branch(*args)
    assert not torch.allclose(out2[2], ref[2])
    torch.testing.assert_close(out2[0], ref[0])
    torch.testing.assert_close(out2[1], ref[1])
    export_onnx(branch, tmp_path / "frame.onnx")  # raises when ORT and torch differ by > 1e-3
    with pytest.raises(ValueError, match="vertex_head"):
        DefaultContactNet(dim=32, depth=1, heads=2, vertex_branch=True)


def test_merge_direct_contact_rules_and_size_check():
    from interactvlm_ros.lift import LiftError, merge_direct_contact

    lifted = np.array([0.9, 0.1, 0.0, 0.6], np.float32)
    direct = np.array([0.2, 0.7, 0.0, 0.6], np.float32)
    np.testing.assert_array_equal(merge_direct_contact(lifted, direct), np.float32([0.9, 0.7, 0.0, 0.6]))
    np.testing.assert_array_equal(merge_direct_contact(torch.as_tensor(lifted), direct), np.float32([0.9, 0.7, 0.0, 0.6]))
    got = merge_direct_contact(lifted, direct, "direct")
    np.testing.assert_array_equal(got, direct)
    assert got is not direct
    with pytest.raises(LiftError, match="template"):
        merge_direct_contact(lifted, direct[:3], "direct")
    with pytest.raises(LiftError, match="unknown merge rule 'mean'"):
        merge_direct_contact(lifted, direct, "mean")


def test_losses_ignore_pixels_outside_the_silhouette_and_reward_correct_masks():
    from interactvlm_ros.training.losses import dice_loss, focal_bce

    target = torch.zeros(1, 4, 8, 8)
    target[:, :, 2:5, 2:5] = 1
    valid = torch.zeros_like(target)
    valid[:, :, :, :6] = 1
    good = (target * 2 - 1) * 8
    bad = -good
    assert focal_bce(good, target, valid) < 0.01 < focal_bce(bad, target, valid)
    assert dice_loss(good, target, valid) < 0.05 and dice_loss(bad, target, valid) > 0.9
    # wrong predictions outside the valid region cost nothing
    good_out = good.clone()
    good_out[:, :, :, 6:] = 10
    assert torch.isclose(focal_bce(good_out, target, valid), focal_bce(good, target, valid))


def test_geodesic_mesh_needs_no_cache_folder(tmp_path, monkeypatch, caplog):
    """GeodesicMesh (interactvlm eval) created its cache folder even with cache=False, and a read-only or missing
    home raised out of it: now cache=False never touches it and an unusable folder is a named fallback."""
    from interactvlm_ros.evaluation.metrics import GeodesicMesh

    blocker = tmp_path / "file"  # a cache folder that cannot be created (root ignores permissions)
    blocker.write_text("")
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(blocker / "cache"))
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float64)
    faces = np.array([[0, 1, 2]])
    assert GeodesicMesh(verts, faces, cache=False).num_vertices == 3
    with caplog.at_level("WARNING", logger="interactvlm_ros.evaluation.metrics"):
        g = GeodesicMesh(verts, faces)
    np.testing.assert_allclose(g.distance_to(np.array([0])), [0, 1, 1])
    assert any("fallback: geodesic graph cache" in r.getMessage() and "INTERACTVLM_CACHE_DIR" in r.getMessage()
               for r in caplog.records)


def test_contact_metrics_numbers():
    from interactvlm_ros.evaluation.metrics import GeodesicMesh, auc, prf, sim

    gt = np.array([1, 1, 0, 0, 0], np.float32)
    pred = np.array([0.9, 0.2, 0.7, 0.1, 0.0], np.float32)
    p, r, f = prf(pred, gt)
    assert p == pytest.approx(0.5) and r == pytest.approx(0.5) and f == pytest.approx(0.5)
    assert sim(gt, gt) == pytest.approx(1.0) and sim(pred, gt) < 1.0
    assert auc(pred, gt) == pytest.approx(5 / 6)  # pairs (pos,neg) ranked correctly: 5 of 6
    assert auc(pred, np.ones(5)) is None
    # a strip of unit squares along x: vertex k at x = k (two rows), geodesic = |Δx| along the bottom row
    n = 6
    verts = np.array([[x, y, 0] for y in (0, 1) for x in range(n)], np.float64)
    faces = []
    for x in range(n - 1):
        a, b, c, d = x, x + 1, n + x, n + x + 1
        faces += [[a, b, d], [a, d, c]]
    g = GeodesicMesh(verts, np.asarray(faces), cache=False)
    dist = g.distance_to(np.array([0]))
    np.testing.assert_allclose(dist[:n], np.arange(n), atol=1e-9)
    gt_v = np.zeros(2 * n)
    gt_v[0] = 1
    pred_v = np.zeros(2 * n)
    pred_v[3] = 1.0
    assert g.error_cm(pred_v, gt_v) == pytest.approx(300.0)  # 3 m away
    assert g.error_cm(gt_v, gt_v) == 0.0


def test_geodesic_reaches_a_separate_mesh_component_through_its_nearest_vertex(tmp_path, monkeypatch):
    """Anny's mouth interior and eyes are separate components: a contact vertex there was unreachable and read as
    the farthest body vertex (a bottle at the lips with the mouth interior predicted: 43 cm instead of ~1 cm)."""
    from interactvlm_ros.evaluation.metrics import GeodesicMesh

    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path))
    n = 6
    verts = [[x, y, 0] for y in (0, 1) for x in range(n)]
    faces = []
    for x in range(n - 1):
        a, b, c, d = x, x + 1, n + x, n + x + 1
        faces += [[a, b, d], [a, d, c]]
    verts += [[1, -0.2, 0], [1.2, -0.2, 0], [1, -0.4, 0]]  # an island 0.2 m below vertex 1 (an "eye")
    faces += [[2 * n, 2 * n + 1, 2 * n + 2]]
    for cache in (False, True, True):  # built, then written to and read from the cache
        g = GeodesicMesh(np.asarray(verts, np.float64), np.asarray(faces), cache=cache)
        gt_v = np.zeros(2 * n + 3)
        gt_v[0] = 1
        pred_v = np.zeros(2 * n + 3)
        pred_v[2 * n] = 1.0
        assert g.error_cm(pred_v, gt_v) == pytest.approx(120.0)  # 1 m along the strip + the 0.2 m gap (was 541)
        np.testing.assert_allclose(g.distance_to(np.array([0]))[:n], np.arange(n), atol=1e-9)  # body unchanged


def test_bootstrap_interval_brackets_the_mean_narrows_with_samples_and_reaches_the_table():
    from interactvlm_ros.evaluation.evaluate import format_table
    from interactvlm_ros.evaluation.metrics import bootstrap_ci, summarize

    rng = np.random.default_rng(3)
    small, large = rng.random(40), rng.random(1000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi and (lo, hi) == bootstrap_ci(small)  # seeded: reproducible
    # the width of a mean's interval shrinks like 1/sqrt(n): 25x the samples -> about a fifth
    lo2, hi2 = bootstrap_ci(large)
    assert 0.12 < (hi2 - lo2) / (hi - lo) < 0.3
    assert bootstrap_ci([0.5]) is None and bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    rows = [{"f1": float(v), "precision": None} for v in small]
    out = summarize(rows, ["f1", "precision"], ci_keys=("f1",))
    assert out["f1_ci95"] == pytest.approx([lo, hi]) and out["precision"] is None and "precision_ci95" not in out
    h = {"f1": 0.6, "precision": 0.5, "recall": 0.7, "geo_cm": 8.0, "n": 40, "f1_ci95": [0.55, 0.65]}
    o = {"f1": 0.4, "precision": 0.4, "recall": 0.5, "sim": 0.3, "auc": 0.9, "n": 40}
    table = format_table({"per_category": {"cup": {"human": {**h, "f1_ci95": None}, "object": o}},
                          "overall": {"human": h, "object": o}})
    assert "| **overall** | 40 | 0.600 [0.550, 0.650] |" in table and "| cup | 40 | 0.600 |" in table


# ----------------------------------------------------------------------------- training mechanics
class _Assets:
    """ViewAssets-like test double (renders + maps + camera codes)."""

    def __init__(self, key, size, seed):
        rng = np.random.default_rng(seed)
        self.renders = rng.integers(0, 255, (4, size, size, 3), dtype=np.uint8)
        self.vertex_ids = np.zeros((4, size, size, 3), np.int64)
        self.cam_params = rng.random((4, 5)).astype(np.float32)
        self.key = key
        self.num_vertices = 10


class _Provider:
    def __init__(self, size):
        self.size = size

    def human(self):
        return _Assets("human", self.size, 0)

    def object(self, object_id, category):
        return _Assets(object_id, self.size, zlib.crc32(str(object_id).encode()) % 100)  # hash() varies per process


def _tiny_dataset(root: Path, n=32, R=16, nv=10, no=10):
    """Samples whose GT masks depend on the cues: right hand raised -> human views 0/1 top-left block on;
    label 'cup' vs 'ball' -> different object blocks."""
    rng = np.random.default_rng(0)
    (root / "samples").mkdir(parents=True)
    for i in range(n):
        pose, hands = _person(rng)
        raised = i % 2 == 0
        if raised:
            pose[16, 1] -= 400  # right wrist far above the head
            hands[1, :, 1] -= 400
        label = "cup" if i % 3 else "ball"
        hm = np.zeros((4, R, R), np.uint8)
        hm[:2, : R // 2, : R // 2] = 1 if raised else 0
        hm[2:, R // 2:, R // 2:] = 0 if raised else 1
        om = np.zeros((4, R, R), np.uint8)
        if label == "cup":
            om[:, :4, :] = 1
        else:
            om[:, :, :4] = 1
        np.savez(root / "samples" / f"{i:06d}.npz", landmarks_2d=pose, hand_landmarks_2d=hands,
                 object_bbox=np.array([280, 100, 330, 150], np.float32), human_view_masks=hm, object_view_masks=om,
                 human_contact=(np.arange(nv) < nv // 4).astype(np.float32) if raised else np.zeros(nv, np.float32),
                 object_contact=(np.arange(no) < (no // 3 if label == "cup" else no // 2)).astype(np.float32),
                 object_label=np.asarray(label), object_category=np.asarray(label), object_id=np.asarray(label),
                 interaction=np.asarray("hold_one_hand"))
    meta = {"n": n, "seed": 0, "mask_resolution": R, "splits": {"train": {"index_range": [0, 24]},
                                                                    "val": {"index_range": [24, n]}}}
    (root / "meta.json").write_text(json.dumps(meta))


def _cfg(tmp_path, out, steps):
    from interactvlm_ros.training.train import load_config

    return load_config(None, {
        "data": str(tmp_path / "data"), "out": str(tmp_path / out), "steps": steps, "batch_size": 8, "lr": 1e-3,
        "warmup": 2, "checkpoint_every": 50, "log_every": 5, "eval_every": 0, "export_onnx": out == "a",
        "val_split": "train", "val_limit": 24,  # fitting the training cues; generalisation is measured by `eval`
        "model": {"dim": 32, "depth": 1, "heads": 2, "render_size": 16, "up_channels": 8},
        "augment": {"drop_hand": 0.0, "label_dropout": 0.0}, "remask": False,
    })


def test_training_learns_is_seeded_and_resumable(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from interactvlm_ros.models.default.predictor import DefaultLocalizer
    from interactvlm_ros.training.train import train

    _tiny_dataset(tmp_path / "data")
    enc = text.TextEncoder()
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:  # the run uses cfg threads (1) and gives the caller's count back
        m = train(_cfg(tmp_path, "a", 320), text_encoder=enc, provider=_Provider(16))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    assert m["human_mask_f1"] > 0.8 and m["object_mask_f1"] > 0.8, m
    for f in ("model.pt", "frame.onnx", "config.yaml", "metrics.json", "last.pt"):
        assert (tmp_path / "a" / f).is_file(), f

    # resumable + seeded: 100 steps, then resume to 320 == 320 steps in one go
    cfg_b = _cfg(tmp_path, "b", 320)
    assert train(cfg_b, text_encoder=enc, provider=_Provider(16), stop_at=100) is None  # "interrupted"
    assert not (tmp_path / "b" / "model.pt").exists()
    train(cfg_b, resume=True, text_encoder=enc, provider=_Provider(16))
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)

    # the trained folder loads as a localizer (torch and onnxruntime agree)
    lt = DefaultLocalizer(weights=tmp_path / "a", backend="torch", text_encoder=enc)
    lo = DefaultLocalizer(weights=tmp_path / "a", backend="onnxruntime", text_encoder=enc)
    assert lt.backend == "torch" and lo.backend == "onnxruntime"
    assert lt.labels.categories == ["ball", "cup"]
    from types import SimpleNamespace

    pose, hands = _person(np.random.default_rng(5))
    obs = SimpleNamespace(found=True, keypoints_2d=pose, hands_2d=hands, mask=None)
    img = np.zeros((64, 64, 3), np.uint8)
    a = lt.predict(img, "mug", _Provider(16).human(), _Provider(16).object("cup", "cup"), observation=obs)
    b = lo.predict(img, "mug", _Provider(16).human(), _Provider(16).object("cup", "cup"), observation=obs)
    assert a.human_logits.shape == (4, 16, 16) and a.extras["label_nearest"] == "cup"
    np.testing.assert_allclose(a.human_logits, b.human_logits, atol=1e-3)
    np.testing.assert_allclose(a.object_logits, b.object_logits, atol=1e-3)
    # the label decides the object mask: 'mug' (-> cup) paints the top rows, 'basketball' (-> ball) the left columns
    c = lt.predict(img, "basketball", _Provider(16).human(), _Provider(16).object("ball", "ball"), observation=obs)
    assert a.object_logits[:, :4, 8:].mean() > a.object_logits[:, 8:, :4].mean()
    assert c.object_logits[:, 8:, :4].mean() > c.object_logits[:, :4, 8:].mean()
    # a weights folder without frame.onnx (e.g. a checkout where *.onnx is git-ignored): exported once into the
    # cache, reported as a fallback, then reused silently
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "no_onnx")
    (tmp_path / "no_onnx" / "frame.onnx").unlink()
    l1 = DefaultLocalizer(weights=tmp_path / "no_onnx", backend="onnxruntime", text_encoder=enc)
    assert l1.backend == "onnxruntime" and any("exporting" in f for f in l1.fallbacks)
    l2 = DefaultLocalizer(weights=tmp_path / "no_onnx", backend="onnxruntime", text_encoder=enc)
    assert l2.fallbacks == []
    d = l2.predict(img, "mug", _Provider(16).human(), _Provider(16).object("cup", "cup"), observation=obs)
    np.testing.assert_allclose(a.human_logits, d.human_logits, atol=1e-3)
    # no person -> no logits, clearly flagged
    none = lt.predict(img, "cup", _Provider(16).human(), None, observation=SimpleNamespace(found=False))
    assert none.human_logits is None and none.extras["status"] == "no_person"


def test_weights_without_onnx_and_no_cache_folder_run_in_torch_as_a_named_fallback(tmp_path, monkeypatch):
    """A weights folder without frame.onnx is exported into paths.cache_dir("default_model"); with a read-only or
    missing home that folder raised out of DefaultLocalizer() (ContactEstimator could not start) instead of the
    named torch fallback a failed export takes; an explicit onnxruntime still refuses, naming the export command."""
    import shutil

    from interactvlm_ros.models.default.predictor import WEIGHTS_DIR, DefaultLocalizer, DefaultModelError

    weights = tmp_path / "no_onnx"
    weights.mkdir()
    for f in ("model.pt", "config.yaml"):
        shutil.copy(WEIGHTS_DIR / f, weights / f)
    blocker = tmp_path / "file"  # a cache folder that cannot be created (root ignores permissions)
    blocker.write_text("")
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(blocker / "cache"))
    lo = DefaultLocalizer(weights=weights, backend="auto", text_encoder=object())
    assert lo.backend == "torch"
    assert any("no cache folder" in f and "INTERACTVLM_CACHE_DIR" in f for f in lo.fallbacks)
    with pytest.raises(DefaultModelError, match="frame.onnx missing"):
        DefaultLocalizer(weights=weights, backend="onnxruntime", text_encoder=object())


def test_lifted_loss_trains_masks_through_the_deployed_lifting(tmp_path, monkeypatch):
    """The per-vertex loss goes through lift.Lifter (soft aggregation, fused upsampling): gradient steps on
    low-res logits alone reach the per-vertex target on the vertices the views see."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    import trimesh

    from interactvlm_ros import assets as A
    from interactvlm_ros.lift import Lifter
    from interactvlm_ros.training.losses import lifted_loss

    m = trimesh.creation.icosphere(2)
    va = A.build_view_assets(np.asarray(m.vertices, np.float32), np.asarray(m.faces), "object", 64, colors="xyz")
    lifter = Lifter(va, mode="human")
    target = torch.as_tensor(np.asarray(m.vertices)[:, 0] > 0.3, dtype=torch.float32)[None]
    seen = torch.as_tensor(lifter.views_per_vertex() > 0)
    x = torch.zeros(1, 4, 16, 16, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.5)
    first = None
    for _ in range(150):
        loss, parts = lifted_loss(lifter(x), target, seen)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = lifter(x.detach())[0] > 0.5
    t = target[0] > 0.5
    assert loss.item() < 0.5 * first
    assert set(parts) == {"bce", "dice"}
    tp = (pred & t & seen).sum().item()
    f1 = 2 * tp / ((pred & seen).sum().item() + (t & seen).sum().item())
    assert f1 > 0.85, f1
    assert not pred[~seen].any()  # unseen vertices stay 0


def test_training_with_lifted_loss_logs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    import trimesh

    from interactvlm_ros import assets as A
    from interactvlm_ros.training.train import train

    sphere = trimesh.creation.icosphere(1)  # 42 vertices

    class RealHuman(_Provider):
        def human(self):
            return A.build_view_assets(np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces), "object",
                                       self.size, colors="xyz")

        def object(self, object_id, category):
            return self.human()

    _tiny_dataset(tmp_path / "data", nv=len(sphere.vertices), no=len(sphere.vertices))
    cfg = _cfg(tmp_path, "l", 80)
    cfg["loss"].update(lifted=1.0, lifted_object=1.0, focal=0.0, dice=0.0)  # only the lifted losses train
    cfg["export_onnx"] = False
    train(cfg, text_encoder=text.TextEncoder(), provider=RealHuman(16))
    log = [json.loads(line) for line in (tmp_path / "l" / "log.jsonl").read_text().splitlines()]
    recs = [r for r in log if "loss" in r]
    assert all("human_lifted_bce" in r and "human_lifted_dice" in r for r in recs)
    for side in ("human", "object"):
        dice = [r[f"{side}_lifted_dice"] for r in recs]
        assert np.mean(dice[-3:]) < 0.7 * np.mean(dice[:3]), (side, dice)


def test_train_lifter_equals_the_deployed_lifter_in_value_and_gradient(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    import trimesh

    from interactvlm_ros import assets as A
    from interactvlm_ros.lift import Lifter
    from interactvlm_ros.training.lifting import TrainLifter

    m = trimesh.creation.icosphere(2)
    va = A.build_view_assets(np.asarray(m.vertices, np.float32), np.asarray(m.faces), "object", 64, colors="xyz")
    for size in (16, 64):  # low-res logits (fused upsampling) and full-res
        ref, fast = Lifter(va, mode="human"), TrainLifter(va, size)
        x1 = torch.randn(3, 4, size, size, generator=torch.Generator().manual_seed(size), requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        c1, c2 = ref(x1), fast(x2)
        torch.testing.assert_close(c2, c1, rtol=0, atol=1e-6)
        g = torch.randn_like(c1)
        c1.backward(g)
        c2.backward(g)
        torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-7)
        assert torch.equal(fast.seen, torch.as_tensor(ref.views_per_vertex() > 0))
    with pytest.raises(ValueError, match="expected"):
        fast(torch.zeros(1, 4, 8, 8))


def _base_run(tmp_path, nv, provider, text):
    """The tiny dataset on an nv-vertex mesh and a 5-step run 'base' whose last.pt starts the vertex-head runs;
    returns the text encoder."""
    from interactvlm_ros.training.train import train

    _tiny_dataset(tmp_path / "data", nv=nv, no=nv)
    enc = text.TextEncoder()
    base = _cfg(tmp_path, "base", 5)
    base["export_onnx"] = False
    train(base, text_encoder=enc, provider=provider)
    return enc


def _sphere(with_body: bool = False):
    """(provider class on a 42-vertex icosphere — human renders, object assets and object mesh of it —, vertices,
    faces); ``with_body``: it also names the sphere as the body (the evaluation's asset provider)."""
    from types import SimpleNamespace

    import trimesh

    from interactvlm_ros import assets as A

    sphere = trimesh.creation.icosphere(1)
    sv, sf = np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int64)

    class Sphere(_Provider):
        if with_body:
            body = SimpleNamespace(template_vertices=sv, faces=sf, source="test:sphere", part_ids=None, part_names=None)

        def human(self):
            return A.build_view_assets(sv, sf, "object", self.size, colors="xyz")

        def object(self, object_id, category):
            return A.object_assets((sv, sf), self.size)

        def object_mesh(self, object_id, category):
            return SimpleNamespace(template_vertices=sv, faces=sf)

    return Sphere, sv, sf


def test_vertex_head_trains_and_the_localizer_returns_its_per_vertex_contact(tmp_path, monkeypatch):
    """Training with loss.vertex (and init_from another run's weights); the packaged folder gives
    LocalizerOutput.human_vertex_contact on the template, the same from torch and onnxruntime, and it has learned
    the cue: the raised right hand -> contact on the first quarter of the vertices, else none."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from types import SimpleNamespace

    import trimesh

    from interactvlm_ros import assets as A
    from interactvlm_ros.models.default.predictor import DefaultLocalizer
    from interactvlm_ros.training.train import ConfigError, train

    sphere = trimesh.creation.icosphere(1)  # 42 vertices

    class SphereHuman(_Provider):
        body = SimpleNamespace(template_vertices=np.asarray(sphere.vertices, np.float32), faces=np.asarray(sphere.faces),
                               source="test:sphere", part_ids=None, part_names=None)

        def human(self):
            return A.build_view_assets(np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces), "object",
                                       self.size, colors="xyz")

        def object(self, object_id, category):
            return self.human()

    nv = len(sphere.vertices)
    enc = _base_run(tmp_path, nv, SphereHuman(16), text)
    cfg = _cfg(tmp_path, "a", 120)  # export_onnx: True
    cfg["model"]["vertex_head"] = 4
    cfg["loss"].update(vertex=1.0)
    cfg["vertex_lr_scale"] = 3.0
    cfg["init_from"] = str(tmp_path / "base" / "last.pt")
    train(cfg, text_encoder=enc, provider=SphereHuman(16))
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    recs = [r for r in log if "loss" in r]
    dice = [r["human_vertex_dice"] for r in recs]
    assert np.mean(dice[-3:]) < 0.5 * np.mean(dice[:3]), dice
    w0 = torch.load(tmp_path / "base" / "last.pt", weights_only=False)["model"]
    assert not any(k.startswith("human_vertex_decoder") for k in w0)  # the head started fresh (PCA), the rest from base

    lt = DefaultLocalizer(weights=tmp_path / "a", backend="torch", text_encoder=enc)
    lo = DefaultLocalizer(weights=tmp_path / "a", backend="onnxruntime", text_encoder=enc)
    assert lt.describe()["vertex_head"] and lo.backend == "onnxruntime" and lt.net.vertex_count == nv
    rng = np.random.default_rng(7)
    img = np.zeros((64, 64, 3), np.uint8)
    first = np.arange(nv) < nv // 4
    for raised in (True, False):
        pose, hands = _person(rng)
        if raised:
            pose[16, 1] -= 400
            hands[1, :, 1] -= 400
        obs = SimpleNamespace(found=True, keypoints_2d=pose, hands_2d=hands, mask=None)
        human = SphereHuman(16).human()
        a = lt.predict(img, "cup", human, None, observation=obs)
        b = lo.predict(img, "cup", human, None, observation=obs)
        assert a.human_vertex_contact.shape == (nv,) and a.human_vertex_contact.dtype == np.float32
        np.testing.assert_allclose(a.human_vertex_contact, b.human_vertex_contact, atol=1e-3)
        if raised:
            assert a.human_vertex_contact[first].min() > 0.5 and a.human_vertex_contact[~first].max() < 0.5
        else:
            assert a.human_vertex_contact.max() < 0.5
    # assets of another mesh: no direct contact, a named fallback (never a wrong-size array)
    other = trimesh.creation.icosphere(2)
    oa = A.build_view_assets(np.asarray(other.vertices, np.float32), np.asarray(other.faces), "object", 16, colors="xyz")
    c = lt.predict(img, "cup", oa, None, observation=obs)
    assert c.human_vertex_contact is None and any("vertex head off" in f for f in lt.fallbacks)
    # train_only: vertex — a separate branch (started from a's encoder) learns the same cue while every other
    # weight stays a's; it runs without renders or mask decoders
    cfg_b = _cfg(tmp_path, "b", 60)
    cfg_b["model"].update(vertex_head=4, vertex_branch=True)
    cfg_b["loss"].update(vertex=1.0)
    cfg_b.update(train_only="vertex", init_from=str(tmp_path / "a" / "last.pt"), export_onnx=False)
    train(cfg_b, text_encoder=enc, provider=SphereHuman(16))
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    from interactvlm_ros.training.train import VERTEX_PATH

    branch_keys = [k for k in wb if k.startswith(VERTEX_PATH)]
    assert all(torch.equal(wa[k], wb[k]) for k in wa if k not in branch_keys)  # masks untouched
    assert any(not torch.equal(wa[k.replace("vertex_", "", 1)], wb[k]) for k in branch_keys if k.startswith("vertex_"))
    lb = DefaultLocalizer(weights=tmp_path / "b", backend="torch", text_encoder=enc)
    for raised in (True, False):
        pose, hands = _person(rng)
        if raised:
            pose[16, 1] -= 400
            hands[1, :, 1] -= 400
        c = lb.predict(img, "cup", SphereHuman(16).human(), None, observation=SimpleNamespace(
            found=True, keypoints_2d=pose, hands_2d=hands, mask=None)).human_vertex_contact
        assert (c[first].min() > 0.5 and c[~first].max() < 0.5) if raised else c.max() < 0.5
    from interactvlm_ros.training.train import load_config

    bad_only = _cfg(tmp_path, "bad_only", 5)
    bad_only["train_only"] = "vertex"  # no branch: refused before any data is read
    with pytest.raises(ConfigError, match="vertex_branch"):
        train(bad_only, text_encoder=enc, provider=SphereHuman(16))
    for over, msg in (({"vertex_merge": "mean"}, "vertex_merge"), ({"train_only": "masks"}, "train_only"),
                      ({"model": {"vertex_branch": True}}, "vertex_head")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, {"data": "d", "out": "o", **over})
    # init_from errors name the file
    bad = _cfg(tmp_path, "bad", 5)
    bad["init_from"] = str(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="nope.pt"):
        train(bad, text_encoder=enc, provider=SphereHuman(16))


def test_object_vertex_head_predicts_on_any_mesh_from_its_geometry():
    """GeometryVertexDecoder: keys from the normalised geometry (a moved/scaled copy of a mesh gets the same keys),
    one key row per vertex of whatever mesh, logits = query·key / sqrt(rank) + bias; the per-frame graph outputs the
    query only (the keys are per mesh) and exports to ONNX with it."""
    import trimesh

    from interactvlm_ros.models.default.model import DefaultContactNet, object_geometry
    from interactvlm_ros.models.default.predictor import OBJECT_QUERY_OUTPUT, frame_outputs

    torch.manual_seed(0)
    net = DefaultContactNet(dim=32, depth=1, heads=2, render_size=16, mask_size=16, up_channels=8,
                            object_vertex_head=6, object_vertex_freqs=3).eval()
    assert net.has_object_vertex_head and net.config["object_vertex_head"] == 6
    assert frame_outputs(net)[-1] == OBJECT_QUERY_OUTPUT
    box = trimesh.creation.box((0.2, 0.1, 0.05))
    g = object_geometry(box.vertices, box.faces)
    assert g.shape == (8, 6) and g.dtype == np.float32
    np.testing.assert_allclose(np.abs(g[:, :3]).max(0), [0.5, 0.25, 0.125], atol=1e-6)  # longest side -> 1
    np.testing.assert_allclose(np.linalg.norm(g[:, 3:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(object_geometry(box.vertices * 3.0 + [1, 2, 3], box.faces), g, atol=1e-6)
    sphere = trimesh.creation.icosphere(2)
    with torch.no_grad():
        for mesh in (box, sphere):
            keys = net.object_vertex_keys(torch.from_numpy(object_geometry(mesh.vertices, mesh.faces)))
            assert keys.shape == (len(mesh.vertices), 7)
        q = torch.randn(2, 6)
        lg = net.object_vertex_decoder.logits(q, keys)
        torch.testing.assert_close(lg, q @ keys[:, :6].T / 6 ** 0.5 + keys[:, 6])
        out = net(*[a[:1] if i < 5 else a for i, a in enumerate(_example(net))])
    assert len(out) == 3 and out[2].shape == (1, 6)


def _example(net):
    from interactvlm_ros.models.default.export import example_inputs

    return example_inputs(net)


def test_object_vertex_head_trains_alone_and_the_localizer_returns_object_contact(tmp_path, monkeypatch):
    """train_only: object_vertex trains the object branch + head on loss.object_vertex (every other weight stays the
    init_from run's); the packaged run gives LocalizerOutput.object_vertex_contact on the object assets' own mesh,
    the same from torch and onnxruntime, and it has learned the cue (label 'cup' -> contact on the first third of
    the vertices, 'ball' -> the first half); assets without their mesh are a named fallback (no direct contact)."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from types import SimpleNamespace

    from interactvlm_ros import assets as A
    from interactvlm_ros.models.default.predictor import DefaultLocalizer
    from interactvlm_ros.training.train import OBJECT_VERTEX_PATH, ConfigError, load_config, train

    SphereProvider, sv, sf = _sphere()  # 42 vertices
    nv = len(sv)
    enc = _base_run(tmp_path, nv, SphereProvider(16), text)
    cfg = _cfg(tmp_path, "a", 150)  # export_onnx: True
    cfg["model"].update(object_vertex_head=8)
    cfg["loss"].update(object_vertex=1.0)
    cfg.update(train_only="object_vertex", object_vertex_merge="direct", vertex_lr_scale=3.0, lr=3e-3,
               init_from=str(tmp_path / "base" / "last.pt"))
    metrics = train(cfg, text_encoder=enc, provider=SphereProvider(16))
    assert metrics["object_vertex_f1"] > 0.9, metrics
    recs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    dice = [r["object_vertex_dice"] for r in recs if "loss" in r]
    assert np.mean(dice[-3:]) < 0.5 * np.mean(dice[:3]), dice
    w0 = torch.load(tmp_path / "base" / "last.pt", weights_only=False)["model"]
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    branch = [k for k in wa if k.startswith(OBJECT_VERTEX_PATH)]
    assert branch and not any(k in w0 for k in branch)
    assert all(torch.equal(w0[k], wa[k]) for k in w0)  # masks (and everything else) untouched

    lt = DefaultLocalizer(weights=tmp_path / "a", backend="torch", text_encoder=enc)
    lo = DefaultLocalizer(weights=tmp_path / "a", backend="onnxruntime", text_encoder=enc)
    d = lt.describe()
    assert d["object_vertex_head"] and d["object_vertex_merge"] == "direct" and lo.backend == "onnxruntime"
    rng = np.random.default_rng(7)
    img = np.zeros((64, 64, 3), np.uint8)
    pose, hands = _person(rng)
    obs = SimpleNamespace(found=True, keypoints_2d=pose, hands_2d=hands, mask=None)
    human = SphereProvider(16).human()
    big = A.object_assets((sv * 5.0, sf), 16)  # the same shape at another scale: same normalised mesh
    for label, n_contact in (("cup", nv // 3), ("ball", nv // 2)):
        a = lt.predict(img, label, human, big, observation=obs)
        b = lo.predict(img, label, human, big, observation=obs)
        assert a.object_vertex_merge == "direct"
        c = a.object_vertex_contact
        assert c.shape == (nv,) and c.dtype == np.float32
        np.testing.assert_allclose(c, b.object_vertex_contact, atol=1e-3)
        first = np.arange(nv) < n_contact
        assert c[first].mean() > 0.7 and c[~first].mean() < 0.3, (label, c)
    # a run folder is a model spec of its own (CLI --model DIR, the node's `model` parameter)
    from interactvlm_ros.models.base import LocalizerError
    from interactvlm_ros.models.registry import load_localizer

    run = load_localizer(str(tmp_path / "a"), backend="torch", text_encoder=enc)
    assert isinstance(run, DefaultLocalizer) and Path(run.weights_dir) == tmp_path / "a"
    with pytest.raises(LocalizerError, match="model.pt"):
        load_localizer(str(tmp_path / "data"))
    # `model: ~/...` in a params file: no shell expands it there
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Path(load_localizer("~/a", backend="torch", text_encoder=enc).weights_dir) == tmp_path / "a"
    bare = SimpleNamespace(renders=big.renders, cam_params=big.cam_params, key="no-mesh", num_vertices=nv,
                           vertex_ids=big.vertex_ids)
    out = lt.predict(img, "cup", human, bare, observation=obs)
    assert out.object_vertex_contact is None and any("object vertex head off" in f for f in lt.fallbacks)
    for over, msg in (({"train_only": "object_vertex"}, "object_vertex_head"),
                      ({"loss": {"object_vertex": 1.0}}, "object_vertex_head"),
                      ({"object_vertex_merge": "mean"}, "object_vertex_merge"),
                      ({"train_only": "object_vertex", "model": {"object_vertex_head": 4},
                        "loss": {"object_vertex": 1.0, "vertex": 1.0}}, "loss.vertex")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, {"data": "d", "out": "o", **over})


def test_every_shipped_training_config_passes_the_config_check():
    """The configs in training/configs/ are the documented reproduction commands' inputs: a typo must fail here,
    not half an hour into a retrain."""
    from interactvlm_ros.training import train
    from interactvlm_ros.training.train import check_config, load_config

    configs = sorted((Path(train.__file__).parent / "configs").glob("*.yaml"))
    assert len(configs) >= 9
    for f in configs:
        check_config(load_config(f, {"data": "/data", "out": "/out"}))


def test_label_cache_and_label_fallbacks_stay_bounded_with_many_labels():
    """A node fed thousands of distinct labels over hours: the label cache (unbounded, unlike the render/key caches)
    and the fallback list (one 'unlike every trained category' entry per unknown label) now stay bounded; the latest
    labels are listed, the earlier ones counted. Shipped checkpoint (its label space), a text encoder giving each
    label its own random (so unknown) embedding."""
    from interactvlm_ros.models.default.predictor import DefaultLocalizer
    from interactvlm_ros.pipeline import Fallbacks

    class _Text:
        def encode(self, keys):
            return [np.random.default_rng(zlib.crc32(k.encode())).normal(size=384).astype(np.float32) for k in keys]

    loc = DefaultLocalizer(backend="torch", text_encoder=_Text())
    for i in range(300):
        assert not loc.label_feature(f"gadget number {i}").known
    assert len(loc._label_cache) <= 64 and "gadget number 299" in loc._label_cache
    assert len(loc.fallbacks) == Fallbacks.LABEL_KEPT + 1 and all(isinstance(f, str) for f in loc.fallbacks)
    assert "'gadget number 299'" in loc.fallbacks[-2] and "'gadget number 0'" not in " ".join(loc.fallbacks)
    assert loc.fallbacks[-1].startswith(f"… {300 - Fallbacks.LABEL_KEPT} earlier label fallbacks not listed")
    assert loc.describe()["fallbacks"] == list(loc.fallbacks)


# ----------------------------------------------------------------------------- bad input, stale outputs
@pytest.mark.parametrize("text, word", [
    ("loss: {focl: 3.0}\n", "unknown loss keys ['focl']"),          # silently ignored before
    ("label: {temprature: 0.1}\n", "unknown label keys ['temprature']"),
    ("augment: {jiter: 0.1}\n", "unknown augment keys ['jiter']"),  # a ValueError traceback after the data loaded
    ("loss: 3\n", "'loss' must be a mapping"),
    ("steps: [1\n", "is not valid YAML"),                           # a yaml traceback before
    ("threads: 0\n", "threads: 0"),                                 # torch's RuntimeError before
    ("checkpoint_every: 0\n", "checkpoint_every: 0"),               # ZeroDivisionError at step 1 before
    # YAML 1.1 reads 1e-3 (no dot) as text: a TypeError traceback in AdamW after the data loaded before
    ("lr: 1e-3\n", "lr: '1e-3' is not a number > 0.0 (YAML reads 1e-3 as text"),
    ("lr: -1.0\n", "lr: -1.0 is not a number"),                     # AdamW's ValueError traceback before
    ("seed: -1\n", "seed: -1 is not a whole number >= 0"),          # numpy's ValueError at the first batch before
    ("train_limit: -3\n", "train_limit: -3"),                       # silently dropped the last 3 samples before
    ("loss: {focal: x}\n", "loss.focal: 'x' is not a number"),     # a TypeError in the loss at step 1 before
    ("model: {dim: abc}\n", "model.dim: 'abc'"),                     # torch TypeError building the net before
    ("model: {dim: 15, heads: 2}\n", "model.dim 15"),               # an AssertionError in Attention before
    ("asset_size: -5\n", "asset_size: -5"),                         # an AssetError traceback after the data loaded
    ("body: smpl\n", "body: 'smpl' is not known"),                  # a BodyError traceback after the data loaded
])
def test_training_config_typos_and_unparsable_files_are_config_errors(tmp_path, text, word):
    from interactvlm_ros.training.train import ConfigError, load_config

    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f, {"data": "/data", "out": "/out"})
    assert word in str(e.value) and "\n" not in str(e.value), e.value
    (tmp_path / "c.json").write_text('{"steps": 1,}')
    with pytest.raises(ConfigError, match=r"c\.json is not valid JSON"):
        load_config(tmp_path / "c.json", {"data": "/data", "out": "/out"})


def test_train_and_eval_cli_bad_data_model_or_out_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """A missing dataset folder, an --out that is a file, an eval --model folder without model.pt, a negative
    --limit: one line naming the problem, exit 2 (tracebacks before; eval's --out only failed after the evaluation)."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    from interactvlm_ros.cli.main import main

    _tiny_dataset(tmp_path / "data")
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "run").mkdir()
    cases = [
        (["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--steps", "1"],
         "meta.json not found"),
        (["train", "--data", str(tmp_path / "data"), "--out", str(afile), "--steps", "1"],
         f"cannot write --out {afile}"),
        (["eval", "--split", "val", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "nope")],
         "checkpoint not found"),
        (["eval", "--split", "val", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "nope"),
          "--out", str(afile)], f"cannot write --out {afile}"),
        # a user's run folder without model.pt: not "reinstall interactvlm_ros" (it advised that)
        (["eval", "--split", "val", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "run")],
         "`interactvlm train` run"),
        (["eval", "--split", "val", "--data", str(tmp_path / "data"), "--limit", "-1"], "--limit -1"),
    ]
    for argv, word in cases:
        rc = main(argv)
        cap = capsys.readouterr()
        assert "Traceback" not in cap.out + cap.err
        line = cap.out.strip().splitlines()[-1]
        assert rc == 2 and line.startswith(f"interactvlm {argv[0]}:") and word in line, (argv, line)
    assert afile.read_text() == "x"


def test_a_fresh_run_into_an_earlier_runs_folder_leaves_no_stale_graph_or_log(tmp_path, monkeypatch):
    """A second (not resumed) run into the same --out with export_onnx: false kept the first run's frame.onnx beside
    the new model.pt (onnxruntime then ran the old weights) and appended to the first run's log.jsonl."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from interactvlm_ros.training.train import train

    _tiny_dataset(tmp_path / "data")
    enc = text.TextEncoder()
    cfg = _cfg(tmp_path, "a", 6)  # export_onnx: True
    cfg.update(val_split=None, log_every=2)
    train(cfg, text_encoder=enc, provider=_Provider(16))
    assert (tmp_path / "a" / "frame.onnx").is_file()
    train({**cfg, "export_onnx": False, "seed": 1}, text_encoder=enc, provider=_Provider(16))
    assert not (tmp_path / "a" / "frame.onnx").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 4, 6], steps
    # a resumed run continues its log
    train({**cfg, "export_onnx": False, "seed": 1, "steps": 8}, resume=True, text_encoder=enc, provider=_Provider(16))
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 4, 6, 8], steps


def test_resume_after_a_kill_between_checkpoints_logs_each_step_once_and_another_config_is_one_line(
        tmp_path, monkeypatch, capsys):
    """A run killed between checkpoints resumes from the last checkpoint and runs (and logs) the steps after it again:
    log.jsonl listed those steps twice. --resume into a folder whose last.pt has another model config was a
    RuntimeError traceback (exit 1) listing every size mismatch."""
    import shutil

    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from interactvlm_ros.training.train import ConfigError, train

    _tiny_dataset(tmp_path / "data")
    enc = text.TextEncoder()
    cfg = _cfg(tmp_path, "b", 8)
    cfg.update(val_split=None, log_every=1, checkpoint_every=4)
    train(cfg, text_encoder=enc, provider=_Provider(16), stop_at=4)
    shutil.copy(tmp_path / "b" / "last.pt", tmp_path / "step4.pt")
    train(cfg, resume=True, text_encoder=enc, provider=_Provider(16), stop_at=6)
    shutil.copy(tmp_path / "step4.pt", tmp_path / "b" / "last.pt")  # = killed after step 6: checkpoint of step 4
    with open(tmp_path / "b" / "log.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # a row cut off by the kill
    train(cfg, resume=True, text_encoder=enc, provider=_Provider(16))
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9)), steps

    other = {**cfg, "model": {**cfg["model"], "dim": 16}}
    with pytest.raises(ConfigError, match="--resume: .*(cannot continue from|another config)") as e:
        train(other, resume=True, text_encoder=enc, provider=_Provider(16))
    assert "\n" not in str(e.value) and "another --out" in str(e.value)
    (tmp_path / "b" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="--resume: cannot continue from"):
        train(cfg, resume=True, text_encoder=enc, provider=_Provider(16))


class _HashText:
    """A TextEncoder stand-in (each word its own fixed random embedding): no MiniLM load for mechanics tests."""

    def encode(self, keys):
        return [np.random.default_rng(zlib.crc32(k.encode())).normal(size=384).astype(np.float32) for k in keys]


def test_resume_with_another_seed_or_lr_is_refused_and_a_fresh_run_does_not_leave_an_earlier_checkpoint(
        tmp_path, monkeypatch, caplog):
    """last.pt held only weights, optimiser and step: --resume with another seed (another data order), lr or dataset
    silently mixed two runs (and config.yaml then named the second one's). A fresh run into an earlier run's folder
    left that run's last.pt (a later --resume continued *it*) and its model.pt/metrics.json beside the new config."""
    import logging

    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    from interactvlm_ros.training.train import ConfigError, train

    _tiny_dataset(tmp_path / "data")
    enc = _HashText()
    cfg = _cfg(tmp_path, "b", 2)
    cfg.update(val_split=None, log_every=1, checkpoint_every=2)
    (tmp_path / "b").mkdir()
    for f in ("model.pt", "metrics.json"):  # an earlier finished run's outputs
        (tmp_path / "b" / f).write_text("earlier run")
    train({**cfg, "seed": 3}, text_encoder=enc, provider=_Provider(16), stop_at=1)  # a fresh run, "killed" at step 1
    assert not (tmp_path / "b" / "model.pt").exists() and not (tmp_path / "b" / "metrics.json").exists()
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 1
    for change, word in (({"seed": 7}, "seed: 3 -> 7"), ({"lr": 5e-3}, "lr: 0.001 -> 0.005"),
                         ({"batch_size": 4}, "batch_size: 8 -> 4")):
        with pytest.raises(ConfigError, match="was written with another config") as e:
            train({**cfg, "seed": 3, **change}, resume=True, text_encoder=enc, provider=_Provider(16))
        assert word in str(e.value) and "\n" not in str(e.value), e.value
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    (tmp_path / "data" / "meta.json").write_text(json.dumps({**meta, "seed": 5}))  # another dataset, same path
    with pytest.raises(ConfigError, match="dataset"):
        train({**cfg, "seed": 3}, resume=True, text_encoder=enc, provider=_Provider(16))
    (tmp_path / "data" / "meta.json").write_text(json.dumps(meta))
    # what does not change the weights may change; more steps are logged (the schedule follows the new count)
    with caplog.at_level(logging.WARNING, logger="interactvlm_ros.training.train"):
        train({**cfg, "seed": 3, "log_every": 2, "threads": 2, "steps": 3}, resume=True, text_encoder=enc,
              provider=_Provider(16))
    assert "steps 2 -> 3" in caplog.text
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 3


def test_resume_of_a_refresh_run_on_a_growing_dataset_or_with_its_init_from_gone_continues(tmp_path, monkeypatch):
    """--resume compared the dataset's n: a refresh_every run (the v2/v3 recipes: trained while the dataset was being
    generated, its meta.json rewritten with more samples) could never be resumed ('another config (dataset ...)').
    And init_from — ignored when resuming — was checked first: a resume after its file was removed was refused."""
    import shutil

    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    from interactvlm_ros.training.train import ConfigError, train

    _tiny_dataset(tmp_path / "data")
    enc = _HashText()
    cfg = _cfg(tmp_path, "r", 4)
    cfg.update(val_split=None, checkpoint_every=2, refresh_every=2)
    train(cfg, text_encoder=enc, provider=_Provider(16), stop_at=2)
    meta_path = tmp_path / "data" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "n": meta["n"] + 8}))  # the generator wrote more samples meanwhile
    train(cfg, resume=True, text_encoder=enc, provider=_Provider(16))
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=False)["step"] == 4
    meta_path.write_text(json.dumps({**meta, "seed": 5}))  # another dataset is still refused
    with pytest.raises(ConfigError, match="dataset"):
        train({**cfg, "steps": 6}, resume=True, text_encoder=enc, provider=_Provider(16))
    meta_path.write_text(json.dumps(meta))
    init = tmp_path / "init.pt"
    shutil.copy(tmp_path / "r" / "last.pt", init)
    cfg = {**_cfg(tmp_path, "i", 4), "val_split": None, "checkpoint_every": 2, "init_from": str(init)}
    train(cfg, text_encoder=enc, provider=_Provider(16), stop_at=2)
    init.unlink()
    train(cfg, resume=True, text_encoder=enc, provider=_Provider(16))
    assert torch.load(tmp_path / "i" / "last.pt", weights_only=False)["step"] == 4
    with pytest.raises(ConfigError, match="init.pt not found"):  # a fresh run still needs it (before any data)
        train(cfg, text_encoder=enc, provider=_Provider(16))


def test_a_non_finite_loss_stops_training_without_saving_nan_weights(tmp_path, monkeypatch):
    """lr 1e30 sends the weights to inf after step 1: the run went on, logged NaN losses (not valid JSON), saved NaN
    last.pt/model.pt and exited 0 with F1 0. Now it stops at the first non-finite loss, one line, exit 2."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    import interactvlm_ros.perception.text as text
    from interactvlm_ros.cli.main import main

    monkeypatch.setattr(text, "TextEncoder", _HashText)

    _tiny_dataset(tmp_path / "data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1.0e+30\nwarmup: 0\nbatch_size: 4\nval_split: null\nexport_onnx: false\nremask: false\n"
                   "checkpoint_every: 50\nmodel: {dim: 16, depth: 1, heads: 2, render_size: 16, up_channels: 4}\n")
    import interactvlm_ros.training.assets_provider as ap

    monkeypatch.setattr(ap, "AssetProvider", lambda *a, **k: _Provider(16))
    rc = main(["train", "--config", str(cfg), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
               "--steps", "4"])
    assert rc == 2
    assert not (tmp_path / "o" / "model.pt").exists() and not (tmp_path / "o" / "last.pt").exists()
    rows = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["loss"]) for r in rows), rows


def test_package_refuses_an_unfinished_run_and_leaves_dest_as_it_was_over_the_budget(tmp_path, monkeypatch):
    """The packager wrote into --dest (by default the shipped weights) and only then checked the 30 MB budget; a run
    without config.yaml/metrics.json was packaged with empty metrics beside the *previous* model's config.yaml; a
    run folder without model.pt was a FileNotFoundError traceback. The dataset (its seed) is now in metrics.json."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    from interactvlm_ros.training import package as P
    from interactvlm_ros.training.train import train

    _tiny_dataset(tmp_path / "data")
    cfg = _cfg(tmp_path, "run", 2)
    cfg.update(val_split=None)
    train(cfg, text_encoder=_HashText(), provider=_Provider(16))
    ck = torch.load(tmp_path / "run" / "model.pt", weights_only=False)  # the template the packager would look up
    ck.update(human_template_faces=np.zeros((1, 3), np.int32), human_part_ids=np.zeros(10, np.int16))
    torch.save(ck, tmp_path / "run" / "model.pt")
    dest = tmp_path / "dest"
    dest.mkdir()
    for f in ("model.pt", "config.yaml", "metrics.json", "frame.onnx"):
        (dest / f).write_text("the shipped one")
    monkeypatch.setattr(P, "BUDGET_MB", 0.01)
    with pytest.raises(ValueError, match="budget"):  # PackageError
        P.package(tmp_path / "run", dest, [])
    assert all((dest / f).read_text() == "the shipped one" for f in ("model.pt", "config.yaml", "metrics.json"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")) == []  # no scratch left
    (tmp_path / "run" / "config.yaml").unlink()
    assert P.main([str(tmp_path / "run"), "--dest", str(dest)]) == 2
    assert (dest / "config.yaml").read_text() == "the shipped one"
    monkeypatch.setattr(P, "BUDGET_MB", 30.0)
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    P.package(tmp_path / "run", dest, [])
    m = json.loads((dest / "metrics.json").read_text())
    assert m["data"]["seed"] == 0 and m["data"]["n"] == 32 and m["training"]["steps"] == 2
    assert (dest / "config.yaml").read_text() == "seed: 0\n"


def test_init_from_another_architecture_or_not_a_checkpoint_is_one_line(tmp_path):
    """init_from a checkpoint of another model.dim loaded the few tensors whose shapes happened to match (20 of 202 from
    the shipped dim-64 model into a dim-16 one) and trained the rest from scratch, logged as info only; a pickle that
    is not a dict was an AttributeError traceback; a run folder was 'not found' (after the data and GT masks loaded)."""
    from interactvlm_ros.models.default.model import DefaultContactNet
    from interactvlm_ros.training.train import ConfigError, init_weights, load_config

    small = dict(depth=1, heads=2, render_size=16, mask_size=16, up_channels=8)
    torch.save({"model": DefaultContactNet(dim=16, **small).state_dict()}, tmp_path / "dim16.pt")
    net = DefaultContactNet(dim=32, **small)
    with pytest.raises(ConfigError, match=r"dim16\.pt is another architecture \(\d+ tensors of another shape") as e:
        init_weights(net, tmp_path / "dim16.pt")
    assert "\n" not in str(e.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="list.pt is not a default-model checkpoint"):
        init_weights(net, tmp_path / "list.pt")
    # a new vertex head on the same network still starts from a checkpoint without one
    torch.save({"model": DefaultContactNet(dim=32, **small).state_dict()}, tmp_path / "dim32.pt")
    assert init_weights(DefaultContactNet(dim=32, vertex_head=4, vertices=10, **small), tmp_path / "dim32.pt") == [
        "human_vertex_decoder"]
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="run is a folder; give the file"):
        load_config(None, {"data": "/data", "out": "/out", "init_from": str(tmp_path / "run")})


def test_split_cache_follows_a_sample_regenerated_in_place(tmp_path, monkeypatch):
    """The split cache was keyed by (folder, meta.json, split): a sample file regenerated in place with meta.json
    unchanged (docs: regenerate the seeds, copy the shipped meta back) kept loading the old sample."""
    import os
    import shutil

    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    from interactvlm_ros.training.data import load_split

    _tiny_dataset(tmp_path / "data")
    s = tmp_path / "data" / "samples"
    assert load_split(tmp_path / "data", "train").labels[:2] == ["ball", "cup"]
    shutil.copy(s / "000001.npz", s / "000000.npz")  # sample 0 regenerated: now a 'cup'
    st = (s / "000000.npz").stat()
    os.utime(s / "000000.npz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later write, whatever the fs clock
    assert load_split(tmp_path / "data", "train").labels[:2] == ["cup", "cup"]


def test_split_loads_without_a_usable_cache_folder(tmp_path, monkeypatch, caplog):
    """load_split created its cache folder even with cache=False, and a read-only or missing home raised out of
    training / eval: now cache=False never touches it and an unusable folder is a named fallback."""
    from interactvlm_ros.training.data import load_split

    _tiny_dataset(tmp_path / "data")
    blocker = tmp_path / "file"  # a cache folder that cannot be created (root ignores permissions)
    blocker.write_text("")
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(blocker / "cache"))
    assert load_split(tmp_path / "data", "train", cache=False).labels[:2] == ["ball", "cup"]
    with caplog.at_level("WARNING", logger="interactvlm_ros.training.data"):
        assert load_split(tmp_path / "data", "train").labels[:2] == ["ball", "cup"]
    assert any("fallback: split cache" in r.getMessage() and "INTERACTVLM_CACHE_DIR" in r.getMessage()
               for r in caplog.records)


def test_eval_scores_a_batch_without_any_person_as_misses(tmp_path, monkeypatch):
    """Samples whose cues have no person count as misses (zero prediction); a batch with no other sample crashed
    (np.stack of nothing) instead."""
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))
    text = pytest.importorskip("interactvlm_ros.perception.text")
    from interactvlm_ros.evaluation.evaluate import evaluate
    from interactvlm_ros.training import assets_provider

    Sphere, sv, _ = _sphere(with_body=True)
    _base_run(tmp_path, len(sv), Sphere(16), text)
    f = tmp_path / "data" / "samples" / "000024.npz"  # the first 'val' sample: no visible landmark, no hand
    z = dict(np.load(f))
    z["landmarks_2d"][:, 2] = 0.0
    z["hand_landmarks_2d"][..., 2] = 0.0
    np.savez(f, **z)
    monkeypatch.setattr(assets_provider, "AssetProvider", lambda root, meta, size, body="anny": Sphere(size))
    res = evaluate(tmp_path / "data", "val", str(tmp_path / "base"), limit=1, oracle=False, remask_gt=False)
    assert res["samples"] == 1 and res["overall"]["human"]["f1"] == 0.0 and res["overall"]["human"]["n"] == 1
    res = evaluate(tmp_path / "data", "val", str(tmp_path / "base"), limit=3, batch_size=1, oracle=False,
                   remask_gt=False, out=tmp_path / "ev")
    assert res["samples"] == 3
    # --cues full is written beside the deploy figures (it overwrote metrics_val.json)
    evaluate(tmp_path / "data", "val", str(tmp_path / "base"), limit=1, oracle=False, remask_gt=False, cues="full",
             out=tmp_path / "ev")
    assert json.loads((tmp_path / "ev" / "metrics_val.json").read_text())["cues"] == "deploy"
    assert json.loads((tmp_path / "ev" / "metrics_val_full.json").read_text())["cues"] == "full"
    # weights gone NaN (a diverged training): NaN >= 0.5 scored as "no contact" and SIM/AUC were NaN in the json;
    # now the CLI's one-line model error naming the sample
    import shutil

    import torch

    from interactvlm_ros.models.default.predictor import DefaultModelError

    shutil.copytree(tmp_path / "base", tmp_path / "nan")
    ck = torch.load(tmp_path / "nan" / "model.pt", weights_only=False)
    ck["state_dict"] = {k: v.float() * float("nan") if v.is_floating_point() else v
                        for k, v in ck["state_dict"].items()}
    torch.save(ck, tmp_path / "nan" / "model.pt")
    (tmp_path / "nan" / "frame.onnx").unlink(missing_ok=True)
    with pytest.raises(DefaultModelError, match="predicts NaN/inf contact for sample"):
        evaluate(tmp_path / "data", "val", str(tmp_path / "nan"), limit=2, oracle=False, remask_gt=False)


def test_labels_that_name_nothing_are_a_localizer_error_and_share_the_text_encoders_form():
    """'_', '-' pass a strip() check but the text encoder normalises them to '' and raised a bare ValueError, which
    ContactEstimator.estimate re-raised (it turns only LocalizerError into bad_input): one such label crashed the
    frame. Now a LocalizerError naming the label; the label cache uses the encoder's form ('Coffee_Mug' = 'coffee mug')."""
    from interactvlm_ros.models.base import LocalizerError
    from interactvlm_ros.models.default.predictor import DefaultLocalizer

    class _Text:
        def encode(self, keys):
            return [np.random.default_rng(zlib.crc32(k.encode())).normal(size=384).astype(np.float32) for k in keys]

    loc = DefaultLocalizer(backend="torch", text_encoder=_Text())
    for bad in ("_", " - ", "__-__", "", "   ", 3):
        with pytest.raises(LocalizerError, match="object_label"):
            loc.label_feature(bad)
    assert loc.label_feature("Coffee_Mug") is loc.label_feature("coffee mug")


def test_export_command_refuses_a_folder_without_model_pt_in_one_line(tmp_path, capsys):
    """`python -m interactvlm_ros.models.default.export --weights DIR` without DIR/model.pt was a DefaultModelError
    traceback; it is one line naming the file and exit 2 (and a successful export prints its max |ORT - torch|)."""
    from interactvlm_ros.models.default.export import main

    assert main(["--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'model.pt'}" in err and "Traceback" not in err
    assert not (tmp_path / "frame.onnx").exists()
