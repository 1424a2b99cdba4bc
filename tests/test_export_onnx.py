"""ONNX export of the MV-Loc graphs (tiny hcontact conformance checkpoint): manifest, dynamic axes,
ORT == PyTorch (<= 1e-4 relative) at sizes other than the export sizes, wrappers == B1's parts,
tamper detection, and the ``interactvlm export`` CLI."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx
import pytest
import torch

from interactvlm_ros.cli.main import build_parser
from interactvlm_ros.export import mvloc_export as MX
from interactvlm_ros.export.onnx_export import ExportError, check_parity, file_sha256, load_manifest, relative_error
from interactvlm_ros.models.mvloc.checkpoint import load_mvloc

CKPT = "interactvlm-hcontact-tiny/interactvlm-3d-hcontact-damon-tiny"


@pytest.fixture(scope="module")
def model(conformance_dir):
    m, _ = load_mvloc(conformance_dir / CKPT, precision="fp32")
    return m


@pytest.fixture(scope="module")
def exported(conformance_dir, tmp_path_factory):
    """Export through the CLI (what users run), with --tensorrt to see the no-TensorRT message."""
    from interactvlm_ros.cli import export as cli_export

    out = tmp_path_factory.mktemp("onnx")
    args = build_parser(only="export").parse_args(
        ["export", "--model", str(conformance_dir / CKPT), "--out", str(out), "--tensorrt", "--exporter", "torchscript"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_export.run(args)
    return out, rc, buf.getvalue()


def test_cli_writes_graphs_and_reports_missing_tensorrt(exported):
    out, rc, text = exported
    assert rc == 0, text
    for g in MX.GRAPH_NAMES:
        assert (out / f"{g}.onnx").is_file()
        assert f"{g}.onnx" in text
    try:
        import tensorrt  # noqa: F401
    except Exception:
        assert "TensorRT engines NOT built" in text and "Only the ONNX graphs were written" in text


def test_manifest_contents(exported, conformance_dir):
    out, _, _ = exported
    m = load_manifest(out, verify=True)
    assert set(m["graphs"]) == set(MX.GRAPH_NAMES)
    src = m["source"]
    assert src["checkpoint_sha256"] == MX.checkpoint_hash(conformance_dir / CKPT)
    assert src["checkpoint_fingerprint"] == MX.checkpoint_fingerprint(conformance_dir / CKPT)
    assert len(src["tokenizer_sha256"]) == 64
    assert m["model_config"]["seg_token_idx"] == 512 and m["model_config"]["hidden_size"] == 64
    for name, g in m["graphs"].items():
        assert g["opset"] >= 17
        assert g["sha256"] == file_sha256(out / g["file"])
        model = onnx.load(str(out / g["file"]))
        assert [i.name for i in model.graph.input] == [i["name"] for i in g["inputs"]]
        assert [o.name for o in model.graph.output] == [o["name"] for o in g["outputs"]]
    lang = m["graphs"]["language"]
    assert lang["inputs"][1] == {"name": "input_ids", "shape": [1, "seq"], "dtype": "int64"}
    assert lang["trt_profile"]["input_ids"][0] == [1, 2]
    dec = m["graphs"]["mask_decoder"]
    assert [i["name"] for i in dec["inputs"]] == ["seg_hidden", "image_embeddings", "cam_params"]
    assert dec["inputs"][1]["shape"] == ["views", 256, 64, 64]
    assert dec["outputs"][0] == {"name": "low_res_masks", "shape": ["views", 256, 256], "dtype": "float32"}
    assert m["graphs"]["sam_encoder"]["trt_profile"]["images"] == [[1, 3, 1024, 1024], [4, 3, 1024, 1024], [4, 3, 1024, 1024]]
    # the export-time parity ran at OTHER shapes than the export shapes and passed
    par = m["parity"]
    assert par["mask_decoder"]["shapes"]["image_embeddings"][0] == 3 and par["mask_decoder"]["ok"]
    assert par["language"]["shapes"]["input_ids"][1] == 53
    assert all(e <= 1e-4 for p in par.values() for e in p["rel_err"].values())


def test_checkpoint_fingerprint_is_cheap_and_path_independent(tmp_path, monkeypatch):
    """The runtime checks a given onnx_dir against it at every start: it reads config.json and 2 MiB per weight
    file (not the 27 GB), ignores the folder's path and mtimes, and changes with the config, a size or either end."""
    import builtins
    import os
    import shutil

    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"hidden_size": 64}')
    data = bytearray(os.urandom(5 << 20))
    (a / "pytorch_model.bin").write_bytes(bytes(data))
    fp = MX.checkpoint_fingerprint(a)
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    os.utime(b / "pytorch_model.bin", (0, 0))
    assert MX.checkpoint_fingerprint(b) == fp
    read, real_open = [], builtins.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            out = self.f.read(n)
            read.append(len(out))
            return out

        def seek(self, *a):
            return self.f.seek(*a)

    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: Counting(real_open(p, *a, **k)))
    assert MX.checkpoint_fingerprint(b) == fp and sum(read) == 2 * MX.FINGERPRINT_BYTES
    monkeypatch.undo()
    data[-1] ^= 1  # the end of the file (a zip's central directory with every entry's CRC)
    (b / "pytorch_model.bin").write_bytes(bytes(data))
    assert MX.checkpoint_fingerprint(b) != fp
    (b / "pytorch_model.bin").write_bytes(bytes(data[:-1]))
    assert MX.checkpoint_fingerprint(b) != fp
    shutil.copy(a / "pytorch_model.bin", b / "pytorch_model.bin")
    (b / "config.json").write_text('{"hidden_size": 65}')
    assert MX.checkpoint_fingerprint(b) != fp


def test_ort_matches_torch_at_new_shapes(exported, model):
    """Each graph at sizes it was neither exported nor parity-checked at (2 views, sequence 77)."""
    out, _, _ = exported
    specs = MX.graph_specs(model)
    g = torch.Generator().manual_seed(7)
    new = {
        "language": (torch.randn(1, 3, 224, 224, generator=g), MX._example_ids(model.cfg, 77, 30, seed=3)),
        "sam_encoder": (torch.randn(2, 3, 1024, 1024, generator=g),),
        "mask_decoder": (torch.randn(1, 64, generator=g), torch.randn(2, 256, 64, 64, generator=g),
                         torch.rand(2, 5, generator=g)),
    }
    for name, spec in specs.items():
        res = check_parity(spec, out / f"{name}.onnx", inputs=new[name], tol=1e-4)
        assert res["ok"] and all(e <= 1e-4 for e in res["rel_err"].values()), (name, res)


def test_wrappers_equal_b1_parts(model, conformance_dir):
    """The traceable wrappers compute exactly what B1's torch parts compute (fixture inputs)."""
    root = conformance_dir / "interactvlm-hcontact-tiny"
    inp = np.load(root / "inputs" / "inputs.npz")
    E = np.load(root / "expected" / "forward_teacher_forced.npz")
    mods = MX.graph_modules(model)
    pv = torch.from_numpy(inp["pixel_values_clip"])
    ids = torch.from_numpy(inp["tf_input_ids"])
    with torch.no_grad():
        h_w, lg_w = mods["language"](pv, ids)
        h_p, lg_p = model.language(pv, ids)
        assert relative_error(h_w.numpy(), h_p.numpy()) < 1e-5 and relative_error(lg_w.numpy(), lg_p.numpy()) < 1e-5
        assert np.abs(h_w.numpy() - E["llm_final_hidden"]).max() < 1e-4
        seg = h_w[0, [int(E["seg_hidden_index"])]]
        emb = torch.randn(4, 256, 64, 64, generator=torch.Generator().manual_seed(1))
        cams = torch.from_numpy(inp["cam_params"][0])
        lo_w, iou_w = mods["mask_decoder"](seg, emb, cams)
        lo_p, iou_p = model.decoder(seg, emb, cams)
    assert lo_w.shape == (4, 256, 256) and iou_w.shape == (4,)
    assert relative_error(lo_w.numpy(), lo_p[:, 0].numpy()) < 1e-5
    assert relative_error(iou_w.numpy(), iou_p[:, 0].numpy()) < 1e-5


def test_tampered_graph_is_detected(exported, tmp_path):
    import shutil

    out, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    p = copy / "mask_decoder.onnx"
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"mask_decoder\.onnx: sha256 differs"):
        load_manifest(copy)
    (copy / "language.onnx").unlink()
    with pytest.raises(ExportError, match=r"language\.onnx: graph file of 'language' is missing"):
        load_manifest(copy)
    (copy / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ExportError, match="format"):
        load_manifest(copy)


def test_parity_check_can_fail(exported, model):
    out, _, _ = exported
    spec = MX.graph_specs(model)["mask_decoder"]

    class Off:
        input_names = spec.input_names

        def __init__(self, inner):
            self.inner = inner

        def run(self, feed):
            r = self.inner.run(feed)
            return {k: v + 0.01 * np.abs(v).max() for k, v in r.items()}

    from interactvlm_ros.runtime.ort_engine import OrtEngine

    with pytest.raises(ExportError, match="differs from PyTorch beyond"):
        check_parity(spec, out / "mask_decoder.onnx", engine_factory=lambda p: Off(OrtEngine(p)))
    with pytest.raises(ExportError, match="export shapes"):
        check_parity(spec, out / "mask_decoder.onnx", inputs=spec.example_inputs)


def test_cli_bad_model_dir_is_clear(tmp_path, capsys):
    from interactvlm_ros.cli.main import main

    rc = main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_dynamo_exporter_on_decoder(model, tmp_path):
    """The torch.export-based exporter (forward path once TorchScript export is removed) gives the same graph."""
    pytest.importorskip("onnxscript")
    from interactvlm_ros.export.onnx_export import export_graph

    spec = MX.graph_specs(model)["mask_decoder"]
    entry = export_graph(spec, tmp_path, exporter="dynamo")
    assert entry["exporter"] == "dynamo" and entry["opset"] >= 18
    g = torch.Generator().manual_seed(11)
    res = check_parity(spec, tmp_path / entry["file"], inputs=(torch.randn(1, 64, generator=g),
                       torch.randn(2, 256, 64, 64, generator=g), torch.rand(2, 5, generator=g)))
    assert res["rel_err"]["low_res_masks"] <= 1e-4


def test_cli_out_that_cannot_be_written_fails_before_the_export(tmp_path, capsys, monkeypatch):
    """An --out under a file / on a read-only volume was a traceback after the checkpoint was loaded and traced."""
    import interactvlm_ros.export.mvloc_export as X
    from interactvlm_ros.cli.main import main

    monkeypatch.setattr(X, "export_mvloc", lambda *a, **k: pytest.fail("exported into an --out that cannot be written"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = main(["export", "--model", str(tmp_path / "nope"), "--out", str(afile / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot write --out {afile / 'o'}" in err and "Traceback" not in err


def test_export_keeps_the_users_files_and_still_folds_per_tensor_files(tmp_path, monkeypatch):
    """Files in --out that the export did not write were deleted as "stray per-tensor files": their mtime was compared
    with time.perf_counter(), so every file not ending in .onnx/.json/.engine/.data went — with --out = the checkpoint
    folder, pytorch_model.bin and tokenizer.model. Only the files the graph references as external data are folded
    into <name>.onnx.data and removed."""
    import interactvlm_ros.export.onnx_export as OX
    from interactvlm_ros.export.onnx_export import GraphSpec, export_graph

    lin = torch.nn.Linear(64, 32).eval()  # 8 KiB weight: above the 1 KiB external-data threshold
    spec = GraphSpec("tiny", lin, (torch.randn(2, 64),), ["x"], ["y"], {"x": {0: "b"}, "y": {0: "b"}},
                     {"b": (1, 2, 4)}, (torch.randn(3, 64),))
    mine = {"pytorch_model.bin": b"weights", "tokenizer.model": b"sp", "export.log": b"log", "notes.txt": b"n"}
    for name, data in mine.items():
        (tmp_path / name).write_bytes(data)
    export_graph(spec, tmp_path)
    assert {n: (tmp_path / n).read_bytes() for n in mine} == mine
    assert not (tmp_path / "tiny.onnx.data").exists()

    real = OX._export_torchscript

    def per_tensor(spec, path, opset):  # what the legacy exporter does for a > 2 GiB graph
        real(spec, path, opset)
        m = onnx.load(str(path))
        onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)

    monkeypatch.setattr(OX, "_export_torchscript", per_tensor)
    entry = export_graph(spec, tmp_path)
    assert entry["data"] == ["tiny.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*mine, "tiny.onnx", "tiny.onnx.data"])
    assert {n: (tmp_path / n).read_bytes() for n in mine} == mine
    res = check_parity(spec, tmp_path / "tiny.onnx")
    assert res["ok"]


def _script(name):
    """model_export/<name>.py as a module (the scripts are not in the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "model_export" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"model_export_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_model_export_scripts_refuse_bad_folders_in_one_line(tmp_path, capsys):
    """model_export/export_onnx.py with a missing --model or an --out under a file, and build_engines.py with an
    --onnx folder holding no (or an unreadable) manifest, were tracebacks; `interactvlm export` says one line."""
    export_onnx, build = _script("export_onnx"), _script("build_engines")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert export_onnx.main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "folder does not exist" in err
    assert export_onnx.main(["--model", str(tmp_path / "nope"), "--out", str(afile / "o")]) == 2
    assert f"cannot write --out {afile / 'o'}" in capsys.readouterr().err
    assert build.main(["--onnx", str(tmp_path / "empty")]) == 2
    assert "no manifest; run `interactvlm export" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{")
    assert build.main(["--onnx", str(tmp_path / "bad")]) == 2
    assert "unreadable manifest" in capsys.readouterr().err
