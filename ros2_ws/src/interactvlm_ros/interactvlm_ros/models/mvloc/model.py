"""MV-Loc (InteractVLM's multi-view localizer) as three exportable parts, segment-anything style.

::

    photo ─CLIP─► MVLocLanguagePart ──[SEG] hidden [N,Hd]──┐
                  (CLIPVisionModel hidden_states[-2] w/o CLS │
                   → mm_projector → LlamaForCausalLM)        ▼
    renders ─► SamImageEncoderPart ─► [V,256,64,64] ─► MVLocDecoderPart ─► low-res logits [V,1,256,256]
               (transformers SamVisionEncoder)             (text_hidden_fcs → camera gate → (splitter)
                                                            → SamPromptEncoder (text embeds as sparse
                                                            tokens) → SamMaskDecoder)

Every part is an ``nn.Module`` whose ``forward`` takes and returns plain tensors, so each can be
exported on its own (ONNX/TensorRT, see runtime/ and export/). All library pieces are transformers' own classes;
hand-written are only InteractVLM's heads (``modules.py``) and the glue below. The official
multi-view broadcast (spec 2.7: the V view-conditioned tokens form ONE prompt and every view's
decoder sees all of them) is reproduced exactly with ``SamMaskDecoder`` by giving each of the V
image batch items the same ``[1, V, 256]`` sparse prompt — the official code reaches the same
numbers through broadcasting a token batch of 1 against an image batch of V.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .config import MVLocConfig
from .modules import AttentionSplitter, CameraPoseEncoder, text_hidden_fcs
from .tokenizer import IMAGE_TOKEN_INDEX

log = logging.getLogger(__name__)


class MVLocInferenceError(RuntimeError):
    """The model could not produce masks for this input (e.g. no ``[SEG]`` token generated)."""


# --------------------------------------------------------------------------------------------
# part (i): vision tower + LLM -> final hidden states
# --------------------------------------------------------------------------------------------
class MVLocLanguagePart(nn.Module):
    """CLIP vision tower + LLaVA projector + LLaMA.

    ``forward(pixel_values [1,3,224,224], input_ids [1,L] int64 with exactly one -200)``
    -> ``(final_hidden [1, L+255, Hd], last_logits [1, vocab])``; ``final_hidden`` is the post-RMSNorm
    output of the last layer (what the official eval-mode forward returns as ``hidden_states``).
    """

    def __init__(self, cfg: MVLocConfig, vision_tower: nn.Module):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.select_layer = cfg.mm_vision_select_layer
        self.vision_tower = vision_tower
        self.mm_projector = nn.Linear(cfg.mm_hidden_size, cfg.hidden_size)
        self.llm = LlamaForCausalLM(cfg.llama_config())

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B,3,224,224] -> [B,256,Hd]``: CLIP ``hidden_states[select_layer]`` without CLS, projected."""
        dtype = self.mm_projector.weight.dtype
        out = self.vision_tower(pixel_values.to(dtype), output_hidden_states=True)
        feats = out.hidden_states[self.select_layer][:, 1:]
        return self.mm_projector(feats.to(dtype))

    def embed(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """LLaVA ``prepare_inputs_labels_for_multimodal`` for one image: ``[1,L] -> [1, L-1+P, Hd]``
        (tokens before ``-200``, the P image features, tokens after)."""
        pos = (input_ids[0] == IMAGE_TOKEN_INDEX).nonzero()
        if pos.numel() != 1:
            raise MVLocInferenceError(f"input_ids must contain exactly one image token ({IMAGE_TOKEN_INDEX}); "
                                      f"found {pos.numel()}")
        k = int(pos[0, 0])
        emb = self.llm.get_input_embeddings()
        ids = input_ids.clamp(min=0)
        return torch.cat([emb(ids[:, :k]), image_features.to(emb.weight.dtype), emb(ids[:, k + 1:])], dim=1)

    def run_llm(self, inputs_embeds: torch.Tensor, past_key_values=None):
        """LLaMA body + final norm; returns ``(final_hidden [1,T,Hd], logits of the last position [1,vocab], cache)``."""
        out = self.llm.model(inputs_embeds=inputs_embeds, past_key_values=past_key_values,
                             use_cache=past_key_values is not None)
        hidden = out.last_hidden_state
        logits = self.llm.lm_head(hidden[:, -1]).float()
        return hidden, logits, out.past_key_values

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor):
        hidden, logits, _ = self.run_llm(self.embed(input_ids, self.image_features(pixel_values)))
        return hidden, logits


# --------------------------------------------------------------------------------------------
# part (ii): SAM image encoder
# --------------------------------------------------------------------------------------------
class SamImageEncoderPart(nn.Module):
    """transformers ``SamVisionEncoder``: ``images [V,3,S,S]`` (normalized, padded; S=1024) -> ``[V,256,S/16,S/16]``."""

    def __init__(self, cfg: MVLocConfig):
        super().__init__()
        from transformers import SamVisionConfig
        from transformers.models.sam.modeling_sam import SamVisionEncoder

        g = cfg.sam_encoder
        vc = SamVisionConfig(hidden_size=g.embed_dim, num_hidden_layers=g.depth, num_attention_heads=g.num_heads,
                             mlp_dim=g.mlp_dim, patch_size=g.patch_size, image_size=g.img_size,
                             window_size=g.window_size, global_attn_indexes=list(g.global_attn_indexes),
                             output_channels=g.out_chans, qkv_bias=True, use_abs_pos=True, use_rel_pos=True,
                             layer_norm_eps=1e-6, hidden_act="gelu")
        vc._attn_implementation = "sdpa"
        self.img_size = g.img_size
        self.encoder = SamVisionEncoder(vc)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.to(self.encoder.patch_embed.projection.weight.dtype)).last_hidden_state


# --------------------------------------------------------------------------------------------
# part (iii): [SEG] projection + camera conditioning + prompt encoder + mask decoder
# --------------------------------------------------------------------------------------------
ROUTES = {0: None, 1: "human", 2: "object"}


class MVLocDecoderPart(nn.Module):
    """``forward(seg_hidden [N,Hd], image_embeddings [V,256,h,w], cam_params [V,5], route=0)``
    -> ``(low_res_masks [V,1,4h,4w], iou [V,1])``.

    Steps (spec 2.6-2.7): ``e = text_hidden_fcs(seg_hidden)`` ``[N,256]``; repeated to ``[N,V,256]``;
    camera gate (``vi_v1``/``view_index``: multiply, ``simple``: add); optional splitter
    (``route`` 1 = human, 2 = object); the V tokens form one sparse prompt that every view's decoder sees;
    dense prompt = ``no_mask_embed``; mask token 0 (``multimask_output=False``). Only N = 1 is
    supported (the official decoder fails for N >= 2 with V > 1)."""

    def __init__(self, cfg: MVLocConfig):
        super().__init__()
        from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig
        from transformers.models.sam.modeling_sam import SamMaskDecoder, SamPromptEncoder

        d = cfg.sam_decoder
        e = cfg.sam_encoder
        self.text_hidden_fcs = text_hidden_fcs(cfg.hidden_size, cfg.out_dim)
        self.cam_pose_encoder = (CameraPoseEncoder(cfg.cam_encoder_type, cfg.multiview_channels, d.transformer_dim,
                                                   cfg.cam_hidden_dim) if cfg.multiview_cam_cond else None)
        self.attention_splitter = (AttentionSplitter(d.transformer_dim, cfg.splitter_hidden_dim)
                                   if cfg.has_splitter else None)
        pc = SamPromptEncoderConfig(hidden_size=d.transformer_dim, image_size=e.img_size, patch_size=e.patch_size,
                                    mask_input_channels=d.mask_in_chans, num_point_embeddings=4,
                                    layer_norm_eps=1e-6, hidden_act="gelu")
        sc = SamConfig(vision_config=SamVisionConfig(hidden_size=d.transformer_dim, num_pos_feats=d.transformer_dim // 2),
                       prompt_encoder_config=pc)
        self.prompt_encoder = SamPromptEncoder(sc)
        mc = SamMaskDecoderConfig(hidden_size=d.transformer_dim, hidden_act="relu", mlp_dim=d.mlp_dim,
                                  num_hidden_layers=d.depth, num_attention_heads=d.num_heads,
                                  attention_downsample_rate=2, num_multimask_outputs=d.num_multimask_outputs,
                                  iou_head_depth=d.iou_head_depth, iou_head_hidden_dim=d.iou_head_hidden_dim,
                                  layer_norm_eps=1e-5)  # official TwoWayAttentionBlock uses nn.LayerNorm's 1e-5
        mc._attn_implementation = "eager"
        self.mask_decoder = SamMaskDecoder(mc)
        self.embed_size = e.img_size // e.patch_size

    def image_pe(self, size: int, dtype: torch.dtype, device) -> torch.Tensor:
        """Dense positional encoding of the ``size x size`` grid -> ``[1, 256, size, size]``."""
        grid = torch.ones((size, size), device=device, dtype=dtype)
        y = (grid.cumsum(0) - 0.5) / size
        x = (grid.cumsum(1) - 0.5) / size
        pe = self.prompt_encoder.shared_embedding(torch.stack([x, y], dim=-1))
        return pe.permute(2, 0, 1).unsqueeze(0)

    def prompt_embeddings(self, seg_hidden: torch.Tensor, cam_params: torch.Tensor, route: int = 0) -> torch.Tensor:
        """``seg_hidden [N,Hd]``, ``cam_params [V,5]`` -> view-conditioned sparse prompt ``[N, V, 256]``."""
        dtype = self.text_hidden_fcs[0][0].weight.dtype
        e = self.text_hidden_fcs[0](seg_hidden.to(dtype))
        v = cam_params.shape[0]
        emb = e.unsqueeze(1).repeat(1, v, 1)
        if self.cam_pose_encoder is not None:
            enc = self.cam_pose_encoder(cam_params.to(next(self.cam_pose_encoder.parameters()).dtype)).unsqueeze(0)
            emb = emb + enc.to(emb.dtype) if self.cam_pose_encoder.additive else emb * enc.to(emb.dtype)
        branch = ROUTES.get(int(route))
        if branch is not None and self.attention_splitter is not None:
            emb = self.attention_splitter(emb, branch)
        return emb

    def forward(self, seg_hidden: torch.Tensor, image_embeddings: torch.Tensor, cam_params: torch.Tensor,
                route: int = 0):
        sparse = self.prompt_embeddings(seg_hidden, cam_params, route)  # [N, V, 256]
        if sparse.shape[0] != 1:
            raise MVLocInferenceError(f"{sparse.shape[0]} segmentation tokens; the multi-view decoder supports one")
        v = image_embeddings.shape[0]
        dtype = self.mask_decoder.iou_token.weight.dtype
        img = image_embeddings.to(dtype)
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, img.shape[2], img.shape[3])
        pe = self.image_pe(img.shape[2], dtype, img.device).expand(v, -1, -1, -1)
        masks, iou = self.mask_decoder(image_embeddings=img, image_positional_embeddings=pe,
                                       sparse_prompt_embeddings=sparse.to(dtype).unsqueeze(0).expand(v, -1, -1, -1),
                                       dense_prompt_embeddings=dense, multimask_output=False)
        return masks[:, 0], iou[:, 0]


# --------------------------------------------------------------------------------------------
# the whole model + inference
# --------------------------------------------------------------------------------------------
class MVLocModel(nn.Module):
    """The three parts plus the official inference logic (teacher-forced forward, greedy generation)."""

    def __init__(self, cfg: MVLocConfig, vision_tower: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.language = MVLocLanguagePart(cfg, vision_tower)
        self.image_encoder = SamImageEncoderPart(cfg)
        self.decoder = MVLocDecoderPart(cfg)

    # -- [SEG] bookkeeping (spec 2.3 step 5, 2.4, 2.5) --------------------------------------------
    def seg_rows(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """Positions of seg tokens in ``ids`` and the hidden-state rows used for them.

        Official: mask = isin(ids, seg_ids)[1:], img_emb_len False columns prepended -> row
        ``i - 1 + img_emb_len`` = the final state of the token **before** ``[SEG]``. The arithmetic is only
        right when the single image token precedes the ``[SEG]``; other layouts are rejected."""
        seg_ids = set(self.cfg.seg_ids)
        pos = [i for i, t in enumerate(ids) if t in seg_ids and i >= 1]
        if pos:
            img = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN_INDEX]
            if len(img) != 1 or img[0] > pos[0]:
                raise MVLocInferenceError("the [SEG] token must come after exactly one image token in the prompt")
        return pos, [i - 1 + self.cfg.img_emb_len for i in pos]

    def route_of(self, ids: list[int], pos: list[int]) -> int:
        """Splitter routing token (first seg token): 1 human ([HSEG]), 2 object ([OSEG]), 0 none."""
        if not pos or not self.cfg.has_splitter:
            return 0
        t = ids[pos[0]]
        if t == self.cfg.hseg_token_idx:
            return 1
        if t == self.cfg.oseg_token_idx:
            return 2
        return 0

    def _select(self, ids: list[int], hidden: torch.Tensor) -> dict:
        pos, rows = self.seg_rows(ids)
        if len(pos) > 1:
            log.warning("MV-Loc: %d segmentation tokens in the sequence; using the first one (the official "
                        "multi-view decoder fails for more than one)", len(pos))
        seg_hidden = hidden[0, rows[:1]] if pos else None
        return {"seg_positions": pos, "seg_rows": rows, "seg_hidden": seg_hidden, "route": self.route_of(ids, pos)}

    @torch.no_grad()
    def forward_teacher_forced(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict:
        """Path B (``model_forward``): one LLM pass over the full conversation incl. the answer.

        Returns ``final_hidden [1,L+255,Hd]``, ``output_ids`` (= input ids), ``seg_hidden [1,Hd]`` or None, ..."""
        feats = self.language.image_features(pixel_values)
        embeds = self.language.embed(input_ids, feats)
        hidden, _, _ = self.language.run_llm(embeds)
        ids = input_ids[0].tolist()
        out = {"final_hidden": hidden, "output_ids": ids, "inputs_embeds": embeds, "image_features": feats}
        out.update(self._select(ids, hidden))
        return out

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, max_new_tokens: int = 512) -> dict:
        """Path A (``evaluate``): greedy decoding **with** a KV cache.

        The official code re-runs the whole sequence every step (``use_cache=False``) and takes the
        ``[SEG]`` state from the last step's full pass. With a causal LLM that pass equals, row by row,
        the prefill rows followed by the one new row of every cached step, so ``final_hidden`` is rebuilt
        by concatenation (spec 2.3/2.5): ``[1, (L_out-1)+255, Hd]``."""
        from transformers import DynamicCache

        feats = self.language.image_features(pixel_values)
        embeds = self.language.embed(input_ids, feats)
        cache = DynamicCache()
        hidden, logits, cache = self.language.run_llm(embeds, cache)
        rows = [hidden]
        ids = input_ids[0].tolist()
        step_logits = []
        emb = self.language.llm.get_input_embeddings()
        for step in range(max_new_tokens):
            step_logits.append(logits[0])
            nxt = int(torch.argmax(logits[0]))
            ids.append(nxt)
            if nxt == self.cfg.eos_token_id or step == max_new_tokens - 1:
                break
            h, logits, cache = self.language.run_llm(emb(torch.tensor([[nxt]], device=input_ids.device)), cache)
            rows.append(h)
        final_hidden = torch.cat(rows, dim=1)
        out = {"final_hidden": final_hidden, "output_ids": ids, "step_logits": torch.stack(step_logits),
               "num_prompt_ids": int(input_ids.shape[1]), "image_features": feats}
        out.update(self._select(ids, final_hidden))
        return out

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """SAM embeddings of the preprocessed renders ``[V,3,S,S] -> [V,256,S/16,S/16]``."""
        return self.image_encoder(images)

    @torch.no_grad()
    def decode_masks(self, seg_hidden: torch.Tensor, image_embeddings: torch.Tensor, cam_params: torch.Tensor,
                     route: int = 0):
        return self.decoder(seg_hidden, image_embeddings, cam_params, route)


def postprocess_masks(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                      img_size: int = 1024) -> torch.Tensor:
    """SAM ``postprocess_masks`` in float32: ``[V,1,256,256]`` -> bilinear to ``img_size``² -> crop to
    ``input_size`` -> bilinear to ``original_size`` -> ``[V, H, W]`` float32 logits (never thresholded)."""
    m = F.interpolate(low_res.float(), (img_size, img_size), mode="bilinear", align_corners=False)
    m = m[..., : input_size[0], : input_size[1]]
    if tuple(original_size) != tuple(m.shape[-2:]):
        m = F.interpolate(m, tuple(original_size), mode="bilinear", align_corners=False)
    return m[:, 0]
