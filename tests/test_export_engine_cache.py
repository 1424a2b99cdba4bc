"""TensorRT engine cache: the key holds graph hash / TensorRT version / GPU / precision; stale or
corrupt engines are rebuilt and never returned. The builder is a test double (no TensorRT here);
the cache logic is what is tested."""
from __future__ import annotations

import json

import pytest

from interactvlm_ros.export.tensorrt_build import EngineCache, EngineKey, build_engines, tensorrt_status
from interactvlm_ros.runtime.base import BackendUnavailableError


class FakeBuilder:
    """Counts builds and returns distinct bytes per build (like a real serialized engine would)."""

    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)
        return f"ENGINE#{len(self.calls)}:{args!r}".encode()


KEY = EngineKey(graph_hash="a" * 64, trt_version="10.3.0", gpu="NVIDIA H100 (sm_90)", precision="fp16", profile="{}")


def test_key_covers_hash_version_gpu_precision_profile():
    d = KEY.digest()
    for field, val in [("graph_hash", "b" * 64), ("trt_version", "10.4.0"), ("gpu", "NVIDIA L4 (sm_89)"),
                       ("precision", "fp32"), ("profile", '{"x": 1}')]:
        assert EngineKey(**{**KEY.__dict__, field: val}).digest() != d, field
    assert EngineKey(**KEY.__dict__).digest() == d


def test_build_then_hit(tmp_path):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    p1, s1 = cache.get_or_build("sam_encoder", KEY, build)
    p2, s2 = cache.get_or_build("sam_encoder", KEY, build)
    assert (s1, s2) == ("built", "hit") and p1 == p2 and len(build.calls) == 1
    meta = json.loads(p1.with_suffix(".json").read_text())
    assert meta["key"]["trt_version"] == "10.3.0" and meta["key"]["gpu"].startswith("NVIDIA H100")
    assert p1.read_bytes().startswith(b"ENGINE#1")


@pytest.mark.parametrize("field,val", [("trt_version", "10.4.0"), ("profile", '{"views": 8}')])
def test_stale_engine_rebuilt_not_loaded(tmp_path, field, val):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    p_old, _ = cache.get_or_build("llm", KEY, build)
    new_key = EngineKey(**{**KEY.__dict__, field: val})
    assert cache.check("llm", new_key)[0] == "stale"
    p_new, status = cache.get_or_build("llm", new_key, build)
    assert status.startswith("rebuilt (stale") and field in status
    assert p_new.read_bytes().startswith(b"ENGINE#2") and len(build.calls) == 2
    assert json.loads(p_new.with_suffix(".json").read_text())["key"][field] == val


def test_precision_graph_hash_and_gpu_get_their_own_files(tmp_path):
    """Another GPU model gets its own file (not a stale rebuild of the same one): the two cards of a mixed machine
    would otherwise delete each other's engines on every start."""
    cache, build = EngineCache(tmp_path), FakeBuilder()
    a, _ = cache.get_or_build("llm", KEY, build)
    b, _ = cache.get_or_build("llm", EngineKey(**{**KEY.__dict__, "precision": "fp32"}), build)
    c, _ = cache.get_or_build("llm", EngineKey(**{**KEY.__dict__, "graph_hash": "c" * 64}), build)
    d, s = cache.get_or_build("llm", EngineKey(**{**KEY.__dict__, "gpu": "NVIDIA L4 (sm_89)"}), build)
    assert len({a, b, c, d}) == 4 and len(build.calls) == 4 and s == "built"
    assert cache.get_or_build("llm", KEY, build)[1] == "hit"


def test_corrupt_engine_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    p, _ = cache.get_or_build("decoder", KEY, build)
    p.write_bytes(p.read_bytes()[:5])  # truncated file
    state, why = cache.check("decoder", KEY)
    assert state == "corrupt" and "sha256" in why
    p2, status = cache.get_or_build("decoder", KEY, build)
    assert status.startswith("rebuilt (corrupt") and p2.read_bytes().startswith(b"ENGINE#2")
    # sidecar destroyed
    p2.with_suffix(".json").write_text("{not json")
    assert cache.check("decoder", KEY)[0] == "corrupt"
    assert cache.get_or_build("decoder", KEY, build)[1].startswith("rebuilt (corrupt")
    # sidecar missing
    p2.with_suffix(".json").unlink()
    assert cache.check("decoder", KEY)[0] == "corrupt"


def test_engine_that_fails_to_deserialize_is_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.get_or_build("decoder", KEY, build)
    bad = lambda path: (_ for _ in ()).throw(RuntimeError("deserialize_cuda_engine returned None"))  # noqa: E731
    state, why = cache.check("decoder", KEY, validate_fn=bad)
    assert state == "corrupt" and "deserialize" in why
    p, status = cache.get_or_build("decoder", KEY, build, validate_fn=lambda path: path.read_bytes().startswith(b"ENGINE#2"))
    assert status.startswith("rebuilt (corrupt") and len(build.calls) == 2
    assert cache.get_or_build("decoder", KEY, build, validate_fn=lambda path: True)[1] == "hit"


def test_empty_build_is_an_error(tmp_path):
    from interactvlm_ros.export.tensorrt_build import EngineCacheError

    with pytest.raises(EngineCacheError, match="returned no data"):
        EngineCache(tmp_path).get_or_build("x", KEY, lambda: None)
    assert not list(tmp_path.glob("*.engine"))


def test_build_engines_from_manifest_uses_cache_and_profiles(tmp_path):
    manifest = {"format": "interactvlm-onnx/1", "graphs": {
        "sam_encoder": {"file": "sam_encoder.onnx", "sha256": "1" * 64,
                        "trt_profile": {"images": [[1, 3, 1024, 1024], [4, 3, 1024, 1024], [8, 3, 1024, 1024]]}},
        "mask_decoder": {"file": "mask_decoder.onnx", "sha256": "2" * 64, "trt_profile": {}},
    }}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    build, cache = FakeBuilder(), EngineCache(tmp_path / "engines")
    kw = dict(cache=cache, build_fn=build, trt_version="10.3.0", gpu="GPU-A (sm_90)")
    res = build_engines(tmp_path / "manifest.json", precision="fp16", decoder_precision="fp32", **kw)
    assert res["sam_encoder"]["status"] == "built" and res["sam_encoder"]["precision"] == "fp16"
    assert res["mask_decoder"]["precision"] == "fp32"
    onnx_path, prec, profile, _ = build.calls[0]
    assert onnx_path.name == "sam_encoder.onnx" and prec == "fp16" and profile["images"][2] == (8, 3, 1024, 1024)
    res2 = build_engines(tmp_path / "manifest.json", precision="fp16", decoder_precision="fp32", **kw)
    assert {r["status"] for r in res2.values()} == {"hit"} and len(build.calls) == 2
    res3 = build_engines(tmp_path / "manifest.json", precision="fp16", decoder_precision="fp32",
                         **{**kw, "gpu": "GPU-B (sm_89)"})
    assert all(r["status"] == "built" and r["key"]["gpu"] == "GPU-B (sm_89)" for r in res3.values())
    res4 = build_engines(tmp_path / "manifest.json", precision="fp16", decoder_precision="fp32", **kw)
    assert {r["status"] for r in res4.values()} == {"hit"}  # GPU-A's engines were kept


GPUS = {0: ("NVIDIA H100 80GB HBM3", (9, 0)), 1: ("NVIDIA L4", (8, 9)), 2: ("NVIDIA L4", (8, 9))}


@pytest.fixture
def two_gpu_kinds(monkeypatch):
    """A mixed machine without a GPU: torch.cuda reports H100 (cuda:0) and two L4s (cuda:1, cuda:2);
    ``torch.cuda.device(i)`` sets ``state["current"]`` (the returned dict) while it is entered."""
    import contextlib

    import torch

    state = {"current": 0}

    def index(d):
        return state["current"] if d is None else int(getattr(d, "index", d) or 0)

    @contextlib.contextmanager
    def device(d):
        prev, state["current"] = state["current"], index(d)
        try:
            yield
        finally:
            state["current"] = prev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(GPUS))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: GPUS[index(d)][0])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: GPUS[index(d)][1])
    monkeypatch.setattr(torch.cuda, "device", device)
    return state


def test_engines_are_keyed_and_built_on_the_chosen_device(tmp_path, two_gpu_kinds):
    """``cuda:1`` (an L4 beside an H100 at cuda:0): the key names the L4 and the build + deserialize check run with
    cuda:1 current; the H100 gets its own engines, and a second L4 (cuda:2) reuses cuda:1's."""
    import torch

    from interactvlm_ros.export.tensorrt_build import gpu_name

    assert gpu_name(0) == "NVIDIA H100 80GB HBM3 (sm_90)" and gpu_name(1) == "NVIDIA L4 (sm_89)"
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "interactvlm-onnx/1", "graphs": {
        "sam_encoder": {"file": "sam_encoder.onnx", "sha256": "1" * 64}}}))
    on = []
    build = lambda p, pr, pf, ws: on.append(("build", torch.cuda.get_device_name())) or b"plan"  # noqa: E731
    check = lambda path: on.append(("check", torch.cuda.get_device_name())) or True  # noqa: E731
    kw = dict(cache=EngineCache(tmp_path / "engines"), build_fn=build, validate_fn=check, trt_version="10.3.0")
    l4 = build_engines(tmp_path / "manifest.json", device="cuda:1", **kw)["sam_encoder"]
    assert l4["status"] == "built" and l4["key"]["gpu"] == "NVIDIA L4 (sm_89)"
    assert on == [("build", "NVIDIA L4")] and two_gpu_kinds["current"] == 0
    h100 = build_engines(tmp_path / "manifest.json", device=0, **kw)["sam_encoder"]
    assert h100["status"] == "built" and h100["key"]["gpu"].startswith("NVIDIA H100") and h100["path"] != l4["path"]
    on.clear()
    again = build_engines(tmp_path / "manifest.json", device="cuda:2", **kw)["sam_encoder"]  # same GPU model
    assert again["status"] == "hit" and again["path"] == l4["path"] and on == [("check", "NVIDIA L4")]
    with pytest.raises(ValueError, match="CUDA device"):
        build_engines(tmp_path / "manifest.json", device="cpu", **kw)


def test_runtime_builds_engines_for_its_device(tmp_path, two_gpu_kinds, stub_tensorrt):
    """``RuntimeMVLoc(device="cuda:1")`` -> engines_from_manifest keys the engines on cuda:1's GPU, not GPU 0's."""
    from interactvlm_ros.runtime.localizer import GRAPHS, engines_from_manifest
    from interactvlm_ros.runtime.select import BackendChoice

    manifest = {"format": "interactvlm-onnx/1", "graphs": {g: {"file": f"{g}.onnx", "sha256": str(i) * 64}
                                                          for i, g in enumerate(GRAPHS, 1)}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    seen = stub_tensorrt(dict(cache=EngineCache(tmp_path / "engines"), build_fn=FakeBuilder(), validate_fn=None,
                              trt_version="10.3.0"))
    engines = engines_from_manifest(tmp_path, manifest, BackendChoice("tensorrt", "cuda:1", "stub"), "fp16")
    assert {r["key"]["gpu"] for r in seen.values()} == {"NVIDIA L4 (sm_89)"}
    assert {e.device for e in engines.values()} == {"cuda:1"}


def test_trtexec_builds_on_the_chosen_device(tmp_path, monkeypatch):
    import interactvlm_ros.export.tensorrt_build as TB

    cmds = []

    def run(cmd, **kw):
        cmds.append(cmd)
        out = next(c.split("=", 1)[1] for c in cmd if c.startswith("--saveEngine="))
        open(out, "wb").write(b"plan")
        return type("Res", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(TB.shutil, "which", lambda exe: "/opt/tensorrt/bin/trtexec")
    monkeypatch.setattr(TB.subprocess, "run", run)
    assert TB.build_engine_trtexec(tmp_path / "g.onnx", "fp16", device=1) == b"plan"
    assert "--device=1" in cmds[0]
    TB.build_engine_trtexec(tmp_path / "g.onnx", "fp16")
    assert not any(c.startswith("--device") for c in cmds[1])


def test_without_tensorrt_build_engines_says_so(tmp_path):
    ok, why = tensorrt_status()
    if ok:
        pytest.skip("TensorRT present")
    assert "TensorRT" in why
    (tmp_path / "manifest.json").write_text(json.dumps({"graphs": {}}))
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        build_engines(tmp_path / "manifest.json")


def test_unknown_precision_is_refused_not_built(tmp_path):
    """A typo ("FP16") must not build an fp32 engine (trtexec gets no precision flag) and cache it as 'FP16'."""
    from interactvlm_ros.export.tensorrt_build import build_engine_trtexec

    (tmp_path / "manifest.json").write_text(json.dumps({"format": "interactvlm-onnx/1", "graphs": {
        "sam_encoder": {"file": "sam_encoder.onnx", "sha256": "1" * 64}}}))
    build = FakeBuilder()
    kw = dict(cache=EngineCache(tmp_path / "engines"), build_fn=build, trt_version="10.3.0", gpu="GPU-A (sm_90)")
    with pytest.raises(ValueError, match="precision 'FP16' unknown"):
        build_engines(tmp_path / "manifest.json", precision="FP16", **kw)
    with pytest.raises(ValueError, match="decoder_precision 'half' unknown"):
        build_engines(tmp_path / "manifest.json", precision="fp16", decoder_precision="half", **kw)
    assert build.calls == [] and not list((tmp_path / "engines").glob("*.engine"))
    with pytest.raises(ValueError, match="precision 'FP16' unknown"):
        build_engine_trtexec(tmp_path / "sam_encoder.onnx", precision="FP16")


def test_an_engine_cached_under_the_old_file_name_is_moved_not_rebuilt(tmp_path):
    """Engines cached before the file names carried the GPU (``<graph>-<precision>-<hash12>.engine``) were neither
    found nor removed: every engine rebuilt (minutes for 13B) and the old GBs left in the cache. One whose sidecar has
    this key is moved to its new name and hit; one of another GPU is left alone."""
    import hashlib

    data = b"ENGINE-BUILT-BEFORE"
    legacy = tmp_path / f"language-fp16-{KEY.graph_hash[:12]}.engine"
    legacy.write_bytes(data)
    legacy.with_suffix(".json").write_text(json.dumps(
        {"key": KEY.__dict__, "engine_sha256": hashlib.sha256(data).hexdigest(), "name": "language"}))
    cache, build = EngineCache(tmp_path), FakeBuilder()
    other = EngineKey(**{**KEY.__dict__, "gpu": "NVIDIA L4 (sm_89)"})
    cache.get_or_build("language", other, build)  # another GPU's engine: the legacy file is not its own
    assert legacy.exists() and len(build.calls) == 1
    path, status = cache.get_or_build("language", KEY, build)
    assert status == "hit" and path.read_bytes() == data and len(build.calls) == 1
    assert not legacy.exists() and not legacy.with_suffix(".json").exists()
