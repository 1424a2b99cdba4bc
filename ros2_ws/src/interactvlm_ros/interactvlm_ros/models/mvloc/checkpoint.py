"""Load official InteractVLM HF folders (and write tiny ones) without the official code.

An official folder (spec 1.2, fixtures' FIXTURE.md §3) holds ``config.json``, the LLaMA tokenizer
files and either ``pytorch_model.bin`` or shards ``pytorch_model-0000k-of-0000n.bin`` +
``pytorch_model.bin.index.json`` (``*.safetensors`` variants are accepted too). Tensors are mixed
bf16/fp32; CLIP is *not* inside — it comes from a separate ``openai/clip-vit-large-patch14`` folder.

Loading builds our model (weights uninitialised) in the target dtype and copies the checkpoint
into it shard by shard; shards are memory-mapped (``torch.load(mmap=True)``), so the file contents
are never held twice in memory. Official key names are mapped onto ours by the rules below.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch

from .config import ConfigError, MVLocConfig
from .model import MVLocModel

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


class CheckpointError(ValueError):
    """The folder is not a loadable official checkpoint; the message names the file/key and the fix."""


# ---- official <-> ours key renames ------------------------------------------------------------
_ENC = [(r"patch_embed\.proj\.", "patch_embed.projection."),
        (r"blocks\.(\d+)\.norm(\d)\.", r"layers.\1.layer_norm\2."),
        (r"blocks\.(\d+)\.", r"layers.\1."),
        (r"neck\.0\.", "neck.conv1."), (r"neck\.1\.", "neck.layer_norm1."),
        (r"neck\.2\.", "neck.conv2."), (r"neck\.3\.", "neck.layer_norm2.")]
_PROMPT = [(r"pe_layer\.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
           (r"point_embeddings\.(\d+)\.", r"point_embed.\1."),
           (r"mask_downscaling\.0\.", "mask_embed.conv1."), (r"mask_downscaling\.1\.", "mask_embed.layer_norm1."),
           (r"mask_downscaling\.3\.", "mask_embed.conv2."), (r"mask_downscaling\.4\.", "mask_embed.layer_norm2."),
           (r"mask_downscaling\.6\.", "mask_embed.conv3.")]
_DEC = [(r"transformer\.layers\.(\d+)\.norm(\d)\.", r"transformer.layers.\1.layer_norm\2."),
        (r"transformer\.norm_final_attn\.", "transformer.layer_norm_final_attn."),
        (r"output_upscaling\.0\.", "upscale_conv1."), (r"output_upscaling\.1\.", "upscale_layer_norm."),
        (r"output_upscaling\.3\.", "upscale_conv2.")]
_PREFIXES = [  # official prefix, our prefix, renames
    ("model.visual_model.image_encoder.", "image_encoder.encoder.", _ENC),
    ("model.visual_model.prompt_encoder.", "decoder.prompt_encoder.", _PROMPT),
    ("model.visual_model.mask_decoder.", "decoder.mask_decoder.", _DEC),
    ("model.text_hidden_fcs.", "decoder.text_hidden_fcs.", []),
    ("model.mm_projector.", "language.mm_projector.", []),
    ("cam_pose_encoder.", "decoder.cam_pose_encoder.", []),
    ("attention_splitter.", "decoder.attention_splitter.", []),
    ("model.", "language.llm.model.", []),
    ("lm_head.", "language.llm.lm_head.", []),
]
_IGNORED = [  # keys with no tensor in our model (logged, never an error)
    (re.compile(r"\.rotary_emb\.inv_freq$"), "deterministic RoPE buffer, recomputed"),
    (re.compile(r"vision_tower"), "CLIP comes from its own folder"),
    (re.compile(r"^model\.visual_model\.(fusion|uncertainty)\."), "optional module unused by released models"),
]


def _mlp_official_to_ours(rest: str, depth: int) -> str:
    """SAM ``MLP.layers.{0..d-1}`` -> transformers ``SamFeedForward`` ``proj_in / layers.{j-1} / proj_out``."""
    m = re.match(r"(output_hypernetworks_mlps\.\d+\.|iou_prediction_head\.)layers\.(\d+)\.(.*)", rest)
    if not m:
        return rest
    j = int(m.group(2))
    name = "proj_in" if j == 0 else ("proj_out" if j == depth - 1 else f"layers.{j - 1}")
    return f"{m.group(1)}{name}.{m.group(3)}"


def _mlp_ours_to_official(rest: str, depth: int) -> str:
    m = re.match(r"(output_hypernetworks_mlps\.\d+\.|iou_prediction_head\.)(proj_in|proj_out|layers\.(\d+))\.(.*)", rest)
    if not m:
        return rest
    j = 0 if m.group(2) == "proj_in" else (depth - 1 if m.group(2) == "proj_out" else int(m.group(3)) + 1)
    return f"{m.group(1)}layers.{j}.{m.group(4)}"


def official_to_ours(key: str, cfg: MVLocConfig) -> str | None:
    """Our parameter name for an official key; ``None`` for ignorable keys; ``KeyError`` if unknown."""
    for pat, _why in _IGNORED:
        if pat.search(key):
            return None
    for off, ours, renames in _PREFIXES:
        if key.startswith(off):
            rest = key[len(off):]
            for pat, rep in renames:
                rest = re.sub("^" + pat, rep, rest)
            if off.endswith("mask_decoder."):
                rest = _mlp_official_to_ours(rest, 3 if "hypernetworks" in rest else cfg.sam_decoder.iou_head_depth)
            return ours + rest
    raise KeyError(key)


def ours_to_official(key: str, cfg: MVLocConfig) -> str | None:
    """Inverse of :func:`official_to_ours` (``None`` for the CLIP tower, which official files never hold)."""
    if key.startswith("language.vision_tower."):
        return None
    for off, ours, renames in sorted(_PREFIXES, key=lambda p: -len(p[1])):
        if key.startswith(ours):
            rest = key[len(ours):]
            if off.endswith("mask_decoder."):
                rest = _mlp_ours_to_official(rest, 3 if "hypernetworks" in rest else cfg.sam_decoder.iou_head_depth)
            inverse = {  # our name -> official, explicit (regex inversion is not general)
                "patch_embed.projection.": "patch_embed.proj.", "neck.conv1.": "neck.0.",
                "neck.layer_norm1.": "neck.1.", "neck.conv2.": "neck.2.", "neck.layer_norm2.": "neck.3.",
                "shared_embedding.positional_embedding": "pe_layer.positional_encoding_gaussian_matrix",
                "mask_embed.conv1.": "mask_downscaling.0.", "mask_embed.layer_norm1.": "mask_downscaling.1.",
                "mask_embed.conv2.": "mask_downscaling.3.", "mask_embed.layer_norm2.": "mask_downscaling.4.",
                "mask_embed.conv3.": "mask_downscaling.6.", "upscale_conv1.": "output_upscaling.0.",
                "upscale_layer_norm.": "output_upscaling.1.", "upscale_conv2.": "output_upscaling.3.",
                "transformer.layer_norm_final_attn.": "transformer.norm_final_attn.",
            }
            for a, b in inverse.items():
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            rest = re.sub(r"^layers\.(\d+)\.layer_norm(\d)\.", r"blocks.\1.norm\2.", rest) if off.endswith(
                "image_encoder.") else rest
            rest = re.sub(r"^layers\.(\d+)\.", r"blocks.\1.", rest) if off.endswith("image_encoder.") else rest
            rest = re.sub(r"^point_embed\.(\d+)\.", r"point_embeddings.\1.", rest)
            rest = re.sub(r"transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"transformer.layers.\1.norm\2.", rest)
            return off + rest
    raise KeyError(key)


# ---- folder inspection ------------------------------------------------------------------------
def weight_files(model_dir: Path) -> list[Path]:
    """The checkpoint's weight files in load order; :class:`CheckpointError` if there are none."""
    for index_name in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
        index = model_dir / index_name
        if index.is_file():
            try:
                files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a HF shard index (needs a 'weight_map' object): {exc}") from exc
            missing = [f for f in files if not (model_dir / f).is_file()]
            if missing:
                raise CheckpointError(f"{index}: shard(s) {missing} listed but not present in {model_dir}; "
                                      f"finish downloading the release")
            return [model_dir / f for f in files]
    for single in ("pytorch_model.bin", "model.safetensors"):
        if (model_dir / single).is_file():
            return [model_dir / single]
    raise CheckpointError(f"{model_dir}: not an InteractVLM checkpoint folder — no pytorch_model.bin, "
                          f"pytorch_model.bin.index.json (+ shards) or model.safetensors; pass the HF folder of an "
                          f"official release (e.g. .../interactvlm-3d-hcontact-damon)")


def _safe_open(path: Path):
    """``safetensors.safe_open`` whose failure (truncated/partial download, not a safetensors file) is a
    :class:`CheckpointError` naming the file."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: an unusable file
        raise CheckpointError(f"{path}: cannot be read as a safetensors file ({type(exc).__name__}: {exc}); "
                              f"re-download the file") from exc


def iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(key, tensor)`` of one weight file, memory-mapped where possible."""
    if path.suffix == ".safetensors":
        with _safe_open(path) as f:
            for k in f.keys():
                yield k, f.get_tensor(k)
        return
    try:
        sd = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: {exc}); "
                              f"re-download the file") from exc
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    yield from sd.items()
    del sd


def read_shapes(files: list[Path]) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    for f in files:
        if f.suffix == ".safetensors":
            with _safe_open(f) as h:
                for k in h.keys():
                    shapes[k] = tuple(h.get_slice(k).get_shape())
        else:
            for k, t in iter_tensors(f):
                shapes[k] = tuple(t.shape)
    return shapes


def read_official_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: folder does not exist; pass the official InteractVLM HF folder")
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: not an InteractVLM checkpoint folder — no config.json; pass the HF "
                              f"folder written by the official merge script (config.json + pytorch_model*.bin)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc


def resolve_clip_dir(model_dir: Path, clip_dir: str | Path | None) -> Path:
    """``clip_dir`` if given, else ``<model>/../openai/clip-vit-large-patch14`` (the official code resolves
    ``config.vision_tower`` relative to the working directory it is run from)."""
    tried = []
    cands = [Path(clip_dir)] if clip_dir else [model_dir.parent / "openai" / "clip-vit-large-patch14"]
    for c in cands:
        tried.append(str(c))
        if (c / "config.json").is_file():
            return c
    raise CheckpointError(f"CLIP vision tower folder not found (tried {tried}); InteractVLM checkpoints do not "
                          f"contain CLIP — download openai/clip-vit-large-patch14 once (config.json + weights) and "
                          f"pass it with --clip DIR / clip_dir=")


def load_vision_tower(clip_dir: Path, dtype: torch.dtype):
    """transformers ``CLIPVisionModel`` from a local folder (a full ``CLIPModel`` folder works too)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:
        vcfg = CLIPVisionConfig.from_pretrained(str(clip_dir), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{clip_dir}/config.json: not a CLIP config ({exc}); pass the "
                              f"openai/clip-vit-large-patch14 folder") from exc
    vcfg._attn_implementation = "sdpa"
    try:
        tower, info = CLIPVisionModel.from_pretrained(str(clip_dir), config=vcfg, dtype=dtype, local_files_only=True,
                                                      output_loading_info=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{clip_dir}: CLIP weights could not be loaded ({type(exc).__name__}: {exc}); the "
                              f"folder needs pytorch_model.bin or model.safetensors of openai/clip-vit-large-patch14") from exc
    # transformers fills weights the file lacks with random values and only logs it: strict, like the checkpoint
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    if missing:
        raise CheckpointError(f"{clip_dir}: {len(missing)} CLIP vision weight(s) missing from the folder's weight file, "
                              f"e.g. {missing[:3]}; it is not (all of) openai/clip-vit-large-patch14 — pass that folder "
                              f"with --clip DIR / clip_dir= (re-download it if the file is truncated)")
    return tower.eval()


def _build(cfg: MVLocConfig, vision_tower, dtype: torch.dtype, device: str) -> MVLocModel:
    from transformers.initialization import no_init_weights

    # parameters are created directly in the target dtype on the target device, uninitialised (a 13B model
    # is never materialised in fp32); .to() then also casts buffers, as the official model.bfloat16() does
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), torch.device(device):
            model = MVLocModel(cfg, vision_tower.to(device))
    finally:
        torch.set_default_dtype(prev)
    # except the RoPE inverse frequencies (created float32): the official 4.31 LLaMA turns them into its cos/sin
    # cache in float32 at construction, before model.bfloat16(), so only cos/sin are rounded. Cast to bf16, the
    # frequencies would be off by up to 2^-9 relative and the phase by ~0.4 rad at position 400 (head_dim 128).
    rope = {n: b.detach().clone() for n, b in model.named_buffers() if n.endswith("inv_freq")}
    model = model.to(device=device, dtype=dtype).eval()
    for name, buf in rope.items():
        owner, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(owner), attr, buf.to(device=device, dtype=torch.float32))
    return model


def check_device(device: str) -> None:
    """:class:`CheckpointError` for a device torch cannot use here (a typo, CUDA on a CPU-only torch, a GPU index that
    is not visible), before any weight is read: torch itself fails deep inside model construction."""
    from ...runtime.base import parse_device

    try:
        kind, index = parse_device(device)
    except ValueError as exc:
        raise CheckpointError(f"device: {exc}") from None
    if kind != "cuda":
        return
    if not torch.cuda.is_available():
        raise CheckpointError(f"device {device!r}: CUDA is not available (torch {torch.__version__}: "
                              f"torch.cuda.is_available() is False); use device 'cpu' or install a CUDA build of torch")
    if index is not None and index >= torch.cuda.device_count():
        raise CheckpointError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible; "
                              f"pick one of cuda:0 .. cuda:{torch.cuda.device_count() - 1} or device 'cpu'")


def load_mvloc(model_dir: str | Path, clip_dir: str | Path | None = None, precision: str = "fp32",
               device: str = "cpu", quantization: str | None = None) -> tuple[MVLocModel, Path]:
    """Build an :class:`MVLocModel` from an official HF folder + a CLIP folder (local paths only).

    Returns ``(model, clip_dir_used)``. ``precision`` fp32 | bf16 | fp16 (the official demo runs bf16;
    the conformance vectors are fp32). ``quantization`` None | "8bit" | "4bit" (bitsandbytes on CUDA)."""
    model_dir = Path(model_dir)
    if precision not in PRECISIONS:
        raise CheckpointError(f"precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    check_device(device)
    raw = read_official_config(model_dir)
    files = weight_files(model_dir)
    shapes = read_shapes(files)
    try:
        cfg = MVLocConfig.from_official(raw, shapes, source=str(model_dir / "config.json"))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    clip = resolve_clip_dir(model_dir, clip_dir)
    tower = load_vision_tower(clip, dtype)
    if tower.config.hidden_size != cfg.mm_hidden_size:
        raise CheckpointError(f"{clip}: CLIP hidden size {tower.config.hidden_size} != checkpoint mm_projector input "
                              f"{cfg.mm_hidden_size} (model.mm_projector.weight); pass the CLIP the model was trained with")
    patches = (tower.config.image_size // tower.config.patch_size) ** 2
    if patches - 1 != cfg.img_emb_len:  # the [SEG] row is i - 1 + img_emb_len (spec 2.5): a wrong count shifts it
        raise CheckpointError(f"{clip}: CLIP gives {patches} image tokens ({tower.config.image_size} px / patch "
                              f"{tower.config.patch_size}) but config.json img_emb_len={cfg.img_emb_len} needs "
                              f"{cfg.img_emb_len + 1}; pass the CLIP the model was trained with (openai/"
                              f"clip-vit-large-patch14, 224 px, not the -336 variant)")
    model = _build(cfg, tower, dtype, device)
    load_official_weights(model, files)
    if quantization:
        quantize_llm(model, quantization)
    return model, clip


def load_official_weights(model: MVLocModel, files: list[Path]) -> None:
    """Copy an official state dict (one or more files) into ``model``; strict on shapes and coverage."""
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("language.vision_tower.")}
    loaded: set[str] = set()
    ignored: dict[str, int] = {}
    for f in files:
        for key, tensor in iter_tensors(f):
            try:
                name = official_to_ours(key, model.cfg)
            except KeyError:
                raise CheckpointError(f"{f}: unexpected key {key!r} — not part of the InteractVLM model this loader "
                                      f"builds (token_type={model.cfg.token_type}); is this an official "
                                      f"InteractVLM/LISA merged checkpoint?") from None
            if name is None:
                why = next(w for p, w in _IGNORED if p.search(key))
                ignored[why] = ignored.get(why, 0) + 1
                continue
            if name not in ours:
                raise CheckpointError(f"{f}: unexpected key {key!r} (maps to {name!r}, which this model does not have); check "
                                      f"config.json (token_type, multiview_cam_cond, cam_encoder_type) against the weights")
            dst = ours[name]
            if tuple(dst.shape) != tuple(tensor.shape):
                raise CheckpointError(f"{f}: shape mismatch for {key!r}: file {tuple(tensor.shape)} vs model "
                                      f"{tuple(dst.shape)} (built from config.json); config.json and the weights "
                                      f"belong to different models — re-download the folder")
            with torch.no_grad():
                dst.copy_(tensor.to(dst.dtype))
            loaded.add(name)
    missing = sorted(set(ours) - loaded)
    if missing:
        raise CheckpointError(f"{files[0].parent}: {len(missing)} weight(s) missing from the checkpoint, e.g. "
                              f"{[ours_to_official(k, model.cfg) for k in missing[:5]]}; the checkpoint is incomplete "
                              f"(a shard missing?) or config.json describes modules the weights lack")
    for why, n in ignored.items():
        log.info("MV-Loc checkpoint: ignored %d key(s): %s", n, why)


def quantize_llm(model: MVLocModel, mode: str) -> None:
    """Replace the LLaMA's linear layers by bitsandbytes 8-bit / 4-bit ones (CUDA only)."""
    if mode not in ("8bit", "4bit"):
        raise CheckpointError(f"quantization {mode!r}: expected '8bit' or '4bit'")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise CheckpointError(f"{mode} quantization needs the 'bitsandbytes' package (pip install bitsandbytes) "
                              f"and a CUDA GPU; use precision bf16/fp16 instead") from None
    dev = next(model.parameters()).device
    if dev.type != "cuda":
        raise CheckpointError(f"{mode} quantization runs only on CUDA (bitsandbytes); the model is on {dev}. "
                              f"Use device='cuda' or precision bf16/fp32")
    layers = model.language.llm.model.layers
    for layer in layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                if mode == "8bit":
                    q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                            has_fp16_weights=False, threshold=6.0)
                    q.weight = bnb.nn.Int8Params(lin.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
                else:
                    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                          compute_dtype=lin.weight.dtype, quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(lin.weight.data.cpu(), requires_grad=False, quant_type="nf4")
                if lin.bias is not None:
                    q.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
                setattr(parent, name, q.to(dev))
    log.info("MV-Loc: LLaMA linear layers quantized to %s with bitsandbytes", mode)


# ---- writing official-format folders (tests, tiny models) --------------------------------------
def official_state_dict(model: MVLocModel, mixed_dtypes: bool = True) -> dict[str, torch.Tensor]:
    """Our weights under official key names, dtypes as the official merge writes them (bf16 LLaMA/projector/
    camera encoder, fp32 SAM + text_hidden_fcs) when ``mixed_dtypes``."""
    out = {}
    for k, v in model.state_dict().items():
        name = ours_to_official(k, model.cfg)
        if name is None:
            continue
        fp32 = name.startswith(("model.visual_model.", "model.text_hidden_fcs."))
        out[name] = v.detach().clone().to(torch.float32 if (fp32 or not mixed_dtypes) else torch.bfloat16)
    return out


def save_official(model: MVLocModel, out_dir: str | Path, tokenizer_dir: str | Path,
                  shard_size: int | None = None, mixed_dtypes: bool = True) -> Path:
    """Write ``model`` as an official-format HF folder (config.json, pytorch_model.bin or shards + index,
    tokenizer files copied from ``tokenizer_dir``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = official_state_dict(model, mixed_dtypes)
    (out_dir / "config.json").write_text(json.dumps(model.cfg.to_official_json(), indent=2))
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": model.cfg.bos_token_id, "eos_token_id": model.cfg.eos_token_id, "pad_token_id": 0,
         "use_cache": False}, indent=2))
    for name in TOKENIZER_FILES:
        src = Path(tokenizer_dir) / name
        if src.is_file():
            shutil.copyfile(src, out_dir / name)
    if not shard_size:
        torch.save(sd, out_dir / "pytorch_model.bin")
        return out_dir
    shards: list[dict] = [{}]
    size = 0
    for k, v in sd.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > shard_size:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, out_dir / fname)
        weight_map.update({k: fname for k in shard})
    (out_dir / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())}, "weight_map": weight_map},
        indent=2))
    return out_dir


def build_random(cfg: MVLocConfig, clip_config, seed: int = 0, init: Callable | None = None) -> MVLocModel:
    """A randomly initialised model (tests/benchmarks). ``clip_config``: a ``CLIPVisionConfig``."""
    from transformers import CLIPVisionModel

    torch.manual_seed(seed)
    clip_config._attn_implementation = "sdpa"
    tower = CLIPVisionModel(clip_config).eval()
    model = MVLocModel(cfg, tower).eval()
    if init is not None:
        init(model)
    return model
