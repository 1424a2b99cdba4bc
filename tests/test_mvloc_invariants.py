"""Invariants of MV-Loc that hold for ANY checkpoint, on a NEW tiny official-format checkpoint.

The checkpoint is written here from a randomly initialised model (its own seed, geometry and label),
under official key names and dtypes, as ``pytorch_model.bin`` and as shards + index.
"""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interactvlm_ros.assets import ViewAssets
from interactvlm_ros.cli.main import main as cli_main
from interactvlm_ros.models.base import LocalizerError, LocalizerOutput
from interactvlm_ros.models.mvloc.checkpoint import (CheckpointError, build_random, load_mvloc,
                                                     read_shapes, save_official, weight_files)
from interactvlm_ros.models.mvloc.config import MVLocConfig, SamDecoderGeometry, SamEncoderGeometry
from interactvlm_ros.models.mvloc.predictor import MVLocPredictor
from interactvlm_ros.models.mvloc.tokenizer import LegacyLlamaTokenizer
from interactvlm_ros.models.registry import load_localizer

FX = "interactvlm-hcontact-tiny"
TOK_DIR = "interactvlm-3d-hcontact-damon-tiny"
LABEL = "Tennis_Racket"


def _cfg() -> MVLocConfig:
    return MVLocConfig(
        vocab_size=515, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=1024, mm_hidden_size=32, seg_token_idx=512, out_dim=64, multiview_channels=4,
        cam_encoder_type="vi_v1", cam_hidden_dim=16, hC_loss_weight=3.0, oC_loss_weight=0.0,
        sam_encoder=SamEncoderGeometry(embed_dim=16, depth=3, num_heads=2, mlp_dim=32, patch_size=16, img_size=256,
                                       window_size=8, global_attn_indexes=[1], out_chans=64),
        sam_decoder=SamDecoderGeometry(transformer_dim=64, depth=2, num_heads=8, mlp_dim=96, iou_head_hidden_dim=32))


def _steer_to_seg(model, lang_ids, pixel_values, n_before=2):
    """Make greedy decoding emit ``n_before`` free tokens, then [SEG], then </s> (lm_head rows orthogonal
    to the other steps' hidden states, as the fixtures were built)."""
    with torch.no_grad():
        lm = model.language.llm.lm_head.weight
        seg, eos = model.cfg.seg_token_idx, model.cfg.eos_token_id
        lm[seg].zero_()
        lm[eos].zero_()
        out = model.generate(pixel_values, lang_ids, max_new_tokens=n_before + 1)
        hs = out["final_hidden"][0, -(n_before + 1):].double()  # states that predict steps 1..n+1
        gen = out["output_ids"][-(n_before + 1):]
        q, _ = torch.linalg.qr(hs[:-1].T)
        r = hs[-1] - q @ (q.T @ hs[-1])
        lm[seg] = (12.0 * r / (r @ hs[-1])).float()
        # the state after [SEG] is known only after it is fed: one more pass
        full = torch.tensor([out["output_ids"][:-1] + [seg]])
        after = model.forward_teacher_forced(pixel_values, full)["final_hidden"][0].double()
        states = torch.cat([hs, after[-1:]])
        q2, _ = torch.linalg.qr(states[:-1].T)
        r2 = states[-1] - q2 @ (q2.T @ states[-1])
        lm[eos] = (12.0 * r2 / (r2 @ states[-1])).float()
    return gen[:-1]


@pytest.fixture(scope="module")
def new_ckpt(conformance_dir, tmp_path_factory):
    root = conformance_dir / FX
    from transformers import CLIPVisionConfig

    clip_dir = root / "openai" / "clip-vit-large-patch14"
    cfg = _cfg()
    model = build_random(cfg, CLIPVisionConfig.from_pretrained(str(clip_dir)), seed=1234)
    with torch.no_grad():  # load the fixture's CLIP so that the saved folder + --clip reproduce this model
        from transformers import CLIPVisionModel

        model.language.vision_tower.load_state_dict(CLIPVisionModel.from_pretrained(str(clip_dir)).state_dict())
        for p in model.decoder.parameters():  # keep activations O(1) for a meaningful comparison
            if p.dim() == 2:
                p.normal_(0, 1.0 / p.shape[1] ** 0.5)
    tok = LegacyLlamaTokenizer(root / TOK_DIR)
    from interactvlm_ros.models.mvloc import prompts as P
    from interactvlm_ros.models.mvloc.preprocess import ClipPreprocessor

    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    pv = ClipPreprocessor(clip_dir)(image)
    ids = torch.tensor([tok.tokenize_with_image(P.build_prompt(P.demo_question("hcontact", LABEL)))])
    _steer_to_seg(model, ids, pv)
    # bf16 round trip of the LLaMA weights happens in the official file: apply it here too
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("language.llm") or n.startswith("language.mm_projector") or ".cam_pose_encoder." in n:
                p.copy_(p.to(torch.bfloat16).float())
    base = tmp_path_factory.mktemp("newckpt")
    single = save_official(model, base / "single" / "ckpt", root / TOK_DIR)
    sharded = save_official(model, base / "sharded" / "ckpt", root / TOK_DIR, shard_size=60_000)
    renders = rng.integers(0, 256, (4, 200, 200, 3), dtype=np.uint8)
    renders[:, :20] = 255
    assets = ViewAssets.from_dense(renders, np.full((4, 200, 200, 3), -1, np.int64),
                                   np.full((4, 200, 200, 3), -1, np.float32), 10, "human", key="synthetic-test-assets")
    return dict(model=model, single=single, sharded=sharded, clip=clip_dir, image=image, pv=pv, ids=ids, tok=tok,
                assets=assets, root=root)


def test_written_folder_is_official_format(new_ckpt):
    d = new_ckpt["single"]
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    assert "model.visual_model.image_encoder.blocks.1.attn.rel_pos_h" in sd
    assert sd["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
    assert sd["model.visual_model.mask_decoder.iou_token.weight"].dtype == torch.float32
    assert not any("vision_tower" in k for k in sd)
    assert len(weight_files(new_ckpt["sharded"])) > 1
    cfg = MVLocConfig.from_official(json.loads((d / "config.json").read_text()), read_shapes(weight_files(d)))
    assert cfg == new_ckpt["model"].cfg  # geometry read back from shapes (window 8, global [1], 256 px input)


@pytest.mark.parametrize("which", ["single", "sharded"])
def test_save_load_round_trip_identical(new_ckpt, which):
    m0 = new_ckpt["model"]
    m1, _ = load_mvloc(new_ckpt[which], new_ckpt["clip"])
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert set(s0) == set(s1)
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    o0 = m0.generate(new_ckpt["pv"], new_ckpt["ids"], 8)
    o1 = m1.generate(new_ckpt["pv"], new_ckpt["ids"], 8)
    assert o0["output_ids"] == o1["output_ids"]
    assert torch.equal(o0["final_hidden"], o1["final_hidden"])


def test_kv_cache_generation_equals_uncached_rerun(new_ckpt):
    """Reference = the official loop: re-run CLIP + the whole sequence at every step, no cache."""
    m, pv, ids = new_ckpt["model"], new_ckpt["pv"], new_ckpt["ids"]
    cached = m.generate(pv, ids, max_new_tokens=16)
    seq = ids[0].tolist()
    with torch.no_grad():
        for _ in range(16):
            embeds = m.language.embed(torch.tensor([seq]), m.language.image_features(pv))
            hidden, logits, _ = m.language.run_llm(embeds)
            nxt = int(logits[0].argmax())
            last_hidden = hidden
            seq.append(nxt)
            if nxt == m.cfg.eos_token_id:
                break
    assert cached["output_ids"] == seq
    assert seq[-1] == m.cfg.eos_token_id and m.cfg.seg_token_idx in seq[ids.shape[1]:]
    assert cached["final_hidden"].shape == last_hidden.shape  # (L_out - 1) + 255 rows
    assert float((cached["final_hidden"] - last_hidden).abs().max()) < 1e-5
    pos = seq.index(m.cfg.seg_token_idx)
    ref_row = last_hidden[0, pos - 1 + m.cfg.img_emb_len]
    assert float((cached["seg_hidden"][0] - ref_row).abs().max()) < 1e-5


def test_forward_and_generate_agree_on_seg_embedding(new_ckpt):
    p = MVLocPredictor.from_pretrained(new_ckpt["single"], new_ckpt["clip"], disk_cache=False)
    g = p.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"], mode="generate")
    assert "[SEG]" in g["text"]
    gen_ids = g["output_ids"][len(g["input_ids"]):].tolist()
    assert gen_ids[-1] == p.cfg.eos_token_id
    # the teacher-forced answer is exactly what was generated (ids; decoded random tokens need not re-tokenize)
    tf = p.model.forward_teacher_forced(new_ckpt["pv"], torch.tensor([g["output_ids"].tolist()]))
    assert tf["seg_positions"] == [g["seg_index"]]
    assert float((tf["seg_hidden"][0] - torch.from_numpy(g["seg_hidden"])).abs().max()) < 1e-5
    low, _ = p.model.decode_masks(tf["seg_hidden"], p.image_embeddings(new_ckpt["assets"])[0],
                                  torch.from_numpy(g["cam_params"]))
    assert float((low - torch.from_numpy(g["low_res"])).abs().max()) < 1e-4
    # logits come back at render resolution (200 px renders -> 256 px SAM input -> 200 px masks)
    assert g["logits"].shape == (4, 200, 200) and g["logits"].dtype == np.float32
    assert np.isfinite(g["logits"]).all() and g["logits"].std() > 0
    # label is lower-cased into the prompt
    assert "tennis_racket" in new_ckpt["tok"].decode(g["input_ids"])


def test_sam_embeddings_cached_per_asset_key(new_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path))
    p = MVLocPredictor.from_pretrained(new_ckpt["single"], new_ckpt["clip"])
    r1 = p.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"])
    r2 = p.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"])
    assert not r1["cache_hit"] and r2["cache_hit"] and r2["timings"]["sam_encoder_ms"] == 0.0
    assert np.array_equal(r1["logits"], r2["logits"])
    assert list((tmp_path / "mvloc_sam").glob("*.pt"))
    q = MVLocPredictor.from_pretrained(new_ckpt["single"], new_ckpt["clip"])  # new process-equivalent: disk hit
    r3 = q.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"])
    assert r3["cache_hit"] and np.array_equal(r1["logits"], r3["logits"])


def test_localizer_protocol_via_registry(new_ckpt):
    loc = load_localizer(str(new_ckpt["single"]), backend="torch", clip_dir=new_ckpt["clip"], disk_cache=False)
    out = loc.predict(new_ckpt["image"], LABEL, new_ckpt["assets"])
    assert isinstance(out, LocalizerOutput) and out.object_logits is None
    assert out.human_logits.shape == (4, 200, 200) and "[SEG]" in out.text
    assert out.timings["hcontact/language_ms"] > 0
    with pytest.raises(LocalizerError, match="object_label"):
        loc.predict(new_ckpt["image"], "bad\tlabel", new_ckpt["assets"])
    with pytest.raises(LocalizerError, match="image_rgb"):
        loc.predict(new_ckpt["image"].astype(np.float32), LABEL, new_ckpt["assets"])
    with pytest.raises(LocalizerError, match="renders"):
        bad = SimpleNamespace(renders=new_ckpt["assets"].renders[:2], key="two-views")  # 2 views, checkpoint has 4
        loc.predict(new_ckpt["image"], LABEL, bad)


# ---- bad checkpoints ----------------------------------------------------------------------------
def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_mvloc(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_mvloc(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mvloc(tmp_path / "nope")


def test_missing_clip_folder(new_ckpt, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["single"], d)  # no sibling openai/clip-vit-large-patch14
    with pytest.raises(CheckpointError, match="CLIP vision tower folder not found.*--clip"):
        load_mvloc(d)
    with pytest.raises(CheckpointError, match="CLIP vision tower folder not found"):
        load_mvloc(d, tmp_path / "missing_clip")


def test_key_and_shape_mismatch(new_ckpt, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["single"], d)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    sd["model.visual_model.mask_decoder.bogus.weight"] = torch.zeros(1)
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="unexpected key 'model.visual_model.mask_decoder.bogus.weight'"):
        load_mvloc(d, new_ckpt["clip"])
    del sd["model.visual_model.mask_decoder.bogus.weight"]
    del sd["model.text_hidden_fcs.0.2.bias"]
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="missing from the checkpoint.*text_hidden_fcs.0.2.bias"):
        load_mvloc(d, new_ckpt["clip"])
    sd["model.text_hidden_fcs.0.2.bias"] = torch.zeros(64)
    torch.save(sd, d / "pytorch_model.bin")
    _set_config(d, intermediate_size=40)
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'model.layers.0.mlp.gate_proj.weight'"):
        load_mvloc(d, new_ckpt["clip"])


def test_sharded_index_with_missing_shard(new_ckpt, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["sharded"], d)
    next(d.glob("pytorch_model-00002-*.bin")).unlink()
    with pytest.raises(CheckpointError, match="shard"):
        load_mvloc(d, new_ckpt["clip"])


def test_cli_bad_inputs(new_ckpt, tmp_path, capsys):
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    base = ["localize", str(img), "--model", str(new_ckpt["single"]), "--clip", str(new_ckpt["clip"]),
            "--assets", str(new_ckpt["root"] / "data" / "hcontact_vitruvian"), "--out", str(tmp_path)]
    assert cli_main(base + ["--object", "bot\x07tle"]) == 2
    assert "control" in capsys.readouterr().out
    assert cli_main(base + ["--object", "bottle", "--question", " "]) == 2
    assert "empty prompt" in capsys.readouterr().out
    assert cli_main(base + ["--object", "bottle", "--mode", "forward", "--answer", "no token here"]) == 2
    assert "[SEG]" in capsys.readouterr().out
    assert cli_main(["localize", str(img), "--object", "bottle", "--model", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not an InteractVLM checkpoint folder" in capsys.readouterr().out


# ---- review regressions: real-checkpoint failure modes the tiny fixtures do not show ---------------
def test_bf16_keeps_rope_frequencies_fp32(conformance_dir):
    """Official 4.31 builds the RoPE cos/sin cache from float32 frequencies before ``model.bfloat16()``; cast to
    bf16 the frequencies put the phase off by ~0.4 rad at position 400 with LLaMA-2's head_dim 128."""
    root = conformance_dir / FX
    for prec, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        m, _ = load_mvloc(root / TOK_DIR, root / "openai" / "clip-vit-large-patch14", precision=prec)
        rot = m.language.llm.model.rotary_emb
        assert rot.inv_freq.dtype == torch.float32
        assert m.language.llm.lm_head.weight.dtype == dt  # the rest is in the requested precision
        hd = m.cfg.hidden_size // m.cfg.num_attention_heads
        t = torch.arange(1024, dtype=torch.float32)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ref = torch.cat([torch.outer(t, inv)] * 2, -1).cos().to(dt)  # official cos_cached.to(dtype)
        cos, _ = rot(torch.zeros(1, dtype=dt), torch.arange(1024)[None])
        assert float((cos[0].float() - ref.float()).abs().max()) <= 2 ** -8


def test_tokenizer_files_checked_before_weights(new_ckpt, tmp_path, monkeypatch, capsys):
    import interactvlm_ros.models.mvloc.checkpoint as C

    def no_weights(*a, **k):
        raise AssertionError("weights were read before the tokenizer files were checked")

    monkeypatch.setattr(C, "load_official_weights", no_weights)
    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["single"], d)
    (d / "tokenizer.model").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.model: missing"):
        MVLocPredictor.from_pretrained(d, new_ckpt["clip"])
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    assert cli_main(["localize", str(img), "--object", "bottle", "--model", str(d), "--clip", str(new_ckpt["clip"]),
                     "--assets", str(new_ckpt["root"] / "data" / "hcontact_vitruvian"), "--out", str(tmp_path / "out")]) == 2
    assert "tokenizer.model" in capsys.readouterr().out
    shutil.copyfile(new_ckpt["single"] / "tokenizer.model", d / "tokenizer.model")
    (d / "added_tokens.json").unlink()  # would tokenize <im_start>/<im_end> as text, silently
    with pytest.raises(CheckpointError, match=r"added_tokens.json: added token '\[SEG\]' missing"):
        MVLocPredictor.from_pretrained(d, new_ckpt["clip"])
    (d / "added_tokens.json").write_text(json.dumps({"[SEG]": 512, "<im_start>": 513}))
    with pytest.raises(CheckpointError, match="'<im_end>' missing"):
        MVLocPredictor.from_pretrained(d, new_ckpt["clip"])
    (d / "added_tokens.json").write_text(json.dumps({"[SEG]": 513, "<im_start>": 512, "<im_end>": 514}))
    with pytest.raises(CheckpointError, match=r"\[SEG\]=513 but config.json says 512"):
        MVLocPredictor.from_pretrained(d, new_ckpt["clip"])


def _set_config(d, **changes):
    """Edit the checkpoint folder ``d``'s config.json."""
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def test_unknown_view_type_fails_at_load(new_ckpt, tmp_path, monkeypatch):
    import interactvlm_ros.models.mvloc.checkpoint as C

    monkeypatch.setattr(C, "_build", lambda *a, **k: pytest.fail("model built before config.json was validated"))
    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["single"], d)
    _set_config(d, hC_sam_view_type="4MV-Z_Vitru_mv3")
    with pytest.raises(CheckpointError, match=r"config.json: hC_sam_view_type='4MV-Z_Vitru_mv3' \(task hcontact\)"):
        load_mvloc(d, new_ckpt["clip"])


def test_truncated_safetensors_is_a_checkpoint_error(new_ckpt, tmp_path):
    from safetensors.torch import save_file

    d = tmp_path / "ckpt"
    shutil.copytree(new_ckpt["single"], d)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    (d / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in sd.items()}, d / "model.safetensors", metadata={"format": "pt"})
    m, _ = load_mvloc(d, new_ckpt["clip"])
    assert torch.equal(m.state_dict()["language.llm.lm_head.weight"], new_ckpt["model"].state_dict()["language.llm.lm_head.weight"])
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])  # interrupted download
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot be read as a safetensors file.*re-download"):
        load_mvloc(d, new_ckpt["clip"])


def test_label_braces_substituted_once(new_ckpt):
    """A label containing '{object}' is inserted as is (one-pass substitution), not substituted again."""
    from interactvlm_ros.models.mvloc import prompts as P

    p = MVLocPredictor.from_pretrained(new_ckpt["single"], new_ckpt["clip"], disk_cache=False)
    r = p.run(new_ckpt["image"], "{object} cup", "hcontact", new_ckpt["assets"], mode="forward",
              question="Touching the {class_name}? ({object})")
    want = P.build_prompt("Touching the {object} cup? ({object} cup)", "It is [SEG].")
    assert r["input_ids"].tolist() == new_ckpt["tok"].tokenize_with_image(want)


# ---- audit regressions: the CLIP folder, caches and --out a user's machine has -----------------------
def test_clip_folder_with_missing_weights_or_other_patch_count_is_refused(new_ckpt, tmp_path):
    """transformers fills CLIP weights a folder lacks with random values (a log line only), and a CLIP of another
    input size (``clip-vit-large-patch14-336``: same width, 576 patches) shifts the [SEG] row silently; both were
    accepted, with wrong contact and exit 0."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    part = tmp_path / "clip_partial"
    shutil.copytree(new_ckpt["clip"], part)
    sd = torch.load(part / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in sd.items() if ".layers.1." not in k}, part / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"clip_partial: \d+ CLIP vision weight\(s\) missing.*--clip"):
        load_mvloc(new_ckpt["single"], part)
    vcfg = CLIPVisionConfig.from_pretrained(str(new_ckpt["clip"]))
    vcfg.image_size = 252  # 18 x 18 patches
    CLIPVisionModel(vcfg).save_pretrained(tmp_path / "clip252", safe_serialization=False)
    with pytest.raises(CheckpointError, match=r"clip252: CLIP gives 324 image tokens .* img_emb_len=255 needs 256"):
        load_mvloc(new_ckpt["single"], tmp_path / "clip252")
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    assert cli_main(["localize", str(img), "--object", "bottle", "--model", str(new_ckpt["single"]), "--clip",
                     str(part), "--out", str(tmp_path / "out")]) == 2


def test_unwritable_sam_cache_is_a_named_fallback(new_ckpt, tmp_path, monkeypatch, caplog):
    """A cache folder that cannot be created/written (read-only home or volume) made every frame raise OSError; the
    SAM embeddings are an optimisation: kept in memory, with one warning naming the fix."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(afile / "cache"))  # under a file: mkdir fails, also as root
    p = MVLocPredictor.from_pretrained(new_ckpt["single"], new_ckpt["clip"])
    with caplog.at_level("WARNING"):
        r = p.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"], mode="forward")
    assert r["logits"] is not None and not r["cache_hit"]
    assert "SAM embedding cache not writable" in caplog.text and "INTERACTVLM_CACHE_DIR" in caplog.text
    assert p.disk_cache is False
    assert [f for f in p.fallbacks if "SAM embedding cache not writable" in f]  # listed: contacts.json, /diagnostics
    assert p.run(new_ckpt["image"], LABEL, "hcontact", new_ckpt["assets"], mode="forward")["cache_hit"]  # in memory


def test_cli_rerun_leaves_no_stale_outputs_and_checks_out(new_ckpt, tmp_path, capsys):
    """A re-run into the same --out that generates no [SEG] (exit 1) left the first run's contact.npz, overlays and
    summary.json beside its masks.npz; an --out that cannot be written was a traceback after the model loaded."""
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    out = tmp_path / "out"
    base = ["localize", str(img), "--object", LABEL, "--model", str(new_ckpt["single"]), "--clip", str(new_ckpt["clip"]),
            "--assets", str(new_ckpt["root"] / "data" / "hcontact_vitruvian"), "--out", str(out)]
    assert cli_main(base) == 0
    assert (out / "contact.npz").is_file() and (out / "summary.json").is_file() and list(out.glob("overlay_*.png"))
    assert cli_main(base + ["--max-new-tokens", "1"]) == 1  # steered: [SEG] is the 3rd generated token
    assert sorted(p.name for p in out.iterdir()) == ["masks.npz"]
    assert "logits" not in np.load(out / "masks.npz")
    afile = tmp_path / "afile"
    afile.write_text("x")
    capsys.readouterr()
    assert cli_main(base[:-1] + [str(afile / "sub")]) == 2
    assert f"cannot write --out {afile / 'sub'}" in capsys.readouterr().out


def test_unusable_device_is_a_checkpoint_error_before_the_weights(new_ckpt, tmp_path, monkeypatch, capsys):
    """``localize --device cuda`` on a CPU-only torch (or a typo such as ``cudafoo``) was a torch traceback from inside
    model construction, after the weights' shapes were read; now one error line naming the device."""
    import interactvlm_ros.models.mvloc.checkpoint as C

    monkeypatch.setattr(C, "read_shapes", lambda *a, **k: pytest.fail("weights read before the device was checked"))
    with pytest.raises(CheckpointError, match="device: unknown device 'cudafoo'"):
        load_mvloc(new_ckpt["single"], new_ckpt["clip"], device="cudafoo")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="device 'cuda': CUDA is not available.*'cpu'"):
            load_mvloc(new_ckpt["single"], new_ckpt["clip"], device="cuda")
    else:
        with pytest.raises(CheckpointError, match="device 'cuda:99' does not exist"):
            load_mvloc(new_ckpt["single"], new_ckpt["clip"], device="cuda:99")
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    assert cli_main(["localize", str(img), "--object", "bottle", "--model", str(new_ckpt["single"]), "--clip",
                     str(new_ckpt["clip"]), "--assets", str(new_ckpt["root"] / "data" / "hcontact_vitruvian"),
                     "--device", "cudafoo", "--out", str(tmp_path / "out")]) == 2
    assert "unknown device 'cudafoo'" in capsys.readouterr().out


def test_cli_label_and_assets_checked_before_the_model_loads(new_ckpt, tmp_path, monkeypatch, capsys):
    """A missing --assets (object model), an asset folder that does not exist (hcontact's default
    <model>/../data/hcontact_vitruvian when data.zip was not unpacked there) or a bad label were reported only after
    the checkpoint was loaded — minutes and ~26 GB for the 13B release."""
    monkeypatch.setattr(MVLocPredictor, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("model loaded before the label/assets were checked")))
    img = new_ckpt["root"] / "inputs" / "bottle__synthetic_224.png"
    base = ["localize", str(img), "--model", str(new_ckpt["single"]), "--clip", str(new_ckpt["clip"]),
            "--out", str(tmp_path / "out")]
    assert cli_main(base + ["--object", "bottle"]) == 2  # default assets folder: <model>/../data/... not there
    assert "data/hcontact_vitruvian: view-asset folder not found" in capsys.readouterr().out
    assert cli_main(base + ["--object", "bottle", "--assets", str(tmp_path / "nope")]) == 2
    assert "nope: view-asset folder not found; pass --assets DIR" in capsys.readouterr().out
    assert cli_main(base + ["--object", "bottle", "--task", "oafford"]) == 2
    assert "--assets: object tasks need" in capsys.readouterr().out
    assert cli_main(base + ["--object", "a\nb", "--assets", str(new_ckpt["root"] / "data" / "hcontact_vitruvian")]) == 2
    assert "control" in capsys.readouterr().out
