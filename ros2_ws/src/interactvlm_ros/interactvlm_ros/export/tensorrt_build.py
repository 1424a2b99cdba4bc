"""Build TensorRT engines from the exported ONNX graphs, with an on-disk cache that never loads a stale engine.

Flow (TensorRT >= 10 Python API, imported lazily; ``trtexec`` is used instead when the Python
module is missing but the binary is on PATH)::

    builder = trt.Builder(logger); network = builder.create_network(flags)
    trt.OnnxParser(network, logger).parse_from_file(graph.onnx)     # reads external data beside it
    config = builder.create_builder_config(); config.set_memory_pool_limit(WORKSPACE, ...)
    profile.set_shape(input, min, opt, max) for every dynamic input   # views / sequence length
    config.set_flag(FP16 | BF16 | INT8 | FP8)                        # precision
    builder.build_serialized_network(network, config) -> bytes

Precision: ``fp32`` (TF32 allowed by default), ``fp16``, ``bf16`` (Ampere+), ``int8`` (needs
either a calibrator built with :func:`make_int8_calibrator` from representative inputs or a
graph with explicit Q/DQ nodes, e.g. from NVIDIA ModelOpt; implicit calibration is deprecated in
TensorRT 10), ``fp8`` (Hopper/Ada+, explicit Q/DQ graph only). SAM's mask decoder is sensitive to
reduced precision (logits reach +-20); fp16 for the encoder + LLM and fp32 for the decoder is the
safe default the Docker image uses (``--precision fp16 --decoder-precision fp32``).

Cache: engines live in ``paths.cache_dir("engines")`` as ``<graph>-<precision>-<hash12>-<gpu8>.engine``
(``gpu8``: hash of the GPU name + compute capability, so each kind of GPU of a mixed machine keeps its own
engines) plus a ``.json`` sidecar holding the full :class:`EngineKey` (graph sha256, TensorRT version, GPU
name + compute capability, precision, profile) and the engine file's sha256. On lookup:

- sidecar missing/unreadable, engine sha256 differs, or the deserialize check fails -> *corrupt*;
- sidecar key differs from the current key (other TensorRT, other profile) -> *stale*;

both are deleted, logged with the reason, and rebuilt; neither is ever returned. The builder and
the deserialize check are injectable (``build_fn`` / ``validate_fn``) so the cache logic is unit
tested without a GPU.

Device: TensorRT builds and deserializes on the *current* CUDA device and an engine only runs on the
GPU model it was built for, so :func:`build_engines` takes the device the engines will run on
(``device=1`` / ``"cuda:1"``): the key names that GPU, and the build and the deserialize check run with
it current.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from .. import paths

from ..runtime.base import cuda_index  # noqa: F401 - the CLIs take it from here with build_engines

log = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two engines are interchangeable iff their keys are equal."""

    graph_hash: str      # sha256 of the ONNX graph (manifest "sha256")
    trt_version: str     # e.g. "10.3.0"
    gpu: str             # e.g. "NVIDIA H100 80GB HBM3 (sm_90)"
    precision: str       # fp32 | fp16 | bf16 | int8 | fp8
    profile: str = ""    # canonical json of the optimisation profile (min/opt/max per input)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


class EngineCacheError(RuntimeError):
    pass


class EngineCache:
    """Engine files + sidecars under ``root`` (default ``paths.cache_dir("engines")``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else paths.cache_dir("engines")
        self.root.mkdir(parents=True, exist_ok=True)

    def engine_path(self, name: str, key: EngineKey) -> Path:
        gpu8 = hashlib.sha256(key.gpu.encode()).hexdigest()[:8]  # one file per kind of GPU: no rebuild ping-pong
        return self.root / f"{name}-{key.precision}-{key.graph_hash[:12]}-{gpu8}.engine"

    @staticmethod
    def _meta_path(engine: Path) -> Path:
        return engine.with_suffix(".json")

    def check(self, name: str, key: EngineKey, validate_fn: Callable[[Path], bool] | None = None) -> tuple[str, str]:
        """State of the cached engine: ``("hit"|"missing"|"stale"|"corrupt", reason)``. Never loads a bad one."""
        path = self.engine_path(name, key)
        meta_p = self._meta_path(path)
        if not path.exists():
            return "missing", f"no engine at {path}"
        try:
            meta = json.loads(meta_p.read_text())
            cached_key = EngineKey(**meta["key"])
            want_sha = meta["engine_sha256"]
        except Exception as exc:
            return "corrupt", f"sidecar {meta_p.name} missing or unreadable ({type(exc).__name__}: {exc})"
        if cached_key != key:
            diff = {k: (getattr(cached_key, k), getattr(key, k)) for k in asdict(key) if getattr(cached_key, k) != getattr(key, k)}
            return "stale", "key changed: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
        got_sha = sha256_file(path)
        if got_sha != want_sha:
            return "corrupt", f"engine sha256 {got_sha[:12]} != recorded {want_sha[:12]} (truncated or overwritten file)"
        if validate_fn is not None:
            try:
                ok = bool(validate_fn(path))
            except Exception as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            else:
                why = "validate_fn returned False"
            if not ok:
                return "corrupt", f"engine does not deserialize ({why})"
        return "hit", f"cached engine {path.name} matches key"

    def _adopt_legacy(self, name: str, key: EngineKey) -> None:
        """An engine cached before the file names carried the GPU (``<graph>-<precision>-<hash12>.engine``) whose
        sidecar holds this very key is moved to its current name (then checked as any other): not rebuilt (minutes
        for 13B) and not left behind (GBs). One of another key is left alone (another GPU's may still move)."""
        legacy = self.root / f"{name}-{key.precision}-{key.graph_hash[:12]}.engine"
        path = self.engine_path(name, key)
        if path.exists() or not legacy.exists():
            return
        try:
            if EngineKey(**json.loads(self._meta_path(legacy).read_text())["key"]) != key:
                return
        except Exception:  # noqa: BLE001 - no readable sidecar: not known to be this key's
            return
        os.replace(self._meta_path(legacy), self._meta_path(path))
        os.replace(legacy, path)
        log.info("engine %s moved to %s (file names now name the GPU)", legacy.name, path.name)

    def get_or_build(self, name: str, key: EngineKey, build_fn: Callable[[], bytes],
                     validate_fn: Callable[[Path], bool] | None = None) -> tuple[Path, str]:
        """Return ``(engine path, status)``; status is ``hit``, ``built`` or ``rebuilt (<why>)``.

        ``build_fn() -> bytes`` builds a serialized engine; it runs only when the cache cannot be used.
        The new engine is written atomically (temp file + rename) with its sidecar."""
        self._adopt_legacy(name, key)
        state, why = self.check(name, key, validate_fn)
        path = self.engine_path(name, key)
        if state == "hit":
            log.info("engine cache hit: %s", path.name)
            return path, "hit"
        if state in ("stale", "corrupt"):
            log.warning("engine %s is %s (%s); deleting and rebuilding", path.name, state, why)
            for p in (path, self._meta_path(path)):
                p.unlink(missing_ok=True)
        data = build_fn()
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise EngineCacheError(f"engine build for '{name}' returned no data ({type(data).__name__}); see the TensorRT log above")
        data = bytes(data)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        meta = {"key": asdict(key), "engine_sha256": hashlib.sha256(data).hexdigest(), "name": name}
        self._meta_path(path).write_text(json.dumps(meta, indent=1))
        status = "built" if state == "missing" else f"rebuilt ({state}: {why})"
        log.info("engine %s %s", path.name, status)
        return path, status


# ----------------------------------------------------------------------------------------------
# environment facts that go into the key


def tensorrt_version() -> str | None:
    """Version of the TensorRT Python module, else of ``trtexec`` on PATH, else None."""
    try:
        import tensorrt as trt

        return str(trt.__version__)
    except Exception:
        pass
    exe = shutil.which("trtexec")
    if exe:
        try:
            out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
        except Exception:
            return None
        m = re.search(r"TensorRT\.trtexec \[TensorRT v(\d+)\]", out) or re.search(r"TensorRT v(\d+)", out)
        if m:
            v = m.group(1)  # e.g. 100300 -> 10.3.0
            return f"{int(v[:-4])}.{int(v[-4:-2])}.{int(v[-2:])}" if len(v) >= 5 else v
    return None


@contextlib.contextmanager
def on_cuda_device(index: int):
    """Make CUDA device ``index`` current (TensorRT builds and deserializes on the current one); no-op without CUDA."""
    try:
        import torch

        ok = torch.cuda.is_available()
    except Exception:
        ok = False
    if not ok:
        yield
        return
    with torch.cuda.device(index):
        yield


def gpu_name(device: int = 0) -> str | None:
    """``"<name> (sm_XY)"`` of CUDA device ``device``, or None without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        cc = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{cc[0]}{cc[1]})"
    except Exception:
        return None


def profile_json(profile: dict[str, tuple]) -> str:
    """Canonical text of ``{input: (min_shape, opt_shape, max_shape)}`` for the key."""
    return json.dumps({k: [list(map(int, s)) for s in v] for k, v in sorted(profile.items())}, sort_keys=True)


# ----------------------------------------------------------------------------------------------
# builders


def make_int8_calibrator(batches: Iterable[dict], cache_file: str | Path):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (dicts input name -> numpy array, batch
    dim first) to TensorRT for int8 calibration; the calibration table is cached in ``cache_file``."""
    from ..runtime.trt_engine import import_tensorrt

    trt = import_tensorrt()
    import torch

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._it = iter(batches)
            self._keep = []
            self._bs = None

        def get_batch_size(self):
            return self._bs or 1

        def get_batch(self, names):
            try:
                b = next(self._it)
            except StopIteration:
                return None
            self._keep = [torch.from_numpy(b[n]).cuda().contiguous() for n in names]
            self._bs = int(self._keep[0].shape[0])
            return [int(t.data_ptr()) for t in self._keep]

        def read_calibration_cache(self):
            p = Path(cache_file)
            return p.read_bytes() if p.exists() else None

        def write_calibration_cache(self, cache):
            Path(cache_file).write_bytes(bytes(cache))

    return _Calibrator()


def build_engine_bytes(onnx_path: str | Path, precision: str = "fp16", profile: dict[str, tuple] | None = None,
                       workspace_gb: float = 8.0, calibrator=None) -> bytes:
    """Serialize a TensorRT engine for ``onnx_path`` with the Python API (see module docstring)."""
    from ..runtime.trt_engine import import_tensorrt

    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision '{precision}' unknown; choose one of {ENGINE_PRECISIONS}")
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10 needs it; 10 always explicit
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if profile:
        prof = builder.create_optimization_profile()
        for name, (mn, opt, mx) in profile.items():
            prof.set_shape(name, tuple(mn), tuple(opt), tuple(mx))
        config.add_optimization_profile(prof)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without int8 kernels fall back to fp16, not fp32
        if calibrator is not None:
            config.int8_calibrator = calibrator
        else:
            log.warning("int8 without a calibrator: only valid for graphs with explicit Q/DQ nodes (%s)", onnx_path)
    elif precision == "fp8":
        config.set_flag(trt.BuilderFlag.FP8)
        config.set_flag(trt.BuilderFlag.FP16)
        log.warning("fp8 needs a graph with explicit FP8 Q/DQ nodes (e.g. NVIDIA ModelOpt); plain graphs build as fp16")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} ({precision}); see the log above")
    return bytes(serialized)


def build_engine_trtexec(onnx_path: str | Path, precision: str = "fp16", profile: dict[str, tuple] | None = None,
                         workspace_gb: float = 8.0, device: int | None = None) -> bytes:
    """Same as :func:`build_engine_bytes` through the ``trtexec`` binary (no Python module needed);
    ``device``: the CUDA device index to build on (``--device``; trtexec's default is 0)."""
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision '{precision}' unknown; choose one of {ENGINE_PRECISIONS}")
    exe = shutil.which("trtexec")
    if exe is None:
        raise FileNotFoundError("trtexec not on PATH (it ships with TensorRT in /usr/src/tensorrt/bin)")
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "engine.plan"
        cmd = [exe, f"--onnx={onnx_path}", f"--saveEngine={out}", f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M"]
        if device is not None:
            cmd.append(f"--device={int(device)}")
        if profile:
            for flag, idx in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
                cmd.append(flag + "=" + ",".join(f"{n}:{'x'.join(map(str, s[idx]))}" for n, s in profile.items()))
        if precision in ("fp16", "bf16", "int8", "fp8"):
            cmd.append(f"--{precision}")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not out.exists():
            raise RuntimeError(f"trtexec failed ({res.returncode}) for {onnx_path}:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
        return out.read_bytes()


def deserializes(path: Path) -> bool:
    """True if TensorRT can deserialize the engine file (the cache's corruption check on a real GPU)."""
    from ..runtime.trt_engine import import_tensorrt

    trt = import_tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    return runtime.deserialize_cuda_engine(Path(path).read_bytes()) is not None


def tensorrt_status(device: int = 0) -> tuple[bool, str]:
    """Can engines be built here (on CUDA device ``device``)? ``(ok, reason)``."""
    ver = tensorrt_version()
    if ver is None:
        return False, "TensorRT unavailable: neither the `tensorrt` Python module nor `trtexec` is installed (pip install tensorrt)"
    gpu = gpu_name(device)
    if gpu is None:
        return False, f"TensorRT {ver} found but no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return True, f"TensorRT {ver} on {gpu}"


def build_engines(manifest_path: str | Path, precision: str = "fp16", cache: EngineCache | None = None,
                  decoder_precision: str | None = None, workspace_gb: float = 8.0,
                  build_fn: Callable[..., bytes] | None = None, validate_fn: Callable[[Path], bool] | None = None,
                  trt_version: str | None = None, gpu: str | None = None,
                  device: int | str | None = 0) -> dict[str, dict]:
    """Build (or reuse) one engine per graph listed in an export manifest.

    Returns ``{graph: {"path", "status", "precision", "key"}}``. ``build_fn(onnx_path, precision,
    profile, workspace_gb)`` defaults to the Python API, else ``trtexec``. ``device`` (``1``, ``"cuda:1"``;
    ``"cuda"`` is 0) is the GPU the engines will run on: its name goes into the key and the build and the
    deserialize check run with it current. Raises ``BackendUnavailableError`` when TensorRT or a GPU is
    missing (and nothing was injected)."""
    from ..runtime.base import BackendUnavailableError

    for what, p in (("precision", precision), ("decoder_precision", decoder_precision)):
        if p is not None and p not in ENGINE_PRECISIONS:
            raise ValueError(f"{what} '{p}' unknown; choose one of {ENGINE_PRECISIONS}")
    index = cuda_index(device)
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    if build_fn is None:
        ok, why = tensorrt_status(index)
        if not ok:
            raise BackendUnavailableError(why)
        try:
            import tensorrt  # noqa: F401

            build_fn = build_engine_bytes
        except Exception:
            build_fn = functools.partial(build_engine_trtexec, device=index)
        if validate_fn is None:
            try:
                import tensorrt  # noqa: F401,F811

                validate_fn = deserializes
            except Exception:
                validate_fn = None
    trt_version = trt_version or tensorrt_version() or "unknown"
    gpu = gpu or gpu_name(index) or "unknown"
    cache = cache or EngineCache()
    results = {}
    for gname, g in manifest["graphs"].items():
        prec = decoder_precision if (decoder_precision and gname == "mask_decoder") else precision
        profile = {k: tuple(tuple(s) for s in v) for k, v in g.get("trt_profile", {}).items()}
        key = EngineKey(graph_hash=g["sha256"], trt_version=trt_version, gpu=gpu, precision=prec,
                        profile=profile_json(profile))
        onnx_path = manifest_path.parent / g["file"]
        with on_cuda_device(index):  # build + deserialize check on the engines' GPU, not on GPU 0
            path, status = cache.get_or_build(
                gname, key, lambda p=onnx_path, pr=prec, pf=profile: build_fn(p, pr, pf, workspace_gb), validate_fn)
        results[gname] = {"path": str(path), "status": status, "precision": prec, "key": asdict(key)}
    return results
