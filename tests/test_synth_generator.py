"""Synthetic generator: determinism, GT contact vs geometry, view masks vs lifting, landmarks, format."""
import json

import numpy as np
import pytest

pytest.importorskip("anny")
pytest.importorskip("embreex")
import trimesh  # noqa: E402
from trimesh.proximity import closest_point  # noqa: E402

from interactvlm_ros.synth import catalog  # noqa: E402
from interactvlm_ros.synth.generator import (  # noqa: E402
    PEN_TOL, REQUIRED_CONTACT, Generator, GeneratorConfig, missing_contact, split_of, split_ranges, view_masks,
    write_dataset,
)
from interactvlm_ros.synth.raycast import official_view_buffers  # noqa: E402

THR = 0.02
CASES = [(3, "hold_one_hand"), (5, "sit"), (7, "kick"), (11, "wear_head")]


@pytest.fixture(scope="module")
def gen():
    return Generator(GeneratorConfig(image_size=(160, 120), contact_threshold=THR, mask_res=64))


@pytest.fixture(scope="module")
def samples(gen):
    return {inter: gen.sample(seed, interaction=inter) for seed, inter in CASES}


def _object_mesh_cam(s):
    v, f = catalog.normalized_mesh(str(s["object_category"]))
    P = s["object_pose_cam"].astype(np.float64)
    return trimesh.Trimesh(v.astype(np.float64) @ P[:3, :3].T + P[:3, 3], f, process=False)


def test_format(samples):
    s = samples["hold_one_hand"]
    H, W = 120, 160
    assert s["image"].shape == (H, W, 3) and s["image"].dtype == np.uint8
    assert s["depth"].shape == (H, W) and s["depth"].dtype == np.float32
    assert s["person_mask"].dtype == bool and s["object_mask"].dtype == bool
    assert s["K"].shape == (3, 3) and s["object_pose_cam"].shape == (4, 4)
    assert s["landmarks_2d"].shape == (33, 3) and s["landmarks_3d"].shape == (33, 3)
    assert s["hand_landmarks_2d"].shape == (2, 21, 3)
    assert s["human_contact"].shape == (13718,) and s["human_vertices_cam"].shape == (13718, 3)
    nv, _ = catalog.normalized_mesh(str(s["object_category"]))
    assert s["object_contact"].shape == (len(nv),)
    assert s["human_view_masks"].shape == (4, 64, 64) and s["object_view_masks"].shape == (4, 64, 64)
    assert set(np.unique(s["human_view_masks"])) <= {0, 1}
    assert str(s["interaction"]) == "hold_one_hand"
    cat = catalog.CATEGORIES[str(s["object_category"])]
    assert str(s["object_label"]) in (cat.name,) + cat.synonyms
    # depth is where the masks are
    assert ((s["depth"] > 0) == (s["person_mask"] | s["object_mask"])).all()
    assert s["person_mask"].mean() > 0.02 and s["object_mask"].any()


@pytest.mark.parametrize("inter", ["hold_one_hand", "kick"])
def test_camera_image_follows_opencv_pixel_centres(gen, samples, inter):
    """Depth pixels back-projected with K the OpenCV/ROS way (pixel u at x = (u − cx)/fx) lie on the meshes.
    synth-1.2 cast through u + 0.5: the points sat 2-5 mm off the surface (half a pixel at 3 m)."""
    s = samples[inter]
    K, d = s["K"].astype(np.float64), s["depth"].astype(np.float64)
    for mask, mesh in ((s["object_mask"], _object_mesh_cam(s)),
                       (s["person_mask"], trimesh.Trimesh(s["human_vertices_cam"].astype(np.float64),
                                                          gen.T.faces, process=False))):
        v, u = np.nonzero(mask)
        i = np.random.default_rng(0).choice(len(u), min(200, len(u)), replace=False)
        z = d[v[i], u[i]]
        pts = np.stack([(u[i] - K[0, 2]) / K[0, 0] * z, (v[i] - K[1, 2]) / K[1, 1] * z, z], 1)
        dist = closest_point(mesh, pts)[1]
        assert np.median(dist) < 2e-4 and np.percentile(dist, 95) < 1e-3, np.percentile(dist, [50, 95])


def test_deterministic_per_seed(gen, samples):
    again = gen.sample(3, interaction="hold_one_hand")
    ref = samples["hold_one_hand"]
    for k in ("image", "depth", "human_contact", "object_contact", "human_view_masks", "landmarks_2d", "object_pose_cam"):
        np.testing.assert_array_equal(again[k], ref[k], err_msg=k)
    other = gen.sample(4, interaction="hold_one_hand")
    assert not np.array_equal(other["image"], ref["image"])


@pytest.mark.parametrize("inter", [c[1] for c in CASES])
def test_contact_matches_geometry(samples, inter):
    s = samples[inter]
    obj = _object_mesh_cam(s)
    Vh = s["human_vertices_cam"].astype(np.float64)
    hc = s["human_contact"] > 0.5
    assert hc.sum() >= 5 and (s["object_contact"] > 0.5).sum() >= 3
    # every contact vertex is within the threshold of the object surface …
    _, d_c, _ = closest_point(obj, Vh[hc])
    assert d_c.max() <= THR + 1e-4
    # … and body vertices near the object but not labelled are farther than the threshold
    near = np.nonzero(~hc & (np.linalg.norm(Vh - obj.centroid, axis=1) < obj.scale + 0.05))[0][:3000]
    if len(near):
        _, d_n, _ = closest_point(obj, Vh[near])
        assert d_n.min() > THR - 1e-4
    # object contact vertices are within the threshold of the body surface
    body = trimesh.Trimesh(Vh, _faces(), process=False)
    oc = s["object_contact"] > 0.5
    _, d_o, _ = closest_point(body, np.asarray(obj.vertices)[oc])
    assert d_o.max() <= THR + 1e-4
    # no penetration beyond tolerance: body vertices inside the object are shallow
    inside = obj.contains(Vh[np.linalg.norm(Vh - obj.centroid, axis=1) < obj.scale])
    if inside.any():
        sel = Vh[np.linalg.norm(Vh - obj.centroid, axis=1) < obj.scale][inside]
        _, d_in, _ = closest_point(obj, sel)
        assert d_in.max() <= PEN_TOL
    assert float(s["max_penetration"]) <= 0.02


_FACES = {}


def _faces():
    if "f" not in _FACES:
        from interactvlm_ros.bodies import get_body_model

        _FACES["f"] = get_body_model("anny").faces
    return _FACES["f"]


def _soft_lift(masks, vids, bary, n):
    """Official human aggregation (spec 4.2) written independently: per view barycentric mean of the mask
    value per vertex, then the mean over the views that see the vertex."""
    acc = np.zeros(n)
    seen = np.zeros(n)
    for v in range(len(masks)):
        ok = (vids[v] >= 0).all(-1)
        ids, w, p = vids[v][ok], bary[v][ok], masks[v][ok].astype(np.float64)
        num = np.bincount(ids.ravel(), (w * p[:, None]).ravel(), n)
        den = np.bincount(ids.ravel(), w.ravel(), n)
        s = den > 0
        acc[s] += num[s] / den[s]
        seen += s
    out = np.zeros(n)
    out[seen > 0] = acc[seen > 0] / seen[seen > 0]
    return out, seen > 0


@pytest.mark.parametrize("inter", ["hold_one_hand", "sit"])
def test_view_masks_lift_back_to_visible_contact(gen, samples, inter):
    s = samples[inter]
    for kind in ("human", "object"):
        if kind == "human":
            V, F, views, contact = gen.T.template_vertices, gen.T.faces, "human", s["human_contact"]
        else:
            V, F = catalog.normalized_mesh(str(s["object_category"]))
            views, contact = "object", s["object_contact"]
        buf = official_view_buffers(V, F, views, 64)  # Embree ray casting: independent of the torch-rasterized masks
        masks = s[f"{kind}_view_masks"]
        assert masks.any(), f"{kind}: no contact pixel in any view"
        lifted, seen = _soft_lift(masks, buf.vertex_ids, buf.bary, len(contact))
        c = contact > 0.5
        pred = lifted >= 0.5
        # what the masks say is contact is contact (or a direct neighbour in a contact face)
        faces_with_contact = c[F].sum(1) >= 1
        touch = np.zeros(len(c), bool)
        touch[F[faces_with_contact].ravel()] = True
        assert pred.sum() > 0
        assert (touch[pred]).mean() >= 0.98, kind
        # visible contact vertices are recovered (most of them; tiny patches can fall between pixels)
        vis_c = c & seen
        if vis_c.sum() >= 10:
            assert (lifted[vis_c] > 0).mean() >= 0.6, kind


def test_view_masks_rule():
    contact = np.array([1, 1, 0, 0], np.float32)
    vids = np.array([[[[0, 1, 2], [2, 3, 0], [-1, -1, -1]]]])  # 1 view, 1x3 pixels
    np.testing.assert_array_equal(view_masks(contact, vids), [[[1, 0, 0]]])


@pytest.mark.parametrize("inter", ["hold_one_hand", "kick"])
def test_landmarks_project_inside_person(samples, inter):
    import cv2

    s = samples[inter]
    lm = s["landmarks_2d"]
    vis = lm[:, 2] > 0.5
    assert vis.sum() >= 10
    mask = cv2.dilate(s["person_mask"].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    u = np.clip(lm[vis, 0].astype(int), 0, mask.shape[1] - 1)
    v = np.clip(lm[vis, 1].astype(int), 0, mask.shape[0] - 1)
    assert mask[v, u].mean() >= 0.85
    # 2D landmarks are the projection of the 3D ones
    uvw = s["landmarks_3d"] @ s["K"].T
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], lm[:, :2], atol=1e-2)
    # the holding hand (one_hand) or kicking foot is where the object is
    if inter == "kick":
        x0, y0, x1, y1 = s["object_bbox"]
        feet = lm[[31, 32], :2]
        dist = np.maximum(np.maximum(x0 - feet[:, 0], feet[:, 0] - x1), np.maximum(y0 - feet[:, 1], feet[:, 1] - y1))
        assert dist.min() < 0.15 * mask.shape[0]


def test_splits():
    r = split_ranges(100, 50)
    assert r == {"train": [100, 140], "val": [140, 145], "test": [145, 150]}
    assert split_of(141, "cup", r) == "val"
    assert split_of(101, catalog.HELD_OUT_CATEGORIES[0], r) == "test_unseen_category"
    with pytest.raises(ValueError, match="outside"):
        split_of(99, "cup", r)


def test_write_dataset_and_meta(tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:  # generation runs on one thread and gives the caller's count back (it leaked into later tests before)
        meta = write_dataset(tmp_path, n=2, seed=20, config=GeneratorConfig(image_size=(96, 72), mask_res=32))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert files == ["000020.npz", "000021.npz"]
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk["n"] == 2 and on_disk["mask_resolution"] == 32 and on_disk["body"]["num_vertices"] == 13718
    assert sum(on_disk["counts"].values()) == 2 and meta["splits"]["held_out_categories"]
    with np.load(tmp_path / "samples" / "000020.npz") as d:
        cat = str(d["object_category"])
        assert d["human_view_masks"].shape == (4, 32, 32)
    assert (tmp_path / "objects" / f"{cat}.npz").is_file()


def test_unknown_interaction_is_a_clear_error(gen):
    with pytest.raises(ValueError, match="interaction"):
        gen.sample(1, interaction="juggle")
    with pytest.raises(ValueError, match="not used for"):
        gen.sample(1, interaction="sit", category="cup")


def test_arm_ik_reaches_the_palm_target(gen):
    """v1.1 arm IK: the posed palm centre lands on a reachable target and the palm faces the wanted way."""
    from interactvlm_ros.synth.generator import _palm_of, _rotvec, arm_ik

    T = gen.T
    rest = T.arm_rest()
    S = rest["L"]["S"]
    target = S + np.array([-0.05, 0.15, 0.4])  # raised in front (a catch), reachable
    W1, W2 = arm_ik(rest["L"], target, np.array([-1.0, 0, 0]), np.array([0.7, -1.0, -0.3]))
    rv = np.zeros((T.J, 3))
    rv[T.bone("upperarm01.L")], rv[T.bone("lowerarm01.L")] = _rotvec(W1), _rotvec(W2)
    V = T.pose(rv, np.array([0.5, 0.6, 0.5, 0.5, 0.5, 0.5])).vertices.astype(np.float64)
    c, n = _palm_of(T.regressor, V, "L")
    # rest geometry is the default phenotype's; skinning + phenotype move the palm a few cm (the placement
    # then sizes the object to the actual palms)
    assert np.linalg.norm(c - target) < 0.08, (c, target)
    assert n @ np.array([-1.0, 0, 0]) > 0.7, n  # the left palm faces the body's midline


@pytest.mark.parametrize("seed", [2, 4])
def test_two_hand_hold_of_a_ball_touches_both_hands(gen, seed):
    """v1.0 failed 97 % of two-hand placements (palms ~1 m apart); a ball must now be held between the palms."""
    s = gen.sample(seed, interaction="hold_two_hands", category="ball")
    hc = s["human_contact"] > 0
    parts = gen.T.parts[hc]
    assert (parts == 1).mean() > 0.6, np.bincount(parts, minlength=9)  # contact mostly on the hands
    V = s["human_vertices_cam"]
    lm = s["landmarks_3d"]
    wrists = lm[[15, 16]]
    # both hands touch it: contact vertices near each wrist
    for w in wrists:
        assert (np.linalg.norm(V[hc] - w, axis=1) < 0.15).sum() >= 5


@pytest.mark.parametrize("inter", ["sit", "kick"])
def test_knees_bend_within_human_range(gen, samples, inter):
    """Knee flexion = angle between the thigh's and the shin's world rotations (the generator's pose parameters
    are absolute, not chained). synth-1.1 folded sitting knees 150-200°; a human knee stops near 150°."""
    from scipy.spatial.transform import Rotation

    rv = samples[inter]["body_pose"]
    for side in "LR":
        thigh = Rotation.from_rotvec(rv[gen.T.bone(f"upperleg01.{side}")])
        shin = Rotation.from_rotvec(rv[gen.T.bone(f"lowerleg01.{side}")])
        flex = np.degrees((thigh.inv() * shin).magnitude())
        assert flex <= 125.0, (inter, side, flex)
        if inter == "sit":
            assert flex >= 60.0, (side, flex)  # sitting: the knee is bent, the shin hangs down


def test_missing_contact_names_the_parts_an_interaction_must_touch(gen):
    body = gen.T.body
    foot = np.isin(body.part_labels, [body.part_names.index("left_foot")]).astype(np.float32)
    seat = np.isin(body.part_labels, [body.part_names.index("buttocks")]).astype(np.float32)
    left = (body.part_labels == body.part_names.index("left_hand")).astype(np.float32)
    right = (body.part_labels == body.part_names.index("right_hand")).astype(np.float32)
    assert missing_contact("sit", foot, body.part_labels, body.part_names) == ["buttocks|left_thigh|right_thigh"]
    assert missing_contact("sit", seat + foot, body.part_labels, body.part_names) == []
    assert missing_contact("hold_two_hands", left, body.part_labels, body.part_names) == ["right_hand"]
    assert missing_contact("hold_two_hands", left + right, body.part_labels, body.part_names) == []
    assert missing_contact("kick", foot, body.part_labels, body.part_names) == []
    assert set(REQUIRED_CONTACT) == set(catalog.INTERACTIONS)


@pytest.mark.parametrize("seed", [59, 93])
def test_a_placement_that_misses_the_interactions_parts_is_retried(gen, seed):
    """synth-1.3 gave seed 59 a "sit" whose bench touched only the right foot and seed 93 a two-hand hold touching
    only the left hand (synth_v3); 1.4 retries such placements, so every sample touches what its interaction means."""
    s = gen.sample(seed)
    body = gen.T.body
    assert missing_contact(str(s["interaction"]), s["human_contact"], body.part_labels, body.part_names) == []


def _fake_worker(categories):
    """``generator._worker`` stand-in: writes an (empty) sample file per seed and reports its category."""
    def work(args):
        cfg, seeds, out = args
        for s in seeds:
            np.savez(f"{out}/samples/{s:06d}.npz", seed=np.int64(s))
        return [(s, categories(s), "hold_one_hand") for s in seeds], "hash", "test", 13718
    return work


def test_a_split_run_keeps_the_other_splits_of_the_dataset_in_meta(tmp_path, monkeypatch):
    """`interactvlm synth --split val` then `--split test` into one folder: the second run's meta.json listed only its
    own seeds, so the val split (files still on disk) became empty for train/eval."""
    from interactvlm_ros.synth import generator as G

    monkeypatch.setattr(G, "_worker", _fake_worker(lambda s: "bottle" if s % 7 == 0 else "cup"))
    ranges = split_ranges(0, 40)  # train [0, 32), val [32, 36), test [36, 40)
    write_dataset(tmp_path, n=4, seed=32, ranges=ranges)
    meta = write_dataset(tmp_path, n=4, seed=36, ranges=ranges)
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["splits"]["indices"]["val"] == [32, 33, 34] and meta["splits"]["indices"]["test"] == [36, 37, 38, 39]
    assert meta["splits"]["indices"]["test_unseen_category"] == [35] and meta["counts"]["val"] == 3
    assert (meta["seed"], meta["n"]) == (0, 40)
    # the whole dataset afterwards lists every seed once
    meta = write_dataset(tmp_path, n=40, seed=0, ranges=ranges)
    assert sorted(s for v in meta["splits"]["indices"].values() for s in v) == list(range(40))
    # another dataset definition (other seed ranges) does not inherit the earlier lists
    meta = write_dataset(tmp_path, n=4, seed=0)
    assert sorted(s for v in meta["splits"]["indices"].values() for s in v) == [0, 1, 2, 3]


def test_continuing_a_dataset_with_other_options_is_refused(tmp_path, monkeypatch, capsys):
    """Existing samples are kept (resumable), so continuing with another --mask-res / --contact-threshold /
    --image-size mixed samples of both settings under a meta.json that claimed the new ones."""
    from interactvlm_ros.cli.main import main
    from interactvlm_ros.synth import generator as G

    monkeypatch.setattr(G, "_worker", _fake_worker(lambda s: "cup"))
    write_dataset(tmp_path, n=2, seed=0)
    with pytest.raises(G.DatasetOptionsError, match="mask_resolution 128, not 64"):
        write_dataset(tmp_path, n=3, seed=0, config=GeneratorConfig(mask_res=64))
    rc = main(["synth", "--n", "3", "--out", str(tmp_path), "--contact-threshold", "0.03"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("interactvlm synth:") and "contact_threshold 0.02, not 0.03" in err, err
    assert json.loads((tmp_path / "meta.json").read_text())["n"] == 2


@pytest.mark.parametrize("argv, word", [
    (["--n", "0"], "--n must be ≥ 1"),
    (["--n", "1", "--seed", "-3"], "--seed -3"),
    (["--n", "1", "--workers", "3"], "--workers 3"),
    (["--n", "1", "--out", "AFILE"], "cannot write --out"),
    (["--n", "6", "--split", "test"], "--split test: the test seed range of --n 6 is empty"),  # was a no-op, exit 0
])
def test_synth_bad_options_are_one_line_and_exit_2(argv, word, tmp_path, capsys):
    from interactvlm_ros.cli.main import main

    (tmp_path / "afile").write_text("x")
    argv = [str(tmp_path / "afile") if a == "AFILE" else a for a in argv]
    rc = main(["synth", *argv] + ([] if "--out" in argv else ["--out", str(tmp_path / "o")]))
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("interactvlm synth: ") and word in lines[0], cap.err
    assert "Traceback" not in cap.err and not (tmp_path / "o" / "meta.json").exists(), cap.err


def test_an_unreadable_sample_in_the_folder_is_generated_again(tmp_path, monkeypatch, caplog):
    """A sample file in --out that cannot be read (a truncated copy, a disk error) stopped `interactvlm synth` with a
    BadZipFile traceback — also the run that train/eval's "unreadable sample; regenerate it" asks for. It is now named
    in a warning and generated again; readable samples are kept as before."""
    from types import SimpleNamespace

    from interactvlm_ros.synth import generator as G

    calls = []

    class Stub:
        def __init__(self, cfg):
            self.T = SimpleNamespace(template_hash="hash", template_source="test", num_vertices=13718)

        def sample(self, s):
            calls.append(s)
            return {"object_category": np.asarray("cup"), "interaction": np.asarray("hold_one_hand"),
                    "seed": np.int64(s)}

    monkeypatch.setattr(G, "Generator", Stub)
    (tmp_path / "samples").mkdir()
    np.savez(tmp_path / "samples" / "000001.npz", object_category=np.asarray("ball"), interaction=np.asarray("kick"))
    (tmp_path / "samples" / "000002.npz").write_bytes(b"PK\x03\x04 cut off")
    (tmp_path / "samples" / "000003.npz").write_bytes(b"")
    with caplog.at_level("WARNING", logger=G.log.name):
        rows, *_ = G._generate_chunk(GeneratorConfig(), [1, 2, 3], str(tmp_path))
    assert calls == [2, 3] and [r[1] for r in rows] == ["ball", "cup", "cup"], (calls, rows)
    assert "000002.npz is unreadable" in caplog.text and "000003.npz is unreadable" in caplog.text, caplog.text
    with np.load(tmp_path / "samples" / "000002.npz") as d:
        assert int(d["seed"]) == 2


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_extra_worker_ends_when_synth_is_killed(tmp_path):
    """`synth --workers 2` stopped with SIGTERM/SIGKILL left its spawned worker generating the rest of its seeds into
    --out, then idling forever; the worker now ends with the process that started it."""
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, time\n"
        "from interactvlm_ros.synth.generator import _pool\n"
        "if __name__ == '__main__':\n"
        "    ex = _pool()\n"
        "    print(ex.submit(os.getpid).result(), flush=True)\n"
        "    ex.submit(time.sleep, 60)\n"
        "    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(p.stdout.readline())
    finally:
        p.kill()
        p.wait()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
        except OSError:
            return False

    deadline = time.monotonic() + 20
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    dead = not alive(child)
    if not dead:
        os.kill(child, 9)
    assert dead, "the worker outlived the killed synth process"


def test_split_runs_that_overlap_in_time_keep_each_others_seeds(tmp_path, monkeypatch):
    """`synth --split train` (long) and `--split val` in another terminal: the train run merged the meta.json it read
    when it *started*, so when it finished after the val run it dropped the val seeds from meta.json."""
    from interactvlm_ros.synth import generator as G

    ranges = split_ranges(0, 40)  # train [0, 32), val [32, 36)
    inner = _fake_worker(lambda s: "cup")

    def work(args):  # while the train run generates, a val run starts and finishes
        if args[1] and args[1][0] == 0:
            write_dataset(tmp_path, n=4, seed=32, ranges=ranges)
        return inner(args)

    monkeypatch.setattr(G, "_worker", work)
    meta = write_dataset(tmp_path, n=32, seed=0, ranges=ranges)
    assert meta["splits"]["indices"]["val"] == [32, 33, 34, 35] and len(meta["splits"]["indices"]["train"]) == 32
    assert json.loads((tmp_path / "meta.json").read_text())["counts"]["val"] == 4
