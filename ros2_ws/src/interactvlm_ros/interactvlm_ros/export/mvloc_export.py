"""MV-Loc -> three ONNX graphs (+ manifest, parity) from B1's exportable parts (``models/mvloc/model.py``).

Graphs (all fp32; engines choose their precision later):

=================  ==========================================================  ======================================
graph              inputs                                                      outputs
=================  ==========================================================  ======================================
``language``       ``pixel_values [1,3,224,224]``, ``input_ids [1,L]`` int64   ``final_hidden [1,L+P-1,Hd]``,
                   (exactly one -200 image placeholder)                        ``last_logits [1,vocab]``
``sam_encoder``    ``images [V,3,1024,1024]`` (SAM-normalized, padded)         ``image_embeddings [V,256,64,64]``
``mask_decoder``   ``seg_hidden [1,Hd]``, ``image_embeddings [V,256,64,64]``,  ``low_res_masks [V,256,256]``,
                   ``cam_params [V,5]`` (+ ``route [1]`` int64 for splitter    ``iou_predictions [V]``
                   models: 0 none, 1 human, 2 object)
=================  ==========================================================  ======================================

Dynamic axes: ``seq`` (L) of the language graph, ``views`` (V) of the encoder and decoder.

The wrappers below make B1's modules traceable without changing their numbers:

- :class:`LanguageGraph` builds LLaVA's multimodal embedding with index arithmetic on tensors
  (the torch part slices at a Python ``int`` image position, which a tracer would freeze) and
  passes an explicit 4-D causal mask + position ids to the LLaMA body (transformers-5 default
  mask creation uses ``aten::diff``, which the TorchScript exporter cannot export).
- :class:`DecoderGraph` evaluates the per-view camera encoder (a Python loop over views in the
  torch part) as one batched product over the stacked ``view_transforms`` weights sliced to V,
  so the number of views stays dynamic (V <= ``multiview_channels``), and selects the splitter
  branch with ``torch.where`` on the ``route`` input instead of Python control flow.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from .onnx_export import (DEFAULT_OPSET, GraphSpec, check_parity, export_graph, file_sha256, write_manifest)

log = logging.getLogger(__name__)

GRAPH_NAMES = ("language", "sam_encoder", "mask_decoder")
IMAGE_TOKEN_INDEX = -200


class LanguageGraph(nn.Module):
    """``(pixel_values [1,3,224,224], input_ids [1,L]) -> (final_hidden [1,L-1+P,Hd], last_logits [1,vocab])``.

    Same numbers as ``MVLocLanguagePart.forward`` (P = number of CLIP patches, 256)."""

    def __init__(self, language_part: nn.Module):
        super().__init__()
        self.part = language_part

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor):
        feats = self.part.image_features(pixel_values)                     # [1, P, Hd]
        emb_layer = self.part.llm.get_input_embeddings()
        tok = emb_layer(input_ids.clamp(min=0))                             # [1, L, Hd]
        L = input_ids.shape[1]
        P = feats.shape[1]
        k = (input_ids[0] == IMAGE_TOKEN_INDEX).to(torch.int64).argmax()   # image position (tensor)
        t = torch.arange(L - 1 + P, device=input_ids.device)
        is_img = (t >= k) & (t < k + P)
        tok_idx = torch.where(t < k, t, t - P + 1).clamp(0, L - 1)
        img_idx = (t - k).clamp(0, P - 1)
        embeds = torch.where(is_img[:, None], feats[0, img_idx].to(tok.dtype), tok[0, tok_idx]).unsqueeze(0)
        T = embeds.shape[1]
        neg = torch.finfo(embeds.dtype).min
        mask = torch.full((T, T), neg, dtype=embeds.dtype, device=embeds.device).triu(1)[None, None]
        pos = t.unsqueeze(0)
        out = self.part.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False)
        hidden = out.last_hidden_state
        logits = self.part.llm.lm_head(hidden[:, -1]).float()
        return hidden, logits


class SamEncoderGraph(nn.Module):
    """``images [V,3,S,S] -> image_embeddings [V,256,S/16,S/16]`` (B1's ``SamImageEncoderPart``)."""

    def __init__(self, encoder_part: nn.Module):
        super().__init__()
        self.part = encoder_part

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.part(images)


class DecoderGraph(nn.Module):
    """``(seg_hidden [1,Hd], image_embeddings [V,256,h,w], cam_params [V,5][, route [1]])``
    -> ``(low_res_masks [V,4h,4w], iou_predictions [V])``; same numbers as ``MVLocDecoderPart``."""

    def __init__(self, decoder_part: nn.Module, with_route: bool = False):
        super().__init__()
        self.part = decoder_part
        self.with_route = with_route
        enc = decoder_part.cam_pose_encoder
        self.cam_kind = None if enc is None else enc.kind
        if enc is not None and enc.kind in ("vi_v1", "view_index"):
            self.register_buffer("vt_w", torch.stack([m.weight.detach() for m in enc.view_transforms]), persistent=False)
            self.register_buffer("vt_b", torch.stack([m.bias.detach() for m in enc.view_transforms]), persistent=False)

    def _cam(self, cam: torch.Tensor) -> torch.Tensor:
        enc = self.part.cam_pose_encoder
        if self.cam_kind == "simple":
            return torch.relu(enc.linear1(cam))
        v = cam.shape[0]
        h = enc.spatial_encoder(cam)                                        # [V, hidden]
        x = torch.einsum("vh,vdh->vd", h, self.vt_w[:v]) + self.vt_b[:v]    # per-view Linear, batched
        return torch.sigmoid(x) if self.cam_kind == "vi_v1" else x

    def forward(self, seg_hidden, image_embeddings, cam_params, route=None):
        part = self.part
        dtype = part.text_hidden_fcs[0][0].weight.dtype
        e = part.text_hidden_fcs[0](seg_hidden.to(dtype))                  # [1, 256]
        v = cam_params.shape[0]
        emb = e.unsqueeze(1).expand(-1, v, -1)                              # [1, V, 256]
        if self.cam_kind is not None:
            enc = self._cam(cam_params.to(dtype)).unsqueeze(0)
            emb = emb + enc if self.cam_kind == "simple" else emb * enc
        if self.with_route and part.attention_splitter is not None:
            hum = part.attention_splitter(emb, "human")
            obj = part.attention_splitter(emb, "object")
            r = route.reshape(())
            emb = torch.where(r == 1, hum, torch.where(r == 2, obj, emb))
        img = image_embeddings.to(part.mask_decoder.iou_token.weight.dtype)
        dense = part.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, img.shape[2], img.shape[3])
        pe = part.image_pe(img.shape[2], img.dtype, img.device).expand(v, -1, -1, -1)
        masks, iou = part.mask_decoder(image_embeddings=img, image_positional_embeddings=pe,
                                       sparse_prompt_embeddings=emb.unsqueeze(0).expand(v, -1, -1, -1),
                                       dense_prompt_embeddings=dense, multimask_output=False)
        return masks[:, 0, 0].float(), iou[:, 0, 0].float()


def graph_modules(model) -> dict[str, nn.Module]:
    """The three export wrappers of an ``MVLocModel`` (fp32 expected)."""
    return {
        "language": LanguageGraph(model.language).eval(),
        "sam_encoder": SamEncoderGraph(model.image_encoder).eval(),
        "mask_decoder": DecoderGraph(model.decoder, with_route=model.cfg.has_splitter).eval(),
    }


def _example_ids(cfg, length: int, image_at: int, seg_at: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, max(4, min(cfg.vocab_size, 32000)), (1, length), generator=g)
    ids[0, 0] = 1
    ids[0, image_at] = IMAGE_TOKEN_INDEX
    if seg_at is not None:
        ids[0, seg_at] = cfg.seg_token_idx
    return ids


def graph_specs(model, views: int | None = None, seq: int = 40, parity_views: int | None = None,
                parity_seq: int | None = None, max_seq: int = 2048, max_views: int | None = None,
                seed: int = 0) -> dict[str, GraphSpec]:
    """Export specs (example inputs at (``views``, ``seq``); parity inputs at other sizes)."""
    cfg = model.cfg
    mods = graph_modules(model)
    V = views or cfg.multiview_channels
    Vmax = max_views or cfg.multiview_channels
    pV = parity_views or (V - 1 if V > 1 else V + 1)
    pL = parity_seq or seq + 13
    g = torch.Generator().manual_seed(seed)
    vt = model.language.vision_tower.config
    S = model.image_encoder.img_size
    hd = cfg.hidden_size
    emb_hw = S // cfg.sam_encoder.patch_size
    P = (vt.image_size // vt.patch_size) ** 2
    img_range = (2, min(512, max_seq) // 2, max_seq)
    specs = {
        "language": GraphSpec(
            "language", mods["language"],
            (torch.randn(1, 3, vt.image_size, vt.image_size, generator=g), _example_ids(cfg, seq, 5, seed=seed)),
            ["pixel_values", "input_ids"], ["final_hidden", "last_logits"],
            {"input_ids": {1: "seq"}, "final_hidden": {1: "seq_out"}},
            {"seq": img_range},
            (torch.randn(1, 3, vt.image_size, vt.image_size, generator=g), _example_ids(cfg, pL, 9, seed=seed + 1)),
            description=f"CLIP + projector + LLaMA; final hidden has L-1+{P} rows"),
        "sam_encoder": GraphSpec(
            "sam_encoder", mods["sam_encoder"], (torch.randn(V, 3, S, S, generator=g),),
            ["images"], ["image_embeddings"],
            {"images": {0: "views"}, "image_embeddings": {0: "views"}},
            {"views": (1, cfg.multiview_channels, max(Vmax, cfg.multiview_channels))},
            (torch.randn(pV, 3, S, S, generator=g),), description="SAM ViT image encoder"),
    }
    dec_in = [torch.randn(1, hd, generator=g), torch.randn(V, 256, emb_hw, emb_hw, generator=g),
              torch.rand(V, 5, generator=g)]
    dec_par = [torch.randn(1, hd, generator=g), torch.randn(pV, 256, emb_hw, emb_hw, generator=g),
               torch.rand(pV, 5, generator=g)]
    names = ["seg_hidden", "image_embeddings", "cam_params"]
    if mods["mask_decoder"].with_route:
        dec_in.append(torch.tensor([1]))
        dec_par.append(torch.tensor([2]))
        names.append("route")
    specs["mask_decoder"] = GraphSpec(
        "mask_decoder", mods["mask_decoder"], tuple(dec_in), names, ["low_res_masks", "iou_predictions"],
        {"image_embeddings": {0: "views"}, "cam_params": {0: "views"}, "low_res_masks": {0: "views"},
         "iou_predictions": {0: "views"}},
        {"views": (1, cfg.multiview_channels, cfg.multiview_channels)}, tuple(dec_par),
        parity_outputs=["low_res_masks"],
        description="[SEG] projection + camera gate + prompt encoder + SAM mask decoder (one prompt of V tokens)")
    if cfg.cam_encoder_type in ("vi_v1", "view_index") and cfg.multiview_cam_cond and pV > cfg.multiview_channels:
        raise ValueError(f"parity_views={pV} exceeds the checkpoint's multiview_channels={cfg.multiview_channels}")
    return specs


def checkpoint_hash(model_dir: Path) -> str:
    """sha256 over the checkpoint's config.json and weight files (names + contents)."""
    from ..models.mvloc.checkpoint import weight_files

    files = [model_dir / "config.json"] + weight_files(model_dir)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


FINGERPRINT_BYTES = 1 << 20  # read at each end of every weight file


def checkpoint_fingerprint(model_dir: Path) -> str:
    """Cheap identity of a checkpoint for checking an export against it at every start: sha256 over
    config.json's bytes and, per weight file, its name, size and first + last MiB (a few MiB read even for a
    27 GB checkpoint, unlike :func:`checkpoint_hash`). No paths or mtimes: a moved or copied folder matches."""
    from ..models.mvloc.checkpoint import weight_files

    model_dir = Path(model_dir)
    config = (model_dir / "config.json").read_bytes()
    h = hashlib.sha256(b"interactvlm-checkpoint-fingerprint/1\n")
    h.update(f"config.json:{len(config)}\n".encode() + config)
    for f in weight_files(model_dir):
        size = f.stat().st_size
        h.update(f"\n{f.name}:{size}\n".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(FINGERPRINT_BYTES))
            if size > FINGERPRINT_BYTES:
                fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
                h.update(fh.read())
    return h.hexdigest()


def export_model(model, out_dir: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "auto", parity: bool = True,
                 parity_tol: float = 1e-4, graphs=GRAPH_NAMES, source: dict | None = None, **spec_kw) -> Path:
    """Export an in-memory ``MVLocModel`` (fp32) to ``out_dir``; returns the manifest path."""
    from dataclasses import asdict

    model = model.float().eval()
    out_dir = Path(out_dir)
    specs = graph_specs(model, **spec_kw)
    entries, par = {}, {}
    for name in graphs:
        spec = specs[name]
        entries[name] = export_graph(spec, out_dir, opset=opset, exporter=exporter)
        if parity:
            par[name] = check_parity(spec, out_dir / entries[name]["file"], tol=parity_tol)
    vt = model.language.vision_tower.config
    extra = {
        "model_config": asdict(model.cfg),
        "clip_config": {"image_size": vt.image_size, "patch_size": vt.patch_size, "hidden_size": vt.hidden_size},
        "num_image_tokens": (vt.image_size // vt.patch_size) ** 2,
        "sam_img_size": model.image_encoder.img_size,
        "source": source or {},
        "parity": par,
    }
    return write_manifest(out_dir, entries, **extra)


def export_mvloc(model_dir: str | Path, out_dir: str | Path, clip_dir: str | Path | None = None, **kw) -> Path:
    """Load an official-format checkpoint folder (fp32) and export it; returns the manifest path."""
    from ..models.mvloc.checkpoint import load_mvloc

    model_dir = Path(model_dir)
    model, clip_used = load_mvloc(model_dir, clip_dir, precision="fp32", device="cpu")
    source = {"checkpoint": str(model_dir.resolve()), "checkpoint_sha256": checkpoint_hash(model_dir),
              "checkpoint_fingerprint": checkpoint_fingerprint(model_dir), "clip": str(Path(clip_used).resolve())}
    tok = model_dir / "tokenizer.model"
    if tok.is_file():
        source["tokenizer_sha256"] = file_sha256(tok)
    return export_model(model, out_dir, source=source, **kw)


def manifest_summary(path: str | Path) -> str:
    m = json.loads(Path(path).read_text())
    return ", ".join(f"{k}: {v['bytes'] / 1e6:.1f} MB" for k, v in m["graphs"].items())
