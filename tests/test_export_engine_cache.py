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


@pytest.mark.parametrize("field,val", [("trt_version", "10.4.0"), ("gpu", "NVIDIA L4 (sm_89)"), ("profile", '{"views": 8}')])
def test_stale_engine_rebuilt_not_loaded(tmp_path, field, val):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    p_old, _ = cache.get_or_build("llm", KEY, build)
    new_key = EngineKey(**{**KEY.__dict__, field: val})
    assert cache.check("llm", new_key)[0] == "stale"
    p_new, status = cache.get_or_build("llm", new_key, build)
    assert status.startswith("rebuilt (stale") and field in status
    assert p_new.read_bytes().startswith(b"ENGINE#2") and len(build.calls) == 2
    assert json.loads(p_new.with_suffix(".json").read_text())["key"][field] == val


def test_precision_and_graph_hash_get_their_own_files(tmp_path):
    cache, build = EngineCache(tmp_path), FakeBuilder()
    a, _ = cache.get_or_build("llm", KEY, build)
    b, _ = cache.get_or_build("llm", EngineKey(**{**KEY.__dict__, "precision": "fp32"}), build)
    c, _ = cache.get_or_build("llm", EngineKey(**{**KEY.__dict__, "graph_hash": "c" * 64}), build)
    assert len({a, b, c}) == 3 and len(build.calls) == 3
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
    assert all(r["status"].startswith("rebuilt (stale") for r in res3.values())


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
