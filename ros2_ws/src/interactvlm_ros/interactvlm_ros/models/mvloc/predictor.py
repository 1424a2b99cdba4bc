"""``MVLocPredictor``: the official-compatible MV-Loc behind the ``Localizer`` protocol.

Per frame only CLIP + LLM + mask decoder run; the SAM image embeddings of the static view renders
are computed once per view-asset key (and precision) and cached in memory and on disk
(``paths.cache_dir("mvloc_sam")``, keyed by checkpoint identity + asset key + precision)::

    loc = MVLocPredictor.from_pretrained("/models/interactvlm-3d-hcontact-damon", clip_dir=".../clip-vit-large-patch14")
    out = loc.predict(image_rgb, "bottle", human_assets)        # LocalizerOutput, logits [V,H,W]
    res = loc.run(image_rgb, "bottle", "hcontact", human_assets, mode="forward", answer="It is [SEG].")
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np
import torch

from .. import base
from ..base import LocalizerError, LocalizerOutput
from . import prompts as P
from .checkpoint import CheckpointError, load_mvloc, read_official_config, weight_files
from .model import MVLocModel, postprocess_masks
from .preprocess import ClipPreprocessor, sam_preprocess
from .tokenizer import LegacyLlamaTokenizer, TokenizerError

log = logging.getLogger(__name__)


def required_tokens(cfg: dict) -> dict[str, int | None]:
    """Added tokens the prompts need (``config.json`` dict or ``vars(MVLocConfig)``) -> ``{token: id or None}``:
    the segmentation token(s) of ``token_type`` with their config ids, ``<im_start>``/``<im_end>`` (spec 1.5)."""
    base = str(cfg.get("token_type") or "Gen").replace("-DifDe", "")
    need: dict[str, int | None] = {"[SEG]": cfg.get("seg_token_idx")}
    if base == "Gen-Hu-Obj":
        need.update({"[HSEG]": cfg.get("hseg_token_idx"), "[OSEG]": cfg.get("oseg_token_idx")})
    elif base == "Gen-Int":
        need["[ISEG]"] = cfg.get("hseg_token_idx")
    if cfg.get("mm_use_im_start_end", True):
        need.update({P.IM_START: None, P.IM_END: None})
    return need


def checked_tokenizer(model_dir: Path):
    """The checkpoint's tokenizer with the tokens its prompts need checked, read before anything else of the checkpoint
    (a folder without them must fail before ~27 GB of weights are read, or a 13B export to ONNX runs for hours);
    ``CheckpointError`` naming the missing file/token."""
    raw = read_official_config(model_dir)
    try:
        tok = LegacyLlamaTokenizer(model_dir)
        tok.require(required_tokens(raw))
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    return tok


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class MVLocPredictor:
    """Official InteractVLM MV-Loc as a :class:`~interactvlm_ros.models.base.Localizer`.

    Args:
        model: a loaded :class:`MVLocModel`.
        tokenizer: the checkpoint's :class:`LegacyLlamaTokenizer`.
        clip_dir: CLIP folder (for its ``preprocessor_config.json``).
        mode: ``"generate"`` (official demo/evaluate default) or ``"forward"`` (teacher-forced).
        model_id: identity string of the checkpoint for cache keys.
        disk_cache: also persist SAM embeddings under ``paths.cache_dir("mvloc_sam")``.
    """

    name = "mvloc"

    def __init__(self, model: MVLocModel, tokenizer: LegacyLlamaTokenizer, clip_dir: str | Path | None = None,
                 mode: str = "generate", max_new_tokens: int = 512, model_id: str = "", disk_cache: bool = True):
        if mode not in ("generate", "forward"):
            raise ValueError(f"mode {mode!r}: expected 'generate' or 'forward'")
        self.model = model
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.clip = ClipPreprocessor(clip_dir)
        self.mode = mode
        self.max_new_tokens = int(max_new_tokens)
        self.model_id = model_id
        self.disk_cache = disk_cache
        self._emb_cache: dict[str, tuple[torch.Tensor, tuple[int, int]]] = {}
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self._check_tokens()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_dir: str | Path, clip_dir: str | Path | None = None, precision: str = "fp32",
                        device: str = "cpu", quantization: str | None = None, **kw) -> "MVLocPredictor":
        model_dir = Path(model_dir)
        tok = checked_tokenizer(model_dir)  # first: before ~27 GB of weights are read
        model, clip = load_mvloc(model_dir, clip_dir, precision=precision, device=device, quantization=quantization)
        files = weight_files(model_dir)
        ident = "|".join(f"{f.resolve()}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)
        return cls(model, tok, clip, model_id=hashlib.sha256(ident.encode()).hexdigest()[:16], **kw)

    def _check_tokens(self) -> None:
        for name in ("seg_token_idx", "hseg_token_idx", "oseg_token_idx"):
            idx = getattr(self.cfg, name)
            if idx is not None and idx >= self.cfg.vocab_size:
                raise LocalizerError(f"config.json {name}={idx} is outside the vocabulary ({self.cfg.vocab_size})")
        try:
            self.tokenizer.require(required_tokens(vars(self.cfg)))
        except TokenizerError as exc:
            raise LocalizerError(str(exc)) from None

    # -- SAM embeddings of static renders ---------------------------------------------------------
    def image_embeddings(self, assets) -> tuple[torch.Tensor, tuple[int, int], bool]:
        """``(embeddings [V,256,64,64], pre-pad size, cache_hit)`` for ``assets.renders``."""
        renders = np.asarray(assets.renders)
        akey = getattr(assets, "key", None) or hashlib.sha256(renders.tobytes()).hexdigest()[:16]
        key = hashlib.sha256(f"{self.model_id}|{akey}|{self.dtype}|{self.cfg.sam_encoder}".encode()).hexdigest()[:24]
        if key in self._emb_cache:
            emb, size = self._emb_cache[key]
            return emb, size, True
        path = None
        if self.disk_cache and self.model_id:
            from interactvlm_ros.paths import cache_dir

            try:
                path = cache_dir("mvloc_sam") / f"{key}.pt"
            except OSError as exc:  # read-only home / cache volume: a named fallback, never a failed frame
                self._no_disk_cache(exc)
            if path is not None and path.is_file():
                try:
                    d = torch.load(path, map_location=self.device, weights_only=True)
                    self._emb_cache[key] = (d["emb"].to(self.dtype), tuple(d["size"]))
                    return self._emb_cache[key][0], self._emb_cache[key][1], True
                except Exception as exc:  # noqa: BLE001 - corrupt cache file: recompute
                    log.warning("MV-Loc: SAM embedding cache %s unreadable (%s); recomputing", path, exc)
        images, size = sam_preprocess(renders, self.model.image_encoder.img_size)
        emb = self.model.encode_images(images.to(self.device))
        self._emb_cache[key] = (emb, size)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            try:
                torch.save({"emb": emb.cpu(), "size": list(size)}, tmp)
                tmp.replace(path)
            except OSError as exc:
                with contextlib.suppress(OSError):  # a partial file (disk full)
                    tmp.unlink(missing_ok=True)
                self._no_disk_cache(exc)
        return emb, size, False

    def _no_disk_cache(self, exc: OSError) -> None:
        """The SAM embedding disk cache cannot be written: keep them in memory only (this process), logged once."""
        self.disk_cache = False
        msg = (f"SAM embedding cache not writable ({exc}): embeddings kept in memory only, every new process re-encodes "
               "the renders; set INTERACTVLM_CACHE_DIR to a writable folder")
        log.warning("MV-Loc fallback: %s", msg)
        # named in ContactEstimator.all_fallbacks -> contacts.json / the node's /diagnostics
        if getattr(self, "fallbacks", None) is None:  # the runtime shares its list (runtime_info): appended in place
            self.fallbacks = []
        self.fallbacks.append(msg)

    # -- one task on one image ----------------------------------------------------------------------
    def run(self, image_rgb: np.ndarray, object_label: str, task: str, assets, question: str | None = None,
            answer: str | None = None, mode: str | None = None, cam_params=None) -> dict:
        """Run one task (``hcontact``/``ocontact``/``oafford``) and return every intermediate.

        Keys: ``logits`` float32 [V,H,W] or None (no [SEG] generated), ``low_res``, ``iou``, ``input_ids``
        (prompt), ``output_ids``, ``seg_hidden`` [Hd] or None, ``seg_index``, ``text``, ``timings``."""
        base.check_image_rgb(image_rgb)
        mode = mode or self.mode
        label = P.normalize_label(object_label)
        seg_tok = P.seg_token_text(self.cfg.token_type, task)
        if question is None:
            question = P.demo_question(task, label)
        else:
            question = re.sub(r"\{class_name\}|\{object\}", lambda _m: label, question)  # one pass: braces in labels stay
        if mode == "forward":
            if answer is None:
                answer = P.fill_template((P.HCONTACT_ANSWER_LIST if task.startswith("h") else P.OAFFORD_ANSWER_LIST)[0],
                                         seg_token=seg_tok)
            if seg_tok not in answer:
                raise LocalizerError(f"answer: teacher-forced answer {answer!r} has no {seg_tok} token; the mask is "
                                     f"read at the token before it")
        prompt = P.build_prompt(question, answer if mode == "forward" else None, self.cfg.mm_use_im_start_end)
        ids = self.tokenizer.tokenize_with_image(prompt)
        renders = np.asarray(assets.renders)
        if renders.ndim != 4 or renders.shape[0] != self.cfg.multiview_channels:
            raise LocalizerError(f"assets.renders: expected [{self.cfg.multiview_channels},H,W,3] (the checkpoint's "
                                 f"multiview_channels), got {tuple(renders.shape)}")
        cams = np.asarray(self.cfg.cam_params(task) if cam_params is None else cam_params, np.float32)
        t: dict[str, float] = {}
        with torch.inference_mode():
            t0 = time.perf_counter()
            emb, size, hit = self.image_embeddings(assets)
            t["sam_encoder_ms"] = 0.0 if hit else _ms(t0)
            t0 = time.perf_counter()
            pv = self.clip(image_rgb).to(self.device)
            t["clip_preprocess_ms"] = _ms(t0)
            input_ids = torch.tensor([ids], device=self.device)
            t0 = time.perf_counter()
            if mode == "forward":
                out = self.model.forward_teacher_forced(pv, input_ids)
            else:
                out = self.model.generate(pv, input_ids, self.max_new_tokens)
            t["language_ms"] = _ms(t0)
            gen = out["output_ids"][len(ids):] if mode == "generate" else []
            text = self.tokenizer.decode(gen, skip_special=True) if mode == "generate" else answer
            res = {"input_ids": np.asarray(ids, np.int64), "output_ids": np.asarray(out["output_ids"], np.int64),
                   "text": text, "seg_index": out["seg_positions"][0] if out["seg_positions"] else -1,
                   "seg_hidden": None, "logits": None, "low_res": None, "iou": None, "timings": t,
                   "cache_hit": hit, "mode": mode, "task": task, "cam_params": cams}
            if out["seg_hidden"] is None:
                log.warning("MV-Loc: no segmentation token in %s output %r; no masks for task %s",
                            mode, text, task)
                return res
            t0 = time.perf_counter()
            low, iou = self.model.decode_masks(out["seg_hidden"], emb, torch.from_numpy(cams).to(self.device),
                                               out["route"])
            t["decoder_ms"] = _ms(t0)
            t0 = time.perf_counter()
            logits = postprocess_masks(low, size, tuple(renders.shape[1:3]), self.model.image_encoder.img_size)
            t["postprocess_ms"] = _ms(t0)
        res.update(seg_hidden=out["seg_hidden"][0].float().cpu().numpy(), low_res=low.float().cpu().numpy(),
                   iou=iou.float().cpu().numpy(), logits=logits.cpu().numpy().astype(np.float32))
        return res

    # -- Localizer protocol ---------------------------------------------------------------------------
    def predict(self, image_rgb: np.ndarray, object_label: str, human_assets, object_assets=None,
                observation=None) -> LocalizerOutput:
        """Run every task the checkpoint serves (human: ``hcontact``; object: ``ocontact``)."""
        out = LocalizerOutput()
        texts = []
        for task in self.cfg.tasks():
            assets = human_assets if task == "hcontact" else object_assets
            if assets is None:
                raise LocalizerError(f"{'human_assets' if task == 'hcontact' else 'object_assets'}: this checkpoint "
                                     f"predicts {task} and needs the matching view renders")
            r = self.run(image_rgb, object_label, task, assets)
            texts.append(r["text"] or "")
            for k, v in r["timings"].items():
                out.timings[f"{task}/{k}"] = v
            if task == "hcontact":
                out.human_logits = r["logits"]
            else:
                out.object_logits = r["logits"]
            out.extras[task] = {"output_ids": r["output_ids"], "seg_index": r["seg_index"]}
        out.text = " | ".join(texts) if texts else None
        return out
