"""MV-Loc against the official code's vectors (shared/conformance, tiny checkpoints), fp32 CPU.

Tolerances from the fixtures' FIXTURE.md §6: ids/indices exact; hidden states/embeddings <= 1e-4;
mask logits <= 1e-3; human contact <= 1e-5; object contact end-to-end loosely (2e-2: the p > 0.3 pixel
selection amplifies 1e-5 logit differences), lifting on the reference logits tightly (3e-5).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from interactvlm_ros.cli.main import main as cli_main
from interactvlm_ros.assets import load_lift2d_dict, load_official_human_assets
from interactvlm_ros.lift import lift
from interactvlm_ros.models.mvloc.predictor import MVLocPredictor

HC, OA = "interactvlm-hcontact-tiny", "interactvlm-oafford-tiny"
SPEC = {
    HC: dict(ckpt="interactvlm-3d-hcontact-damon-tiny", image="inputs/bottle__synthetic_224.png", label="bottle",
             task="hcontact", assets="data/hcontact_vitruvian"),
    OA: dict(ckpt="interactvlm-3d-oafford-lemon-piad-tiny", image="inputs/mug__synthetic/mug__synthetic.png",
             label="mug", task="ocontact", assets="inputs/mug__synthetic/sam_inp_objs"),
}


def _tf_qa(root):
    """Question/answer of the fixture's teacher-forced conversation."""
    conv = json.loads((root / "inputs" / "prompts.json").read_text())["tf_conversation"]
    q = conv.split("<im_end>\n", 1)[1].split(" ASSISTANT: ", 1)[0]
    a = conv.split(" ASSISTANT: ", 1)[1][: -len("</s>")]
    return q, a


def _close(a, b, atol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    err = float(np.abs(a - b).max())
    assert err <= atol, f"{what}: max |diff| {err:.3g} > {atol}"


@pytest.fixture(scope="module", params=[HC, OA])
def setup(request, conformance_dir):
    fx = request.param
    root = conformance_dir / fx
    s = SPEC[fx]
    loc = MVLocPredictor.from_pretrained(root / s["ckpt"])
    assets = (load_official_human_assets(root / s["assets"], view_set=loc.cfg.hC_sam_view_type)
              if s["task"] == "hcontact" else load_lift2d_dict(root / s["assets"], view_set=loc.cfg.oC_sam_view_type))
    assert list(assets.view_names) == loc.cfg.view_names(s["task"])
    image = np.asarray(Image.open(root / s["image"]).convert("RGB"))
    return fx, root, s, loc, assets, image


@pytest.mark.parametrize("mode", ["forward", "generate"])
def test_python_api(setup, mode):
    fx, root, s, loc, assets, image = setup
    inp = np.load(root / "inputs" / "inputs.npz")
    E = np.load(root / "expected" / ("forward_teacher_forced.npz" if mode == "forward" else "generate.npz"))
    q, a = _tf_qa(root)
    kw = dict(question=q, answer=a) if mode == "forward" else {}
    r = loc.run(image, s["label"], s["task"], assets, mode=mode, **kw)
    # preprocessing
    _close(loc.clip(image), inp["pixel_values_clip"], 1e-6, "CLIP pixels")
    _close(r["cam_params"], inp["cam_params"][0], 1e-7, "camera vectors")
    # ids + indices exact
    assert r["input_ids"].tolist() == E["input_ids"][0].tolist()
    if mode == "generate":
        assert r["output_ids"].tolist() == E["output_ids"][0].tolist()
        assert "[SEG]" in r["text"]
    assert r["seg_index"] == int(E["seg_token_index"])
    # embeddings <= 1e-4
    _close(r["seg_hidden"], E["seg_hidden_pre_fc"], 1e-4, "[SEG] hidden (pre fc)")
    dec = loc.model.decoder
    with torch.no_grad():
        h = torch.from_numpy(r["seg_hidden"])[None]
        _close(dec.text_hidden_fcs[0](h)[0], E["seg_hidden_post_fc"], 1e-4, "[SEG] embedding (post fc)")
        cams = torch.from_numpy(r["cam_params"])
        _close(dec.cam_pose_encoder(cams), E["view_encoding"], 1e-4, "view encodings")
        _close(dec.prompt_embeddings(h, cams), E["sparse_embeddings"], 1e-4, "sparse prompt")
        if mode == "forward":
            _close(dec.prompt_encoder.no_mask_embed.weight[0], E["dense_embedding_vector"], 1e-7, "dense prompt")
            emb, _, _ = loc.image_embeddings(assets)
            _close(emb[:, :, ::8, ::8], E["image_embeddings_sub8"], 1e-4, "SAM image embeddings")
            _close(emb[0, :8], E["image_embeddings_view0_ch0to7"], 1e-4, "SAM image embeddings view 0")
    # masks <= 1e-3, fp32 logits at render resolution
    _close(r["low_res"], E["low_res_masks"], 1e-3, "low-res masks")
    _close(r["iou"], E["iou_predictions"], 1e-4, "iou")
    lg = r["logits"]
    assert lg.dtype == np.float32 and lg.shape == (4, 1024, 1024)
    _close(lg[:, ::8, ::8], E["pred_masks_sub8"], 1e-3, "pred masks")
    _close(lg[:, 480:544, 480:544], E["pred_masks_crop_r480_c480_64"], 1e-3, "pred masks crop")
    assert np.abs((lg > 0).sum((1, 2)) - E["pred_masks_count_gt0"]).max() <= 50
    # lifting end to end
    contact = lift(lg, assets, "human" if s["task"] == "hcontact" else "object")
    _close(contact, E["pred_contact_3d"][0], 1e-5 if s["task"] == "hcontact" else 2e-2, "lifted contact")


def test_generate_hidden_rebuilt_from_kv_cache(setup):
    """The KV-cached run rebuilds the official last-step full pass row by row."""
    fx, root, s, loc, assets, image = setup
    E = np.load(root / "expected" / "generate.npz")
    inp = np.load(root / "inputs" / "inputs.npz")
    out = loc.model.generate(torch.from_numpy(inp["pixel_values_clip"]), torch.from_numpy(inp["gen_input_ids"]))
    _close(out["final_hidden"], E["final_step_hidden"], 1e-4, "final-step hidden")
    _close(out["step_logits"], E["step_last_logits"], 1e-3, "per-step logits")
    assert out["seg_rows"] == [int(E["seg_hidden_index"])]


def test_lifting_on_reference_logits(setup):
    fx, root, s, loc, assets, image = setup
    for name in ("forward_teacher_forced.npz", "generate.npz"):
        E = np.load(root / "expected" / name)
        ref = F.interpolate(torch.from_numpy(E["low_res_masks"]), (1024, 1024), mode="bilinear",
                            align_corners=False)[:, 0].numpy()
        _close(ref[:, ::8, ::8], E["pred_masks_sub8"], 0.0, "upsampled reference")
        mode = "human" if s["task"] == "hcontact" else "object"
        _close(lift(ref, assets, mode), E["pred_contact_3d"][0], 1e-5 if mode == "human" else 3e-5, f"lift {name}")


@pytest.mark.parametrize("mode", ["forward", "generate"])
def test_cli(setup, mode, tmp_path):
    fx, root, s, loc, assets, image = setup
    E = np.load(root / "expected" / ("forward_teacher_forced.npz" if mode == "forward" else "generate.npz"))
    argv = ["localize", str(root / s["image"]), "--object", s["label"], "--model", str(root / s["ckpt"]),
            "--out", str(tmp_path), "--mode", mode]
    if s["task"] != "hcontact":
        argv += ["--assets", str(root / s["assets"])]  # hcontact: default <model>/../data/hcontact_vitruvian
    if mode == "forward":
        q, a = _tf_qa(root)
        argv += ["--question", q, "--answer", a]
    assert cli_main(argv) == 0
    m = np.load(tmp_path / "masks.npz")
    c = np.load(tmp_path / "contact.npz")
    assert m["input_ids"].tolist() == E["input_ids"][0].tolist()
    if mode == "generate":
        assert m["output_ids"].tolist() == E["output_ids"][0].tolist()
    assert int(m["seg_index"]) == int(E["seg_token_index"])
    _close(m["seg_hidden"], E["seg_hidden_pre_fc"], 1e-4, "CLI seg_hidden")
    assert m["logits"].dtype == np.float32 and m["logits"].shape == (4, 1024, 1024)
    _close(m["logits"][:, ::8, ::8], E["pred_masks_sub8"], 1e-3, "CLI logits")
    _close(c["contact"], E["pred_contact_3d"][0], 1e-5 if s["task"] == "hcontact" else 2e-2, "CLI contact")
    assert (tmp_path / "overlay_grid.png").is_file()
