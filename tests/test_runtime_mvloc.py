"""The runtime-backed MV-Loc (ONNX Runtime / torch engines) against the hcontact conformance fixture."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interactvlm_ros.runtime import BackendUnavailableError, EngineInputError
from interactvlm_ros.runtime.localizer import RuntimeMVLoc

FX = "interactvlm-hcontact-tiny"
CKPT = "interactvlm-3d-hcontact-damon-tiny"


def _tf_qa(root):
    conv = json.loads((root / "inputs" / "prompts.json").read_text())["tf_conversation"]
    return conv.split("<im_end>\n", 1)[1].split(" ASSISTANT: ", 1)[0], conv.split(" ASSISTANT: ", 1)[1][: -len("</s>")]


@pytest.fixture(scope="module")
def fx(conformance_dir):
    from PIL import Image

    from interactvlm_ros.assets import load_official_human_assets

    root = conformance_dir / FX
    assets = load_official_human_assets(root / "data/hcontact_vitruvian")
    image = np.asarray(Image.open(root / "inputs/bottle__synthetic_224.png").convert("RGB"))
    return root, assets, image


@pytest.fixture(scope="module")
def ort_loc(fx):
    root, _, _ = fx
    # no onnx_dir: exported once into paths.cache_dir("onnx", <checkpoint identity>) (test cache dir)
    return RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", device="cpu", disk_cache=False)


def test_backend_and_engines(ort_loc):
    assert ort_loc.backend_choice.backend == "onnxruntime"
    assert set(ort_loc.engines) == {"language", "sam_encoder", "mask_decoder"}
    assert all(e.backend == "onnxruntime" for e in ort_loc.engines.values())
    info = ort_loc.runtime_info
    assert info["backend"]["backend"] == "onnxruntime" and info["engines"]["sam_encoder"]["outputs"][0]["name"] == "image_embeddings"
    assert (ort_loc.onnx_dir / "manifest.json").is_file()
    with pytest.raises(EngineInputError, match="missing"):
        ort_loc.engines["mask_decoder"].run({"seg_hidden": np.zeros((1, 64), np.float32)})


def test_ort_forward_reproduces_fixture(ort_loc, fx):
    root, assets, image = fx
    E = np.load(root / "expected" / "forward_teacher_forced.npz")
    q, a = _tf_qa(root)
    r = ort_loc.run(image, "bottle", "hcontact", assets, mode="forward", question=q, answer=a)
    assert r["input_ids"].tolist() == E["input_ids"][0].tolist()
    assert r["seg_index"] == int(E["seg_token_index"])
    assert np.abs(r["seg_hidden"] - E["seg_hidden_pre_fc"]).max() <= 1e-4
    assert np.abs(r["low_res"] - E["low_res_masks"]).max() <= 1e-3
    assert np.abs(r["iou"] - E["iou_predictions"]).max() <= 1e-4
    lg = r["logits"]
    assert lg.dtype == np.float32 and lg.shape == (4, 1024, 1024)
    assert np.abs(lg[:, ::8, ::8] - E["pred_masks_sub8"]).max() <= 1e-3
    assert np.abs(lg[:, 480:544, 480:544] - E["pred_masks_crop_r480_c480_64"]).max() <= 1e-3
    emb, _, hit = ort_loc.image_embeddings(assets)
    assert hit  # SAM embeddings of the static renders are computed once
    assert np.abs(emb.numpy()[:, :, ::8, ::8] - E["image_embeddings_sub8"]).max() <= 1e-4


def test_ort_generate_reproduces_fixture(ort_loc, fx):
    """Per-step full re-run of the language graph (no KV cache) gives the official ids and masks."""
    root, assets, image = fx
    E = np.load(root / "expected" / "generate.npz")
    r = ort_loc.run(image, "bottle", "hcontact", assets, mode="generate")
    assert r["output_ids"].tolist() == E["output_ids"][0].tolist()
    assert r["seg_index"] == int(E["seg_token_index"]) and "[SEG]" in r["text"]
    assert np.abs(r["low_res"] - E["low_res_masks"]).max() <= 1e-3
    assert np.abs(r["logits"][:, ::8, ::8] - E["pred_masks_sub8"]).max() <= 1e-3


def test_predict_protocol(ort_loc, fx):
    from interactvlm_ros.models.base import LocalizerOutput

    _, assets, image = fx
    ort_loc.mode = "forward"
    try:
        out = ort_loc.predict(image, "bottle", assets)
    finally:
        ort_loc.mode = "generate"
    assert isinstance(out, LocalizerOutput)
    assert out.human_logits.shape == (4, 1024, 1024) and out.object_logits is None
    assert "hcontact/decoder_ms" in out.timings


def test_torch_engines_match_ort(fx, ort_loc):
    """The torch backend runs the same graphs through the same Engine interface."""
    root, assets, image = fx
    tl = RuntimeMVLoc.from_pretrained(root / CKPT, backend="torch", device="cpu", disk_cache=False, torch_native=False)
    assert tl.backend_choice.backend == "torch" and tl.engines["language"].backend == "torch"
    q, a = _tf_qa(root)
    rt = tl.run(image, "bottle", "hcontact", assets, mode="forward", question=q, answer=a)
    ro = ort_loc.run(image, "bottle", "hcontact", assets, mode="forward", question=q, answer=a)
    scale = np.abs(rt["low_res"]).max()
    assert np.abs(rt["low_res"] - ro["low_res"]).max() / scale <= 1e-4


def test_unavailable_backends_and_missing_graphs(fx, tmp_path):
    root, _, _ = fx
    try:
        import tensorrt  # noqa: F401
    except Exception:
        with pytest.raises(BackendUnavailableError, match="tensorrt"):
            RuntimeMVLoc.from_pretrained(root / CKPT, backend="tensorrt")
    with pytest.raises(FileNotFoundError, match="no manifest.json.*interactvlm export"):
        RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", onnx_dir=tmp_path)


def test_registry_loaders_and_native_torch(fx):
    """``load_auto`` (for models/registry.py) follows the auto order; torch choice -> B1's native predictor."""
    from interactvlm_ros.models.mvloc.model import MVLocModel
    from interactvlm_ros.runtime.localizer import load_auto

    root, _, _ = fx
    loc = load_auto(root / CKPT, device="cpu", disk_cache=False)
    assert loc.backend_choice.backend == "onnxruntime" and loc.name == "mvloc[onnxruntime]"
    native = RuntimeMVLoc.from_pretrained(root / CKPT, backend="torch", device="cpu", disk_cache=False)
    assert isinstance(native.model, MVLocModel) and native.backend_choice.backend == "torch"
    with pytest.raises(ValueError, match="quantization.*PyTorch"):
        RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", quantization="8bit")


def test_onnx_dir_without_export_fails_fast_for_any_backend_spelling(fx, tmp_path):
    """A wrong ``onnx_dir`` is an error naming it, also with backend auto / "ONNXRuntime" (not a silent export into it)."""
    root, _, _ = fx
    for backend in ("auto", "ONNXRuntime"):
        with pytest.raises(FileNotFoundError, match="no manifest.json.*interactvlm export"):
            RuntimeMVLoc.from_pretrained(root / CKPT, backend=backend, device="cpu", onnx_dir=tmp_path / "typo")
        assert not (tmp_path / "typo").exists()


def _export_copy(src, dst, *key_path):
    """A copy of the export folder ``src`` at ``dst`` whose manifest lacks the entry at ``key_path``."""
    import shutil

    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    parent = m
    for k in key_path[:-1]:
        parent = parent[k]
    del parent[key_path[-1]]
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_manifest_without_a_graph_names_the_file(ort_loc, fx, tmp_path):
    from interactvlm_ros.export.onnx_export import ExportError

    root, _, _ = fx
    d = _export_copy(ort_loc.onnx_dir, tmp_path / "onnx", "graphs", "mask_decoder")
    with pytest.raises(ExportError, match=r"manifest.json: no graph\(s\) \['mask_decoder'\].*interactvlm export"):
        RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", device="cpu", onnx_dir=d, disk_cache=False)


def test_backend_and_fallbacks_reach_the_pipeline(ort_loc, fx, caplog):
    """The pipeline reads ``localizer.backend`` and ``localizer.fallbacks`` (-> /diagnostics): the chosen backend, a
    backend-selection fallback and a precision ONNX Runtime cannot apply are all named there."""
    import logging

    from interactvlm_ros.runtime.localizer import load_auto

    root, _, _ = fx
    assert ort_loc.backend == "onnxruntime" and ort_loc.fallbacks == []  # explicit onnxruntime/cpu: no fallback
    auto = load_auto(root / CKPT, device="auto", disk_cache=False)
    assert auto.backend == auto.backend_choice.backend
    assert any(f.startswith("runtime backend:") for f in auto.fallbacks) == auto.backend_choice.fallback
    with caplog.at_level(logging.WARNING, logger="interactvlm_ros.runtime.localizer"):
        half = RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", device="cpu", precision="fp16",
                                            disk_cache=False)
    (fb,) = half.fallbacks
    assert "precision='fp16'" in fb and "fp32 used" in fb and fb in caplog.text
    assert half.runtime_info["fallbacks"] == [fb]


def test_tensorrt_default_precision_uses_the_engines_build_engines_py_builds(ort_loc, fx, tmp_path, monkeypatch,
                                                                             stub_tensorrt):
    """model_export/build_engines.py (and `interactvlm export --tensorrt`) build fp16 + fp32 decoder by default; the
    runtime's default must hit those engines, not build a second fp32 set on first start (no GPU: stubs)."""
    import interactvlm_ros.export.tensorrt_build as TB
    import interactvlm_ros.runtime.localizer as L
    from interactvlm_ros.runtime.select import BackendChoice

    root, _, _ = fx
    fake = dict(cache=TB.EngineCache(tmp_path / "engines"), build_fn=lambda p, pr, pf, ws: b"plan:" + pr.encode(),
                validate_fn=None, trt_version="10.11.0", gpu="GPU (sm_90)")
    TB.build_engines(ort_loc.onnx_dir / "manifest.json", precision="fp16", decoder_precision="fp32", **fake)  # the script
    seen = stub_tensorrt(fake)
    monkeypatch.setattr(L, "select_backend", lambda b, d: BackendChoice("tensorrt", "cuda", "stub", requested=b))
    loc = RuntimeMVLoc.from_pretrained(root / CKPT, backend="auto", onnx_dir=ort_loc.onnx_dir, disk_cache=False)
    assert {g: (r["status"], r["precision"]) for g, r in seen.items()} == {
        "language": ("hit", "fp16"), "sam_encoder": ("hit", "fp16"), "mask_decoder": ("hit", "fp32")}
    assert loc.backend == "tensorrt" and loc.engines["language"].precision == "fp16"


def test_onnx_cache_identity_covers_the_export_code(tmp_path, monkeypatch):
    """The ONNX cache key names 'the export code's hash' (docs/runtime.md): the generic exporter (onnx_export.py) and
    the modules the graphs are traced from are part of it, so a change to them re-exports instead of reusing graphs."""
    from pathlib import Path

    from interactvlm_ros.runtime import localizer as L

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"0")
    base = L.checkpoint_identity(model, None)
    real = Path.read_bytes
    for name in ("onnx_export.py", "modules.py", "mvloc_export.py", "model.py"):
        monkeypatch.setattr(Path, "read_bytes", lambda self, n=name: real(self) + (b"#" if self.name == n else b""))
        assert L.checkpoint_identity(model, None) != base, name
    monkeypatch.setattr(Path, "read_bytes", real)
    assert L.checkpoint_identity(model, None) == base


def test_onnx_dir_from_another_checkpoint_is_refused(ort_loc, fx, conformance_dir, tmp_path, caplog, monkeypatch):
    """An explicit ``onnx_dir`` of checkpoint A with checkpoint B (A's graphs + B's tokenizer: wrong contact, no error)
    is an ExportError naming both and the fix; checked on the manifest's cheap checkpoint fingerprint, and on
    model_config + tokenizer sha256 for older manifests without it. A moved copy of A still matches."""
    import logging
    import shutil

    import torch

    from interactvlm_ros.export.onnx_export import ExportError
    from interactvlm_ros.runtime import localizer as L

    root, _, _ = fx
    other = conformance_dir / "interactvlm-oafford-tiny" / "interactvlm-3d-oafford-lemon-piad-tiny"
    kw = dict(backend="onnxruntime", device="cpu", disk_cache=False)
    with pytest.raises(ExportError, match=rf"manifest.json: exported from .*{CKPT}, not from .*{other.name} "
                                          r"\(checkpoint fingerprint .* differs; tokenizer.model differs\)"
                                          r".*interactvlm export --model"):
        RuntimeMVLoc.from_pretrained(other, onnx_dir=ort_loc.onnx_dir, **kw)
    # same config.json + tokenizer, other weights (two fine-tunes of one architecture): the fingerprint tells them apart
    tuned = tmp_path / "tuned"
    shutil.copytree(root / CKPT, tuned)
    sd = torch.load(tuned / "pytorch_model.bin", weights_only=True)
    key = next(k for k in sd if k.endswith("mask_decoder.iou_token.weight"))
    sd[key] = sd[key] + 1.0
    torch.save(sd, tuned / "pytorch_model.bin")
    clip = root / "openai" / "clip-vit-large-patch14"
    with pytest.raises(ExportError, match=r"checkpoint fingerprint .* differs\)"):
        RuntimeMVLoc.from_pretrained(tuned, clip_dir=clip, onnx_dir=ort_loc.onnx_dir, **kw)
    # a moved copy of the right checkpoint is accepted (no paths / mtimes in the fingerprint)
    moved = tmp_path / "moved"
    shutil.copytree(root / CKPT, moved)
    with caplog.at_level(logging.INFO, logger="interactvlm_ros.runtime.localizer"):
        RuntimeMVLoc.from_pretrained(moved, clip_dir=clip, onnx_dir=ort_loc.onnx_dir, **kw)
    assert "checked: checkpoint fingerprint + tokenizer sha256" in caplog.text
    # an older manifest (no fingerprint): model_config vs config.json + tokenizer, logged as the weaker check
    old = _export_copy(ort_loc.onnx_dir, tmp_path / "old_onnx", "source", "checkpoint_fingerprint")
    with pytest.raises(ExportError, match=r"model config differs: hC_loss_weight=3.0 \(export\) vs 0.0 \(config"):
        RuntimeMVLoc.from_pretrained(other, onnx_dir=old, **kw)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="interactvlm_ros.runtime.localizer"):
        RuntimeMVLoc.from_pretrained(root / CKPT, onnx_dir=old, **kw)
    assert "weaker checks of an older manifest (model config" in caplog.text
    # the automatic cache (no onnx_dir) is keyed on the checkpoint already: not re-checked on every start
    monkeypatch.setattr(L, "check_onnx_source", lambda *a: pytest.fail("cache path re-checked"))
    assert RuntimeMVLoc.from_pretrained(root / CKPT, **kw).onnx_dir == ort_loc.onnx_dir


def test_tokenizer_checked_and_cache_writable_before_the_onnx_export(fx, tmp_path, monkeypatch):
    """ONNX Runtime / TensorRT: a folder whose added_tokens.json lacks [SEG] was exported to ONNX (for 13B: the whole
    checkpoint read in fp32 and traced) before the tokenizer was checked; an ONNX cache that cannot be written was a
    bare OSError. Both are now errors naming the file / the fix, before any export."""
    import shutil

    import interactvlm_ros.export.mvloc_export as X
    from interactvlm_ros.export.onnx_export import ExportError
    from interactvlm_ros.models.mvloc.checkpoint import CheckpointError

    root, _, _ = fx
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(tmp_path / "cache"))  # no earlier export to reuse
    d = tmp_path / "ckpt"
    shutil.copytree(root / CKPT, d)
    (d / "added_tokens.json").write_text(json.dumps({"<im_start>": 513, "<im_end>": 514}))
    monkeypatch.setattr(X, "export_mvloc", lambda *a, **k: pytest.fail("exported before the tokenizer was checked"))
    with pytest.raises(CheckpointError, match=r"added_tokens.json: added token '\[SEG\]' missing"):
        RuntimeMVLoc.from_pretrained(d, root / "openai/clip-vit-large-patch14", backend="onnxruntime", device="cpu")
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("INTERACTVLM_CACHE_DIR", str(afile / "cache"))  # cannot be created (also as root)
    with pytest.raises(ExportError, match="cannot export the ONNX graphs.*INTERACTVLM_CACHE_DIR.*onnx_dir"):
        RuntimeMVLoc.from_pretrained(root / CKPT, backend="onnxruntime", device="cpu")


@pytest.mark.parametrize("argv, what", [(["--seq", "20"], "--seq 20: use >= 36"),
                                        (["--views", "5"], "--views 5: use 1..4"),
                                        (["--views", "0"], "--views 0: use 1..4")])
def test_bench_runtime_refuses_a_prompt_or_view_count_it_cannot_run_before_exporting(argv, what, capsys, monkeypatch):
    """benchmarks/bench_runtime.py --seq below 36 was an IndexError and --views 5 an einsum RuntimeError, each after
    the (~30 s) export: now an argparse error (exit 2) before any work."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_runtime.py"
    spec = importlib.util.spec_from_file_location("bench_runtime", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "bench", lambda *a, **k: pytest.fail("benchmarked (exported) before checking"))
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2 and what in capsys.readouterr().err
