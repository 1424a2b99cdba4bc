"""MV-Loc running its three exported graphs on any :class:`~interactvlm_ros.runtime.base.Engine`.

``RuntimeMVLoc`` is B1's :class:`~interactvlm_ros.models.mvloc.predictor.MVLocPredictor` (prompting,
tokenizer, SAM-embedding cache, post-processing, ``Localizer`` protocol: all unchanged) with the
torch model replaced by :class:`EngineMVLocModel`, which offers the same four stage methods
(``forward_teacher_forced``, ``generate``, ``encode_images``, ``decode_masks``) but runs them on
the ``language`` / ``sam_encoder`` / ``mask_decoder`` engines::

    loc = RuntimeMVLoc.from_pretrained(model_dir, clip_dir, backend="auto")   # TRT -> ORT CUDA -> ... -> torch CPU
    loc.backend_choice.summary()      # what was chosen and why
    out = loc.predict(image_rgb, "bottle", human_assets)

Graphs come from ``onnx_dir`` (an ``interactvlm export`` folder) or are exported once into
``paths.cache_dir("onnx", <checkpoint identity>)``. TensorRT engines are built from them into
``paths.cache_dir("engines")`` (see ``export/tensorrt_build.py``).

Generation: the language graph has no KV-cache inputs, so greedy decoding re-runs the whole
sequence every step (what the official code does with ``use_cache=False``); the ``[SEG]`` state is
read from the last step's pass exactly as officially. Fine for short answers / the tiny model; for
the 13B model on a GPU the torch backend (KV-cached) or ``mode="forward"`` is faster.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..export.onnx_export import ExportError
from .base import BackendUnavailableError, Engine
from .select import BackendChoice, select_backend

log = logging.getLogger(__name__)

GRAPHS = ("language", "sam_encoder", "mask_decoder")


def _mvloc():
    from ..models.mvloc import model as M

    return M


class EngineMVLocModel(torch.nn.Module):
    """Stand-in for ``MVLocModel`` whose stages run on engines (numpy in/out, host tensors outside).

    Holds one zero-size float32 CPU parameter only so that code asking
    ``next(model.parameters())`` for the host device/dtype keeps working."""

    def __init__(self, cfg, engines: dict[str, Engine], img_size: int):
        super().__init__()
        missing = [g for g in GRAPHS if g not in engines]
        if missing:
            raise ValueError(f"EngineMVLocModel: engines for graphs {missing} missing (need {list(GRAPHS)})")
        self.cfg = cfg
        self.engines = engines
        self._anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)
        self.image_encoder = type("ImageEncoderInfo", (), {"img_size": int(img_size)})()
        self.stage_ms: dict[str, float] = {}
        M = _mvloc().MVLocModel
        # host-side [SEG] bookkeeping is B1's code, reused as is
        self.seg_rows = M.seg_rows.__get__(self)
        self.route_of = M.route_of.__get__(self)
        self._select = M._select.__get__(self)

    def _run(self, graph: str, inputs: dict) -> dict:
        t0 = time.perf_counter()
        out = self.engines[graph].run(inputs)
        self.stage_ms[graph] = (time.perf_counter() - t0) * 1000.0
        return out

    def _language(self, pixel_values: torch.Tensor, ids: list[int]):
        out = self._run("language", {"pixel_values": pixel_values.float().cpu().numpy(),
                                     "input_ids": np.asarray([ids], np.int64)})
        return torch.from_numpy(out["final_hidden"]), torch.from_numpy(out["last_logits"])

    @torch.no_grad()
    def forward_teacher_forced(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict:
        ids = input_ids[0].tolist()
        hidden, _ = self._language(pixel_values, ids)
        out = {"final_hidden": hidden, "output_ids": ids}
        out.update(self._select(ids, hidden))
        return out

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, max_new_tokens: int = 512) -> dict:
        """Greedy decoding without a KV cache (one full language-graph pass per step)."""
        ids = input_ids[0].tolist()
        n_prompt = len(ids)
        step_logits = []
        hidden = None
        for step in range(max_new_tokens):
            hidden, logits = self._language(pixel_values, ids)
            step_logits.append(logits[0])
            nxt = int(torch.argmax(logits[0]))
            ids.append(nxt)
            if nxt == self.cfg.eos_token_id:
                break
        out = {"final_hidden": hidden, "output_ids": ids, "step_logits": torch.stack(step_logits),
               "num_prompt_ids": n_prompt}
        out.update(self._select(ids, hidden))
        return out

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        out = self._run("sam_encoder", {"images": images.float().cpu().numpy()})
        return torch.from_numpy(out["image_embeddings"])

    @torch.no_grad()
    def decode_masks(self, seg_hidden: torch.Tensor, image_embeddings: torch.Tensor, cam_params: torch.Tensor,
                     route: int = 0):
        """-> ``(low_res [V,1,h,w], iou [V,1])`` like ``MVLocModel.decode_masks``."""
        feed = {"seg_hidden": seg_hidden.float().cpu().numpy().reshape(1, -1),
                "image_embeddings": image_embeddings.float().cpu().numpy(),
                "cam_params": cam_params.float().cpu().numpy()}
        if "route" in self.engines["mask_decoder"].input_names:
            feed["route"] = np.asarray([int(route)], np.int64)
        out = self._run("mask_decoder", feed)
        return (torch.from_numpy(out["low_res_masks"]).unsqueeze(1),
                torch.from_numpy(out["iou_predictions"]).unsqueeze(1))


def config_from_manifest(manifest: dict):
    """Rebuild ``MVLocConfig`` from ``manifest["model_config"]`` (no torch weights needed)."""
    from ..models.mvloc.config import MVLocConfig, SamDecoderGeometry, SamEncoderGeometry

    d = dict(manifest["model_config"])
    enc = SamEncoderGeometry(**d.pop("sam_encoder"))
    dec = SamDecoderGeometry(**d.pop("sam_decoder"))
    known = {f.name for f in fields(MVLocConfig)}
    return MVLocConfig(**{k: v for k, v in d.items() if k in known}, sam_encoder=enc, sam_decoder=dec)


def checkpoint_identity(model_dir: Path, clip_dir: Path | None) -> str:
    """Cheap identity of a checkpoint (+ CLIP) for the ONNX cache key: paths, sizes, mtimes, config text."""
    from ..models.mvloc.checkpoint import weight_files

    # the export code (B1's parts + the wrappers) is part of the identity: a code change re-exports
    pkg = Path(__file__).resolve().parents[1]
    code = [pkg / "models" / "mvloc" / "model.py", pkg / "models" / "mvloc" / "modules.py",
            pkg / "export" / "mvloc_export.py", pkg / "export" / "onnx_export.py"]  # the generic exporter too
    parts = [torch.__version__] + [hashlib.sha256(c.read_bytes()).hexdigest() for c in code if c.is_file()]
    parts.append((model_dir / "config.json").read_text())
    for f in weight_files(model_dir):
        st = f.stat()
        parts.append(f"{f.resolve()}:{st.st_size}:{int(st.st_mtime)}")
    if clip_dir is not None:
        for f in sorted(Path(clip_dir).glob("*")):
            if f.is_file():
                st = f.stat()
                parts.append(f"{f.resolve()}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


# model_config fields read from the weights' shapes, not config.json (reading shapes opens the weights)
_SHAPE_DERIVED = ("sam_encoder", "sam_decoder", "cam_hidden_dim", "splitter_hidden_dim", "mm_hidden_size")


def _config_differences(model_config: dict, raw: dict) -> list[str]:
    """Fields of a manifest's ``model_config`` that the checkpoint's config.json sets to another value."""
    want = dict(raw)
    if "rope_theta" in (raw.get("rope_parameters") or {}):
        want["rope_theta"] = raw["rope_parameters"]["rope_theta"]
    return [f"{k}={v!r} (export) vs {want[k]!r} (config.json)" for k, v in model_config.items()
            if k not in _SHAPE_DERIVED and want.get(k) is not None and want[k] != v]


def check_onnx_source(onnx_dir: Path, manifest: dict, model_dir: Path) -> str:
    """Was the export in ``onnx_dir`` made from the checkpoint ``model_dir``? Returns the checks that passed;
    raises :class:`ExportError` naming both folders and the fix when it was not.

    Manifests with ``source.checkpoint_fingerprint`` (see ``export/mvloc_export.checkpoint_fingerprint``: a few
    MiB read, even for a 27 GB checkpoint) are checked on it; older ones on ``model_config`` against config.json
    (cannot tell apart two fine-tunes of one architecture). Both also compare ``tokenizer_sha256``."""
    from ..export.mvloc_export import checkpoint_fingerprint
    from ..export.onnx_export import file_sha256
    from ..models.mvloc.checkpoint import read_official_config

    src = manifest.get("source") or {}
    checks, problems = [], []
    if src.get("checkpoint_fingerprint"):
        checks.append("checkpoint fingerprint")
        if src["checkpoint_fingerprint"] != checkpoint_fingerprint(model_dir):
            problems.append("checkpoint fingerprint (config.json + weight files) differs")
    else:
        checks.append("model config (manifest without checkpoint_fingerprint)")
        diff = _config_differences(manifest.get("model_config") or {}, read_official_config(model_dir))
        if diff:
            problems.append("model config differs: " + ", ".join(diff))
    tok = model_dir / "tokenizer.model"
    if src.get("tokenizer_sha256") and tok.is_file():
        checks.append("tokenizer sha256")
        if file_sha256(tok) != src["tokenizer_sha256"]:
            problems.append("tokenizer.model differs")
    if not problems:
        how = " + ".join(checks)
        if src.get("checkpoint_fingerprint"):
            log.info("%s: export matches checkpoint %s (checked: %s)", onnx_dir, model_dir, how)
        else:
            log.warning("%s: export matches checkpoint %s on the weaker checks of an older manifest (%s); re-export "
                        "with `interactvlm export --model %s --out %s` to record a checkpoint fingerprint",
                        onnx_dir, model_dir, how, model_dir, onnx_dir)
        return how
    exported_from = src.get("checkpoint", "another checkpoint")
    raise ExportError(f"{Path(onnx_dir) / 'manifest.json'}: exported from {exported_from}, not from {model_dir} "
                      f"({'; '.join(problems)}); export this checkpoint with `interactvlm export --model {model_dir} "
                      f"--out ONNX_DIR` and pass that onnx_dir (or pass no onnx_dir to use the automatic cache)")


def engines_from_manifest(onnx_dir: Path, manifest: dict, choice: BackendChoice, precision: str = "fp32",
                          decoder_precision: str = "fp32", engine_cache=None) -> dict[str, Engine]:
    """ORT sessions or TensorRT engines (built/cached) for the graphs of an export folder."""
    missing = [g for g in GRAPHS if g not in manifest.get("graphs", {})]
    if missing:
        raise ExportError(f"{Path(onnx_dir) / 'manifest.json'}: no graph(s) {missing} (need {list(GRAPHS)}); re-export "
                          f"the folder with `interactvlm export --model DIR --out {onnx_dir}`")
    if choice.backend == "onnxruntime":
        from .ort_engine import OrtEngine

        return {g: OrtEngine(onnx_dir / manifest["graphs"][g]["file"], name=g, device=choice.device,
                             precision="fp32", io_binding=choice.device.startswith("cuda")) for g in GRAPHS}
    if choice.backend == "tensorrt":
        from ..export.tensorrt_build import build_engines
        from .trt_engine import TensorRTEngine

        built = build_engines(onnx_dir / "manifest.json", precision=precision, decoder_precision=decoder_precision,
                              cache=engine_cache, device=choice.device)  # key + build on the chosen GPU (cuda:1)
        return {g: TensorRTEngine(built[g]["path"], name=g, device=choice.device, precision=built[g]["precision"])
                for g in GRAPHS}
    raise ValueError(f"engines_from_manifest: backend {choice.backend!r} does not run ONNX graphs")


def torch_engines(model, device: str = "cpu", precision: str = "fp32") -> dict[str, Engine]:
    """The same three graphs as :class:`TorchEngine` s over the export wrappers (same IO names)."""
    from ..export.mvloc_export import graph_modules
    from .torch_engine import TorchEngine

    mods = graph_modules(model)
    io = {
        "language": (["pixel_values", "input_ids"], ["final_hidden", "last_logits"]),
        "sam_encoder": (["images"], ["image_embeddings"]),
        "mask_decoder": (["seg_hidden", "image_embeddings", "cam_params"] + (["route"] if mods["mask_decoder"].with_route else []),
                         ["low_res_masks", "iou_predictions"]),
    }
    dtypes = {"input_ids": "int64", "route": "int64"}
    return {g: TorchEngine(mods[g], io[g][0], io[g][1], name=g, device=device, precision=precision, input_dtypes=dtypes)
            for g in GRAPHS}


def _predictor_cls():
    from ..models.mvloc.predictor import MVLocPredictor

    return MVLocPredictor


class RuntimeMVLoc:
    """Factory namespace: :meth:`from_pretrained` returns an ``MVLocPredictor`` running on engines,
    with ``backend_choice``, ``engines``, ``onnx_dir`` and :meth:`describe`-style ``runtime_info`` attached."""

    @staticmethod
    def from_pretrained(model_dir: str | Path, clip_dir: str | Path | None = None, backend: str = "auto",
                        device: str = "auto", onnx_dir: str | Path | None = None, precision: str | None = None,
                        decoder_precision: str = "fp32", exporter: str = "auto", torch_native: bool = True,
                        quantization: str | None = None, **predictor_kw):
        """Select a backend and build the localizer.

        ``torch_native`` (default): when the selection lands on PyTorch, return B1's plain
        ``MVLocPredictor`` (KV-cached generation, ``quantization`` support) instead of running the
        export wrappers through ``TorchEngine`` (``torch_native=False``, used to compare backends).

        ``precision`` (default: ``fp16`` on TensorRT, the engines ``build_engines.py`` / ``interactvlm export
        --tensorrt`` build by default; ``fp32`` elsewhere). ONNX Runtime runs the exported fp32 graphs: another
        precision there is a named fallback (logged, listed in ``fallbacks``). ``onnx_dir`` must hold an export
        (``manifest.json``) whenever the selected backend runs ONNX graphs."""
        from ..export.onnx_export import load_manifest
        from ..models.mvloc.checkpoint import resolve_clip_dir
        from ..models.mvloc.predictor import checked_tokenizer

        model_dir = Path(model_dir)
        tok = checked_tokenizer(model_dir)  # first, as MVLocPredictor.from_pretrained: before a 13B ONNX export (hours)
        clip = resolve_clip_dir(model_dir, clip_dir)
        choice = select_backend(backend, device)
        fallbacks = [f"runtime backend: {choice.summary()}"] if choice.fallback else []
        if onnx_dir is not None and not (Path(onnx_dir) / "manifest.json").is_file() and choice.backend in ("onnxruntime", "tensorrt"):
            raise FileNotFoundError(f"{onnx_dir}: no manifest.json; run `interactvlm export --model {model_dir} --out {onnx_dir}`")
        if precision is None:
            precision = "fp16" if choice.backend == "tensorrt" else "fp32"
        if choice.backend == "onnxruntime" and (precision != "fp32" or decoder_precision != "fp32"):
            text = (f"precision: onnxruntime runs the exported fp32 graphs; precision={precision!r} / decoder_precision="
                    f"{decoder_precision!r} not applied (fp32 used; reduced precision needs backend='tensorrt')")
            log.warning("%s", text)
            fallbacks.append(text)
        if quantization is not None and choice.backend != "torch":
            raise ValueError(f"quantization={quantization!r} is a PyTorch (bitsandbytes) option; backend "
                             f"{choice.backend} takes precision='int8'/'fp8' (TensorRT) instead")
        if choice.backend == "torch" and torch_native:
            pred = _predictor_cls().from_pretrained(model_dir, clip, precision=precision, device=choice.device,
                                                    quantization=quantization, **predictor_kw)
            pred.backend_choice = choice
            pred.backend = choice.backend
            pred.fallbacks = fallbacks
            pred.engines = {}
            pred.onnx_dir = None
            pred.runtime_info = {"backend": choice.as_dict(), "onnx_dir": None, "engines": {}, "fallbacks": fallbacks}
            return pred
        ident = checkpoint_identity(model_dir, clip)
        if choice.backend == "torch":
            from ..models.mvloc.checkpoint import load_mvloc

            if precision not in ("fp32", "fp16", "bf16"):
                raise BackendUnavailableError(f"precision {precision} needs TensorRT; torch runs fp32/fp16/bf16")
            model, _ = load_mvloc(model_dir, clip, precision="fp32", device="cpu")
            cfg = model.cfg
            engines = torch_engines(model, device=choice.device, precision=precision)
            img_size = model.image_encoder.img_size
            used_dir = None
        else:
            try:
                used_dir = Path(onnx_dir) if onnx_dir is not None else paths.cache_dir("onnx", ident)
                if not (used_dir / "manifest.json").is_file():
                    from ..export.mvloc_export import export_mvloc

                    log.info("exporting %s to ONNX in %s (first use of this checkpoint with %s)", model_dir, used_dir,
                             choice.backend)
                    export_mvloc(model_dir, used_dir, clip_dir=clip, exporter=exporter, parity=True)
            except OSError as exc:  # read-only home / cache volume, disk full
                raise ExportError(f"cannot export the ONNX graphs of {model_dir} for {choice.backend} ({exc}); set "
                                  f"INTERACTVLM_CACHE_DIR to a writable folder, or export once with `interactvlm export "
                                  f"--model {model_dir} --out ONNX_DIR` and pass onnx_dir=ONNX_DIR, or use "
                                  f"backend='torch'") from exc
            manifest = load_manifest(used_dir, verify=True)
            if onnx_dir is not None:  # the automatic cache is keyed on the checkpoint's identity already
                check_onnx_source(used_dir, manifest, model_dir)
            cfg = config_from_manifest(manifest)
            engines = engines_from_manifest(used_dir, manifest, choice, precision, decoder_precision)
            img_size = int(manifest.get("sam_img_size", cfg.sam_encoder.img_size))
        emodel = EngineMVLocModel(cfg, engines, img_size)
        prec = {g: e.precision for g, e in engines.items()}
        model_id = hashlib.sha256(f"{ident}|{choice.backend}|{json.dumps(prec, sort_keys=True)}".encode()).hexdigest()[:16]
        pred = _predictor_cls()(emodel, tok, clip, model_id=model_id, **predictor_kw)
        pred.name = f"mvloc[{choice.backend}]"
        pred.backend_choice = choice
        pred.backend = choice.backend
        pred.fallbacks = fallbacks  # read by pipeline.ContactEstimator.all_fallbacks -> the node's /diagnostics
        pred.engines = engines
        pred.onnx_dir = used_dir
        pred.runtime_info = {"backend": choice.as_dict(), "onnx_dir": str(used_dir) if used_dir else None,
                             "engines": {g: e.describe() for g, e in engines.items()}, "fallbacks": fallbacks}
        return pred


# ---- loaders for models/registry.py ``MVLOC_BACKEND_LOADERS`` ("module:function(model_dir, device=..., **kw)") ----
def load_auto(model_dir, device: str = "auto", **kw):
    """TensorRT -> ORT CUDA -> torch CUDA -> ORT CPU -> torch CPU (torch = B1's native predictor)."""
    return RuntimeMVLoc.from_pretrained(model_dir, backend="auto", device=device, **kw)


def load_onnxruntime(model_dir, device: str = "auto", **kw):
    return RuntimeMVLoc.from_pretrained(model_dir, backend="onnxruntime", device=device, **kw)


def load_tensorrt(model_dir, device: str = "cuda", **kw):
    return RuntimeMVLoc.from_pretrained(model_dir, backend="tensorrt", device=device, **kw)
