"""MV-Loc configuration: the official ``config.json`` fields + geometry read from tensor shapes.

``MVLocConfig.from_official(config_json, shapes)`` reads an official InteractVLM HF folder's
config and the checkpoint's ``{key: shape}`` table (spec 1.2/1.4): the LLaMA size comes from the
config, the SAM image-encoder geometry from the shapes (embed dim from ``patch_embed``, depth from
the number of blocks, heads = embed / rel-pos head dim, global-attention blocks = those whose
rel-pos table has ``2*grid-1`` rows, window = ``(rows+1)/2`` of the others), the mask-decoder
geometry likewise. Works for the 13B release and for tiny test checkpoints.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ...views import get_view_set

ENC = "model.visual_model.image_encoder."
DEC = "model.visual_model.mask_decoder."

# The released view types (spec 3.2/3.3): names in the SAM stacking order + the camera table
# [dist, elev, azim, x_off, y_off] per view with the distance the camera code *encodes* (objects: 2.0 although
# rendered at 1.5, spec pitfall 2). The geometry comes from the core's ``views`` (one source of truth).
RELEASED_VIEW_TYPES = ("4MV-Z_Vitru", "4MV-Z_Vitru_mv2", "4MV-Z_Vitru_FootGround", "4MV-Z_Vitru_wScene",
                       "4MV-Z_HM", "4MV-Z_HM_BM", "4MV-Z_HM_BM-L")


def _view_type(key: str) -> dict[str, Any]:
    vs = get_view_set(key)
    d = vs.encoded_dist
    return {"names": list(vs.names),
            "cams": [[v.dist if d is None else d, v.elev, v.azim, v.x_off, v.y_off] for v in vs.views]}


VIEW_TYPES: dict[str, dict[str, Any]] = {k: _view_type(k) for k in RELEASED_VIEW_TYPES}


class ConfigError(ValueError):
    """The checkpoint's config.json / tensor shapes do not describe a supported MV-Loc model."""


def view_type_cam_params(view_type: str) -> list[list[float]]:
    """Normalized camera 5-vectors ``[V][5]`` of an official view-type key (distance as *encoded*): the official
    ``normalize_cam_params`` ``(d/10, e/360, a/360, (x+1)/2, (y+1)/2)``, computed by ``views.ViewSet.cam_params``."""
    if view_type not in VIEW_TYPES:
        raise ConfigError(f"view type {view_type!r} is not a released InteractVLM view set; known: {sorted(VIEW_TYPES)}")
    return get_view_set(view_type).cam_params().tolist()


@dataclass
class SamEncoderGeometry:
    """SAM ViT image-encoder hyper-parameters (ViT-H: 1280/32/16, window 14, globals 7,15,23,31)."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_dim: int = 5120
    patch_size: int = 16
    img_size: int = 1024
    window_size: int = 14
    global_attn_indexes: list[int] = field(default_factory=lambda: [7, 15, 23, 31])
    out_chans: int = 256


@dataclass
class SamDecoderGeometry:
    """SAM prompt encoder + mask decoder hyper-parameters (original SAM: 256-d, depth 2, MLP 2048)."""

    transformer_dim: int = 256
    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


@dataclass
class MVLocConfig:
    """Everything needed to build an MV-Loc model (LLaVA/LISA + SAM + InteractVLM heads)."""

    # LLaMA (HF LlamaConfig fields)
    vocab_size: int = 32003
    hidden_size: int = 5120
    intermediate_size: int = 13824
    num_hidden_layers: int = 40
    num_attention_heads: int = 40
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    hidden_act: str = "silu"
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    # LLaVA
    mm_hidden_size: int = 1024
    mm_vision_select_layer: int = -2
    mm_use_im_start_end: bool = True
    img_emb_len: int = 255
    # InteractVLM
    seg_token_idx: int = 32000
    hseg_token_idx: int | None = None
    oseg_token_idx: int | None = None
    token_type: str = "Gen"
    out_dim: int = 256
    multiview_channels: int = 4
    multiview_cam_cond: bool = True
    cam_encoder_type: str = "vi_v1"
    cam_hidden_dim: int | None = None  # None: 128 (vi_v1) / out_dim (view_index); read from shapes
    splitter_hidden_dim: int = 128
    hC_sam_view_type: str = "4MV-Z_Vitru"
    oC_sam_view_type: str = "4MV-Z_HM"
    hC_loss_weight: float = 3.0
    oC_loss_weight: float = 0.0
    eos_token_id: int = 2
    bos_token_id: int = 1
    sam_encoder: SamEncoderGeometry = field(default_factory=SamEncoderGeometry)
    sam_decoder: SamDecoderGeometry = field(default_factory=SamDecoderGeometry)

    @property
    def base_token_type(self) -> str:
        return self.token_type.replace("-DifDe", "")

    @property
    def has_splitter(self) -> bool:
        return self.base_token_type in ("Gen-Hu-Obj", "Gen-Int")

    @property
    def seg_ids(self) -> list[int]:
        """Ids that mark a segmentation token in the output ids (OR of seg/hseg/oseg, spec 2.3 step 5)."""
        ids = [self.seg_token_idx]
        if self.has_splitter:
            ids += [i for i in (self.hseg_token_idx, self.oseg_token_idx) if i is not None]
        return sorted(set(ids))

    def tasks(self) -> list[str]:
        """Tasks the checkpoint serves: ``hcontact`` if hC_loss_weight > 0, ``ocontact`` if oC_loss_weight > 0."""
        out = []
        if self.hC_loss_weight > 0:
            out.append("hcontact")
        if self.oC_loss_weight > 0:
            out.append("ocontact")
        return out or ["hcontact"]

    def cam_params(self, task: str) -> list[list[float]]:
        """Camera 5-vectors the checkpoint expects for ``task`` (object: the dist-2.0 vectors, spec pitfall 2)."""
        return view_type_cam_params(self.hC_sam_view_type if task.startswith("h") else self.oC_sam_view_type)

    def view_names(self, task: str) -> list[str]:
        return list(VIEW_TYPES[self.hC_sam_view_type if task.startswith("h") else self.oC_sam_view_type]["names"])

    def llama_config(self):
        from transformers import LlamaConfig

        kw = dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                  num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                  num_key_value_heads=self.num_key_value_heads or self.num_attention_heads,
                  max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
                  hidden_act=self.hidden_act, tie_word_embeddings=False, use_cache=True,
                  bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pad_token_id=0)
        rope = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling:
            rope.update({"rope_type": self.rope_scaling.get("type", self.rope_scaling.get("rope_type")),
                         **{k: v for k, v in self.rope_scaling.items() if k not in ("type",)}})
        cfg = LlamaConfig(**kw, rope_parameters=rope)
        cfg._attn_implementation = "sdpa"
        return cfg

    def to_official_json(self) -> dict:
        """``config.json`` content in the official layout (used to write test checkpoints)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("sam_encoder", "sam_decoder", "rope_theta", "cam_hidden_dim",
                                                         "splitter_hidden_dim")}
        d.update(architectures=["InteractVLMForCausalLM"], model_type="llava", torch_dtype="bfloat16",
                 mm_vision_tower="openai/clip-vit-large-patch14", vision_tower="openai/clip-vit-large-patch14",
                 mm_vision_select_feature="patch", use_mm_proj=True, use_cache=False, train_mask_decoder=True,
                 use_fusion=False, use_uncertainty=False, tie_word_embeddings=False, pad_token_id=0,
                 rope_scaling=self.rope_scaling)
        if self.rope_theta != 10000.0:
            d["rope_theta"] = self.rope_theta
        return d

    @classmethod
    def from_official(cls, cfg: dict, shapes: dict[str, tuple], source: str = "config.json") -> "MVLocConfig":
        """Build from an official ``config.json`` dict and the checkpoint's ``{key: shape}``."""
        need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "seg_token_idx")
        missing = [k for k in need if cfg.get(k) is None]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {missing}; this is not an InteractVLM/LISA config "
                              f"(expected the config.json written by the official merge script)")
        kw: dict[str, Any] = {}
        for f in cls.__dataclass_fields__:
            if f in ("sam_encoder", "sam_decoder"):
                continue
            if cfg.get(f) is not None:
                kw[f] = cfg[f]
        rp = cfg.get("rope_parameters") or {}
        if "rope_theta" in rp:
            kw["rope_theta"] = rp["rope_theta"]
        if cfg.get("intermediate_size") is None:
            kw["intermediate_size"] = 11008
        out = cls(**kw)
        if out.cam_encoder_type not in ("simple", "view_index", "vi_v1") and out.multiview_cam_cond:
            raise ConfigError(f"{source}: cam_encoder_type={out.cam_encoder_type!r} is not one of simple, view_index, vi_v1")
        for task in out.tasks():  # the camera table is needed on every frame: an unknown key fails here, not there
            name = "hC_sam_view_type" if task.startswith("h") else "oC_sam_view_type"
            if getattr(out, name) not in VIEW_TYPES:
                raise ConfigError(f"{source}: {name}={getattr(out, name)!r} (task {task}) is not a released InteractVLM "
                                  f"view set; known: {sorted(VIEW_TYPES)}")
        if "DifDe" in out.token_type:
            raise ConfigError(f"{source}: token_type={out.token_type!r} (separate human/object decoders) is not "
                              f"supported; no released model uses DifDe")
        out.sam_encoder = encoder_geometry(shapes, source)
        out.sam_decoder = decoder_geometry(shapes, source)
        if "cam_pose_encoder.spatial_encoder.0.weight" in shapes:
            out.cam_hidden_dim = int(shapes["cam_pose_encoder.spatial_encoder.0.weight"][0])
        if "attention_splitter.input_proj.weight" in shapes:
            out.splitter_hidden_dim = int(shapes["attention_splitter.input_proj.weight"][0])
        if "model.mm_projector.weight" in shapes:
            out.mm_hidden_size = int(shapes["model.mm_projector.weight"][1])
        return out


def encoder_geometry(shapes: dict[str, tuple], source: str = "checkpoint") -> SamEncoderGeometry:
    """SAM image-encoder geometry from the official key shapes (see module docstring)."""
    try:
        pw = shapes[ENC + "patch_embed.proj.weight"]
        pos = shapes[ENC + "pos_embed"]
    except KeyError as exc:
        raise ConfigError(f"{source}: key {exc.args[0]!r} missing — the checkpoint has no SAM image encoder "
                          f"(official releases store the full SAM under model.visual_model.)") from None
    embed, patch = int(pw[0]), int(pw[2])
    grid = int(pos[1])
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(re.escape(ENC) + r"blocks\.(\d+)\.", k))})
    if not blocks:
        raise ConfigError(f"{source}: no {ENC}blocks.* keys")
    rel = {b: int(shapes[f"{ENC}blocks.{b}.attn.rel_pos_h"][0]) for b in blocks
           if f"{ENC}blocks.{b}.attn.rel_pos_h" in shapes}
    if len(rel) != len(blocks):
        raise ConfigError(f"{source}: SAM blocks without rel_pos_h; only rel-pos SAM encoders are supported")
    head_dim = int(shapes[f"{ENC}blocks.{blocks[0]}.attn.rel_pos_h"][1])
    globals_ = [b for b in blocks if rel[b] == 2 * grid - 1]
    windows = {(rel[b] + 1) // 2 for b in blocks if b not in globals_}
    if len(windows) > 1:
        raise ConfigError(f"{source}: windowed SAM blocks disagree on the window size {sorted(windows)}")
    return SamEncoderGeometry(
        embed_dim=embed, depth=len(blocks), num_heads=embed // head_dim,
        mlp_dim=int(shapes[f"{ENC}blocks.{blocks[0]}.mlp.lin1.weight"][0]), patch_size=patch, img_size=grid * patch,
        window_size=windows.pop() if windows else 0, global_attn_indexes=globals_,
        out_chans=int(shapes[ENC + "neck.0.weight"][0]))


def decoder_geometry(shapes: dict[str, tuple], source: str = "checkpoint") -> SamDecoderGeometry:
    """SAM mask-decoder geometry from the official key shapes (heads are not visible in shapes: 8)."""
    try:
        dim = int(shapes[DEC + "iou_token.weight"][1])
        n_mask = int(shapes[DEC + "mask_tokens.weight"][0])
        mlp = int(shapes[DEC + "transformer.layers.0.mlp.lin1.weight"][0])
    except KeyError as exc:
        raise ConfigError(f"{source}: key {exc.args[0]!r} missing — no SAM mask decoder in the checkpoint") from None
    depth = len({k.split(".")[5] for k in shapes if k.startswith(DEC + "transformer.layers.")})
    iou_layers = [k for k in shapes if k.startswith(DEC + "iou_prediction_head.layers.") and k.endswith(".weight")]
    mic = shapes.get("model.visual_model.prompt_encoder.mask_downscaling.3.weight", (16,))[0]
    return SamDecoderGeometry(transformer_dim=dim, depth=depth, mlp_dim=mlp, num_multimask_outputs=n_mask - 1,
                              iou_head_depth=len(iou_layers),
                              iou_head_hidden_dim=int(shapes[DEC + "iou_prediction_head.layers.0.weight"][0]),
                              mask_in_chans=int(mic))
