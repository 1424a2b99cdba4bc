"""Backend auto-selection: order, reasons, explicit-unavailable errors (probes injected; no GPU needed)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from interactvlm_ros.runtime import AUTO_ORDER, BackendUnavailableError, EngineInputError, select_backend
from interactvlm_ros.runtime import select as select_mod


def probes(**ok):
    """Probe table where every probe named in ``ok`` succeeds and all others fail with a named reason."""
    names = ["tensorrt", "torch_cuda", "ort_cuda", "ort_cpu", "torch_cpu"]
    reasons = {"tensorrt": "tensorrt not importable (test)", "torch_cuda": "CUDA not available (test)",
               "ort_cuda": "no CUDAExecutionProvider (test)", "ort_cpu": "onnxruntime not importable (test)",
               "torch_cpu": "torch not importable (test)"}
    return {n: (lambda n=n: (True, f"{n} ok")) if ok.get(n) else (lambda n=n: (False, reasons[n])) for n in names}


def test_auto_order_is_trt_ortcuda_torchcuda_ortcpu_torchcpu():
    assert AUTO_ORDER == (("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"),
                          ("onnxruntime", "cpu"), ("torch", "cpu"))
    everything = probes(tensorrt=True, torch_cuda=True, ort_cuda=True, ort_cpu=True, torch_cpu=True)
    c = select_backend("auto", "auto", probes=everything)
    assert (c.backend, c.device) == ("tensorrt", "cuda") and not c.fallback
    c = select_backend("auto", "auto", probes=probes(torch_cuda=True, ort_cuda=True, ort_cpu=True, torch_cpu=True))
    assert (c.backend, c.device) == ("onnxruntime", "cuda")
    assert c.considered[0][:3] == ("tensorrt", "cuda", False) and "tensorrt not importable" in c.considered[0][3]
    c = select_backend("auto", "auto", probes=probes(torch_cuda=True, ort_cpu=True, torch_cpu=True))
    assert (c.backend, c.device) == ("torch", "cuda")
    c = select_backend("auto", "auto", probes=probes(ort_cpu=True, torch_cpu=True))
    assert (c.backend, c.device) == ("onnxruntime", "cpu")
    assert "CUDA not available" in c.summary() and c.fallback
    c = select_backend("auto", "auto", probes=probes(torch_cpu=True))
    assert (c.backend, c.device) == ("torch", "cpu")
    assert [x[0] for x in c.considered] == ["tensorrt", "onnxruntime", "torch", "onnxruntime", "torch"]


def test_tensorrt_needs_cuda_even_when_importable():
    c = select_backend("auto", "auto", probes=probes(tensorrt=True, ort_cpu=True, torch_cpu=True))
    assert c.backend == "onnxruntime" and c.device == "cpu"
    assert c.considered[0][2] is False and "CUDA not available" in c.considered[0][3]


def test_device_cpu_skips_cuda_candidates_and_cuda_index_kept():
    c = select_backend("auto", "cpu", probes=probes(tensorrt=True, torch_cuda=True, ort_cuda=True, ort_cpu=True, torch_cpu=True))
    assert (c.backend, c.device) == ("onnxruntime", "cpu") and not c.fallback
    c = select_backend("auto", "cuda:1", probes=probes(torch_cuda=True, ort_cpu=True, torch_cpu=True))
    assert (c.backend, c.device) == ("torch", "cuda:1")


def test_exclude_names_reason():
    c = select_backend("auto", "cpu", probes=probes(ort_cpu=True, torch_cpu=True), exclude=("onnxruntime",))
    assert c.backend == "torch" and "excluded" in c.considered[0][3]


def test_explicit_unavailable_backend_raises_with_install_hint():
    with pytest.raises(BackendUnavailableError, match=r"tensorrt.*not importable.*pip install tensorrt"):
        select_backend("tensorrt", "auto", probes=probes(ort_cpu=True, torch_cpu=True))
    with pytest.raises(BackendUnavailableError, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
        select_backend("onnxruntime", "cuda", probes=probes(ort_cpu=True, torch_cpu=True))
    with pytest.raises(BackendUnavailableError, match="needs device='cuda'"):
        select_backend("tensorrt", "cpu")
    with pytest.raises(BackendUnavailableError, match="no backend can run"):
        select_backend("auto", "auto", probes=probes())
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        select_backend("tflite")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        select_backend("auto", "tpu")


def test_explicit_available_backend_and_real_probes_here():
    # this machine: CPU-only torch + CPU onnxruntime, no tensorrt
    c = select_backend("onnxruntime", "auto")
    assert c.backend == "onnxruntime"
    c = select_backend("auto", "auto")
    assert c.backend in ("tensorrt", "onnxruntime", "torch")
    if c.device == "cpu":
        assert c.backend == "onnxruntime" and c.fallback  # ORT CPU beats torch CPU
    assert select_mod.last_choice() == c
    d = c.as_dict()
    assert d["backend"] == c.backend and len(d["considered"]) >= 1


def test_choice_logged_once(caplog):
    p = probes(ort_cpu=True, torch_cpu=True)
    select_mod._logged.clear()
    with caplog.at_level(logging.INFO, logger="interactvlm_ros.runtime.select"):
        select_backend("auto", "auto", probes=p)
        select_backend("auto", "auto", probes=p)
    msgs = [r for r in caplog.records if "runtime selection" in r.getMessage()]
    assert len(msgs) == 1 and msgs[0].levelno == logging.WARNING  # a fallback is a warning
    assert "tensorrt not importable" in msgs[0].getMessage()


def test_engine_checks_input_names_and_dims():
    torch = pytest.importorskip("torch")
    from interactvlm_ros.runtime import TorchEngine

    lin = torch.nn.Linear(3, 2)
    eng = TorchEngine(lin, ["x"], ["y"], name="lin")
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    y = eng.run({"x": x})["y"]
    np.testing.assert_allclose(y, x @ lin.weight.detach().numpy().T + lin.bias.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(EngineInputError, match=r"missing \['x'\].*unexpected \['z'\]"):
        eng.run({"z": x})
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="CUDA"):
            TorchEngine(lin, ["x"], ["y"], device="cuda")
    with pytest.raises(ValueError, match="int8/fp8 need TensorRT"):
        TorchEngine(lin, ["x"], ["y"], precision="int8")


def test_tensorrt_engine_unavailable_is_clear():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed here")
    except Exception:
        pass
    from interactvlm_ros.runtime import TensorRTEngine

    with pytest.raises(BackendUnavailableError, match="TensorRT is not importable.*pip install tensorrt"):
        TensorRTEngine("/nonexistent.engine")


def test_device_typos_are_rejected_and_a_missing_cuda_index_fails_fast():
    """"cudafoo" is not silently CUDA device 0; "cuda:7" on a one-GPU machine fails at selection, naming the devices."""
    every = probes(tensorrt=True, torch_cuda=True, ort_cuda=True, ort_cpu=True, torch_cpu=True)
    for bad in ("cudafoo", "cuda:abc", "cuda:-1", "cuda:", "cpu:0"):
        with pytest.raises(ValueError, match=f"unknown device '{bad}'"):
            select_backend("onnxruntime", bad, probes=every)
    one_gpu = {**every, "cuda_count": lambda: 1}
    with pytest.raises(BackendUnavailableError, match=r"device 'cuda:7' does not exist: 1 CUDA device\(s\) visible"):
        select_backend("auto", "cuda:7", probes=one_gpu)
    assert select_backend("onnxruntime", "cuda:0", probes=one_gpu).device == "cuda:0"
    assert select_backend("auto", "CUDA", probes=one_gpu).device == "cuda"


def test_engines_reject_device_typos(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from interactvlm_ros.runtime import OrtEngine, TensorRTEngine

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    assert OrtEngine(tmp_path / "g.onnx", device="cpu").run({"x": np.ones(2, np.float32)})["y"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="unknown device 'cudafoo'"):
        OrtEngine(tmp_path / "g.onnx", device="cudafoo")
    with pytest.raises(ValueError, match="unknown device 'cudafoo'"):
        TensorRTEngine(tmp_path / "x.engine", device="cudafoo")
    with pytest.raises(ValueError, match="not a CUDA device"):
        TensorRTEngine(tmp_path / "x.engine", device="cpu")
