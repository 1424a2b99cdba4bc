"""Training loop of the default localizer (``interactvlm train --config FILE``).

Seeded and resumable: batch ``k`` is drawn from ``default_rng([seed, k])`` so a resumed run sees the
same batches as an uninterrupted one; ``last.pt`` (model + optimiser + step + the config and dataset a
``--resume`` must match) is written every ``checkpoint_every`` steps. Outputs in ``out``: ``model.pt``
(float16 weights + model config + label space), ``frame.onnx`` (per-frame graph), ``config.yaml`` (the
resolved config), ``log.jsonl`` (losses), ``metrics.json`` (validation mask metrics; vertex-level metrics come
from ``interactvlm eval``).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from ..models.default.features import FeatureError, build_features
from ..models.default.labels import LabelSpace
from ..models.default.predictor import render_input
from ..paths import remove_stale
from .augment import AugmentConfig, augment_cues
from .data import SplitData, load_split, read_meta, remask

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "data": None,
    "out": None,
    "train_split": "train",
    "val_split": "val",
    "train_limit": None,
    "val_limit": 256,
    "seed": 0,
    "steps": 2000,
    "batch_size": 32,
    "lr": 2.0e-3,
    "weight_decay": 0.01,
    "warmup": 100,
    "grad_clip": 1.0,
    "threads": 1,
    "checkpoint_every": 200,
    "log_every": 20,
    "eval_every": 500,
    "asset_size": 256,
    "body": "anny",
    "model": {"dim": 64, "depth": 2, "heads": 4, "render_size": 64, "mask_size": None, "up_channels": 16,
              "vertex_head": 0, "vertices": 0, "vertex_branch": False, "object_vertex_head": 0, "object_vertex_freqs": 4},
    # a checkpoint (last.pt of a run, or a packaged model.pt) whose weights start this run where names and shapes
    # match (a new vertex head starts from the PCA of the training contact, other new parts from their random init);
    # the optimiser starts fresh. Ignored when resuming.
    "init_from": None,
    "vertex_lr_scale": 1.0,  # learning rate of the vertex head relative to ``lr`` (it starts from scratch)
    # "vertex": train only the vertex branch + head (model.vertex_branch) on loss.vertex, everything else frozen and
    # not run (no renders, no mask decoders: ~50x the samples/s); the masks stay those of init_from
    # "object_vertex": the same for the object vertex head (model.object_vertex_head) on loss.object_vertex
    "train_only": None,
    # how the pipeline combines the vertex head with the lifted masks (lift.merge_direct_contact): max | direct
    "vertex_merge": "max",
    "object_vertex_merge": "max",  # the same for the object vertex head and the lifted object masks
    # lifted: weight of a per-vertex loss (BCE + soft Dice) on the human contact *lifted* from the predicted masks
    # with the deployed lifting (lift.Lifter, soft aggregation, at asset_size) — the quantity eval scores;
    # lifted_object: the same on the object side (soft aggregation as a differentiable surrogate of the deployed
    # p > 0.3 vote rule)
    # vertex: the same BCE + soft Dice on the vertex head's per-vertex logits, over all template vertices
    # object_vertex: the same on the object vertex head's logits, over all vertices of each sample's object mesh
    "loss": {"focal": 2.0, "dice": 1.0, "alpha": 0.5, "gamma": 2.0, "object_weight": 1.0, "lifted": 0.0,
             "lifted_object": 0.0, "vertex": 0.0, "object_vertex": 0.0},
    "augment": {},
    "label": {"temperature": 0.05, "known_threshold": 0.5},
    "export_onnx": True,
    "remask": True,  # recompute GT view masks from per-vertex GT on the assets' views (template-independent)
    "refresh_every": 0,  # > 0: re-read meta.json's splits every N steps (train while a dataset is being generated)
}


class ConfigError(ValueError):
    pass


class DivergedError(ConfigError):
    """A non-finite loss, gradient or weight: training stops before it saves anything from that step."""


# keys a --resume may change: where the run writes and how often, what it validates on, and threads (none of them
# changes the weights); ``steps`` may grow (logged: the learning-rate schedule of the steps left follows the new count)
RESUME_FREE = ("data", "out", "threads", "checkpoint_every", "log_every", "eval_every", "val_split", "val_limit",
               "export_onnx", "init_from", "steps")


VERTEX_PATH = ("vertex_features.", "vertex_transformer.", "human_vertex_decoder.")  # what train_only: vertex trains
# what train_only: object_vertex trains
OBJECT_VERTEX_PATH = ("object_vertex_features.", "object_vertex_transformer.", "object_vertex_decoder.")
TRAIN_ONLY = {"vertex": VERTEX_PATH, "object_vertex": OBJECT_VERTEX_PATH}
HEADS = ("human_vertex_decoder.", "object_vertex_decoder.")  # learning rate × vertex_lr_scale


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """YAML/JSON file -> config merged over DEFAULTS (nested dicts merged); unknown keys are errors."""
    cfg = copy.deepcopy(DEFAULTS)
    user: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {p} not found")
        text = p.read_text()
        import yaml

        try:
            user = json.loads(text) if p.suffix == ".json" else (yaml.safe_load(text) or {})
        except (ValueError, yaml.YAMLError) as exc:  # one line: the parser's message names the line and column
            raise ConfigError(f"{p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'} "
                              f"({' '.join(str(exc).split())}); fix the file") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
    for src in (user, overrides or {}):
        for k, v in src.items():
            if k not in cfg:
                raise ConfigError(f"unknown config key '{k}'; known: {sorted(cfg)}")
            if isinstance(cfg[k], dict) and v is not None and not isinstance(v, dict):
                raise ConfigError(f"'{k}' must be a mapping of keys, got {v!r}")
            if isinstance(cfg[k], dict) and isinstance(v, dict):
                known = set(AugmentConfig.__dataclass_fields__) if k == "augment" else set(cfg[k])
                bad = set(v) - known
                if bad:  # a misspelt loss/label/augment key would otherwise be ignored (or fail after the data loaded)
                    raise ConfigError(f"unknown {k} keys {sorted(bad)}; known: {sorted(known)}")
                cfg[k] = {**cfg[k], **v}
            elif v is not None or k not in ("data", "out"):
                cfg[k] = v
    if not cfg["data"]:
        raise ConfigError("config needs 'data' (a synthetic dataset folder) — or pass --data")
    if not cfg["out"]:
        raise ConfigError("config needs 'out' (output folder) — or pass --out")
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Combinations of keys that cannot train (ConfigError naming the keys)."""
    from ..lift import MERGE_RULES

    for key, least in (("steps", 1), ("batch_size", 1), ("threads", 1), ("checkpoint_every", 1), ("log_every", 1),
                       ("warmup", 0), ("eval_every", 0), ("refresh_every", 0)):
        v = cfg.get(key, least)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"{key}: {v!r} is not a whole number >= {least}")
    for key in ("train_limit", "val_limit"):
        _whole(key, cfg.get(key), 1, null="the whole split")
    _whole("seed", cfg.get("seed", 0), 0)  # numpy's default_rng needs >= 0
    _number("lr", cfg.get("lr", 1.0), above=0.0)
    _number("weight_decay", cfg.get("weight_decay", 0.0))
    _number("grad_clip", cfg.get("grad_clip", 1.0), above=0.0)
    _number("vertex_lr_scale", cfg.get("vertex_lr_scale", 1.0))
    for k, v in cfg["loss"].items():
        _number(f"loss.{k}", v)
    for k, v in cfg.get("augment", {}).items():
        _number(f"augment.{k}", v)
    _number("label.temperature", cfg["label"].get("temperature", 1.0), above=0.0)
    _number("label.known_threshold", cfg["label"].get("known_threshold", 0.0), least=-1.0)
    m = cfg["model"]
    for k, least in (("dim", 1), ("depth", 1), ("heads", 1), ("render_size", 1), ("up_channels", 1), ("vertex_head", 0),
                     ("vertices", 0), ("object_vertex_head", 0), ("object_vertex_freqs", 0)):
        _whole(f"model.{k}", m.get(k, least), least)
    _whole("model.mask_size", m.get("mask_size"), 1, null="the dataset's")
    dim, heads = m.get("dim", 64), m.get("heads", 4)
    if dim % heads or (dim // 2) % heads:  # the attention layers split dim (and dim // 2) into heads
        raise ConfigError(f"model.dim {dim}: dim and dim // 2 must be multiples of model.heads ({heads})")
    a = cfg.get("asset_size", 256)
    if isinstance(a, bool) or not isinstance(a, int) or not 8 <= a <= 4096:
        raise ConfigError(f"asset_size: {a!r} is not a whole number in 8..4096")
    for key in ("data", "out", "body"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f"{key}: {cfg[key]!r} is not a text (a {'body model name' if key == 'body' else 'folder'})")
    kind, sep, where = str(cfg.get("body", "anny")).partition(":")  # bodies.get_body_model's specs
    if not (kind == "anny" and not sep) and not (kind in ("smplh", "smplx") and sep and where):
        raise ConfigError(f"body: '{cfg['body']}' is not known; use 'anny', 'smplh:/path/to/SMPLH_NEUTRAL.pkl' or "
                          "'smplx:/path/to/models'")
    for key in ("vertex_merge", "object_vertex_merge"):
        if cfg.get(key, "max") not in MERGE_RULES:
            raise ConfigError(f"{key}: '{cfg[key]}' is not one of {MERGE_RULES}")
    if cfg["model"].get("vertex_branch") and not cfg["model"].get("vertex_head"):
        raise ConfigError("model.vertex_branch needs model.vertex_head > 0 (the head it feeds)")
    lc = cfg["loss"]
    if float(lc.get("object_vertex", 0.0)) > 0 and not cfg["model"].get("object_vertex_head"):
        raise ConfigError("loss.object_vertex > 0 needs model.object_vertex_head > 0 (the head it trains)")
    only = cfg.get("train_only")
    if only not in (None, *TRAIN_ONLY):
        raise ConfigError(f"train_only: '{only}' is not known; use null (everything), 'vertex' or 'object_vertex'")
    if only == "vertex":
        if not cfg["model"].get("vertex_branch") or float(lc.get("vertex", 0.0)) <= 0:
            raise ConfigError("train_only: vertex needs model.vertex_branch: true, model.vertex_head > 0 and loss.vertex > 0")
    if only == "object_vertex":
        if not cfg["model"].get("object_vertex_head") or float(lc.get("object_vertex", 0.0)) <= 0:
            raise ConfigError("train_only: object_vertex needs model.object_vertex_head > 0 and loss.object_vertex > 0")
    if cfg.get("init_from") is not None:  # before any data is read (it was checked after the data and GT masks)
        if not isinstance(cfg["init_from"], str):
            raise ConfigError(f"init_from: {cfg['init_from']!r} is not a text (a checkpoint file)")
        # a folder here; a missing file in _train (a --resume ignores init_from: its file may be gone by then)
        _check_init_from(Path(cfg["init_from"]), must_exist=False)
    other = {"vertex": "object_vertex", "object_vertex": "vertex"}.get(only)
    if other and float(lc.get(other, 0.0)) > 0:
        raise ConfigError(f"train_only: {only} does not run the other vertex head: set loss.{other} to 0")
    if only and (float(lc.get("lifted", 0.0)) > 0 or float(lc.get("lifted_object", 0.0)) > 0):
        raise ConfigError(f"train_only: {only} runs no mask decoder: set loss.lifted and loss.lifted_object to 0")


def _whole(key: str, v, least: int, null: str | None = None) -> None:
    """A whole number >= ``least`` (or None when ``null`` says what None means), or ConfigError naming the key."""
    if v is None and null is not None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ConfigError(f"{key}: {v!r} is not a whole number >= {least}" + (f" (or null: {null})" if null else ""))


def _number(key: str, v, above: float | None = None, least: float = 0.0) -> None:
    """A real number (> ``above`` when given, else >= ``least``), or ConfigError naming the key."""
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if ok and (v > above if above is not None else v >= least):
        return
    hint = ""
    if isinstance(v, str):
        try:
            float(v)
            hint = f" (YAML reads {v} as text: write it with a dot and a signed exponent, e.g. 1.0e-3)"
        except ValueError:
            pass
    raise ConfigError(f"{key}: {v!r} is not a number {'>' if above is not None else '>='} "
                      f"{above if above is not None else least}{hint}")


class Batcher:
    """Turns a SplitData + label space into model-ready batches (augmented or clean)."""

    def __init__(self, data: SplitData, label_feats: dict[str, np.ndarray], aug: AugmentConfig | None):
        self.d = data
        self.label_feats = label_feats
        self.aug = aug
        self.zero_label = np.zeros_like(next(iter(label_feats.values())))

    def cues(self, i: int, rng: np.random.Generator | None, use_roi: bool = False, use_depth: bool = False):
        d = self.d
        bbox = d.bbox[i] if np.isfinite(d.bbox[i]).all() else None
        cue = d.depth_cue[i] if np.isfinite(d.depth_cue[i][0]) else None
        if self.aug is not None and rng is not None:
            pose, hands, box, depth = augment_cues(rng, d.pose2d[i], d.hands2d[i], bbox, cue, self.aug)
        else:
            pose, hands, box, depth = d.pose2d[i], d.hands2d[i], bbox if use_roi else None, cue if use_depth else None
        try:
            return build_features(pose, hands, box, depth)
        except FeatureError:
            return None

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None, use_roi: bool = False, use_depth: bool = False):
        feats, keep = [], []
        for i in idx:
            f = self.cues(int(i), rng, use_roi, use_depth)
            if f is not None:
                feats.append(f)
                keep.append(int(i))
        keep = np.asarray(keep, np.int64)
        if not feats:  # no sample has a person (evaluation scores them as misses)
            return keep, None
        labels = []
        for i in keep:
            lab = self.label_feats[self.d.labels[i]]
            if self.aug is not None and rng is not None and rng.random() < self.aug.label_dropout:
                lab = self.zero_label
            labels.append(lab)
        return keep, {
            "pose": np.stack([f.pose for f in feats]),
            "hands": np.stack([f.hands for f in feats]),
            "label": np.stack(labels).astype(np.float32),
            "obj": np.stack([f.obj for f in feats]),
            "depth": np.stack([f.depth for f in feats]),
        }


class RenderBank:
    """Render inputs [V,4,S,S] and silhouettes at mask size [V,R,R] for the human and each object id."""

    def __init__(self, provider, render_size: int, mask_size: int):
        self.provider = provider
        self.render_size = render_size
        self.mask_size = mask_size
        self._cache: dict[str, tuple] = {}

    def _make(self, assets, vertices):
        x = render_input(assets, self.render_size, vertices)
        sil = render_input(assets, self.mask_size, vertices)[:, 3] > 0.0
        return x, sil.astype(np.float32), np.asarray(assets.cam_params, np.float32)

    def human_vertices(self):
        body = getattr(self.provider, "body", None)
        return None if body is None else np.asarray(body.template_vertices, np.float32)

    def human(self):
        if "__human__" not in self._cache:
            self._cache["__human__"] = self._make(self.provider.human(), self.human_vertices())
        return self._cache["__human__"]

    def object(self, object_id: str, category: str):
        if object_id not in self._cache:
            # objects: the assets' own renders (xyz colours, spec 3.6) — what object_assets() gives at inference
            self._cache[object_id] = self._make(self.provider.object(object_id, category), None)
        return self._cache[object_id]


class GeometryBank:
    """Per object id: the object vertex head's geometry input [N,6] (``model.object_geometry`` of the dataset's
    normalised object mesh, the same function the predictor applies to the pipeline's object mesh)."""

    def __init__(self, provider):
        self.provider = provider
        self._cache: dict[str, object] = {}

    def geometry(self, object_id: str, category: str):
        import torch

        from ..models.default.model import object_geometry

        if object_id not in self._cache:
            m = self.provider.object_mesh(object_id, category)
            self._cache[object_id] = torch.from_numpy(object_geometry(m.template_vertices, m.faces))
        return self._cache[object_id]


def object_vertex_logits(net, geo: GeometryBank, data: SplitData, keep: np.ndarray, t: dict) -> list:
    """Object vertex head on a batch (torch inputs ``t``): per kept sample, logits [N_i] on its object mesh.
    The keys are computed once per distinct object of the batch."""
    q = net.object_vertex_query(t["pose"], t["hands"], t["label"], t["obj"], t["depth"])
    out: list = [None] * len(keep)
    oids = [data.object_ids[i] for i in keep]
    for oid in sorted(set(oids)):
        rows = [j for j, o in enumerate(oids) if o == oid]
        keys = net.object_vertex_keys(geo.geometry(oid, data.categories[keep[rows[0]]]))
        logits = net.object_vertex_decoder.logits(q[rows], keys)
        for r, j in enumerate(rows):
            out[j] = logits[r]
    return out


def object_vertex_batch_loss(logits: list, data: SplitData, keep: np.ndarray):
    """Mean over the batch of ``losses.vertex_loss`` per sample on its object mesh -> (loss, parts)."""
    import torch

    from .losses import vertex_loss

    losses, parts = [], {"bce": 0.0, "dice": 0.0}
    for lg, i in zip(logits, keep):
        target = torch.as_tensor(np.asarray(data.object_contact[i], np.float32))[None]
        lv, pv = vertex_loss(lg[None], target)
        losses.append(lv)
        parts = {k: parts[k] + pv[k] / len(keep) for k in parts}
    return torch.stack(losses).mean(), parts


def build_label_space(categories: list[str], cfg: dict, text_encoder=None) -> LabelSpace:
    from ..perception.text import TextEncoder

    enc = text_encoder or TextEncoder()
    cats = sorted(set(categories))
    return LabelSpace(cats, enc.encode(cats), cfg["label"]["temperature"], cfg["label"]["known_threshold"])


def project_labels(space: LabelSpace, labels: list[str], text_encoder=None) -> dict[str, np.ndarray]:
    from ..perception.text import TextEncoder

    enc = text_encoder or TextEncoder()
    uniq = sorted(set(labels))
    embs = enc.encode(uniq)
    return {lab: space.project(e).feature for lab, e in zip(uniq, embs)}


def _lr(step: int, cfg: dict) -> float:
    warm = max(1, int(cfg["warmup"]))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    t = (step - warm) / max(1, cfg["steps"] - warm)
    return cfg["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def forward_batch(net, bank: RenderBank, data: SplitData, keep: np.ndarray, inputs: dict, device="cpu"):
    """-> (human_logits, object_logits, human targets, object targets, human valid, object valid,
    human vertex logits [B,N] or None (a net without the vertex head)) tensors."""
    import torch

    t = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
    hx, hsil, hcam = bank.human()
    hseg, oseg = net.seg_embeddings(t["pose"], t["hands"], t["label"], t["obj"], t["depth"])
    v_logits = (net.vertex_logits(t["pose"], t["hands"], t["label"], t["obj"], t["depth"], hseg)
                if getattr(net, "has_vertex_head", False) else None)
    h_emb = net.encode_renders(torch.from_numpy(hx).to(device), "human")
    h_logits = net.decode(hseg, h_emb, torch.from_numpy(hcam).to(device), "human")
    oids = [data.object_ids[i] for i in keep]
    uniq = sorted(set(oids))
    ox, osil, ocams = [], [], []
    for u in uniq:
        j = oids.index(u)
        x, s, c = bank.object(u, data.categories[keep[j]])
        ox.append(x)
        osil.append(s)
        ocams.append(c)
    o_emb = net.encode_renders(torch.from_numpy(np.concatenate(ox)).to(device), "object")
    v = hx.shape[0]
    o_emb = o_emb.reshape(len(uniq), v, *o_emb.shape[1:])
    pos = torch.as_tensor([uniq.index(o) for o in oids], device=device)
    # the camera code is the same for every object (one object view set)
    o_logits = net.decode(oseg, o_emb[pos], torch.from_numpy(ocams[0]).to(device), "object")
    h_t = torch.from_numpy(data.human_masks[keep].astype(np.float32)).to(device)
    o_t = torch.from_numpy(data.object_masks[keep].astype(np.float32)).to(device)
    h_valid = torch.from_numpy(hsil).to(device).unsqueeze(0).expand_as(h_t)
    o_valid = torch.from_numpy(np.stack(osil)).to(device)[pos]
    return h_logits, o_logits, h_t, o_t, h_valid, o_valid, v_logits


def mask_scores(logits, target, valid) -> dict:
    """Pixel-level F1 / IoU of (logit > 0) inside the silhouette, pooled over the batch."""
    p = (logits > 0).float() * valid
    t = target * valid
    tp = float((p * t).sum())
    fp = float((p * (1 - t)).sum())
    fn = float(((1 - p) * t).sum())
    return {"f1": 2 * tp / max(2 * tp + fp + fn, 1e-9), "iou": tp / max(tp + fp + fn, 1e-9)}


def evaluate_masks(net, bank, data: SplitData, batcher: Batcher, batch_size: int = 64,
                   geo: GeometryBank | None = None) -> dict:
    import torch

    from ..evaluation.metrics import prf

    out = {"human": {"tp": 0.0, "fp": 0.0, "fn": 0.0}, "object": {"tp": 0.0, "fp": 0.0, "fn": 0.0}}
    vertex_f1, object_vertex_f1 = [], []
    net.eval()
    with torch.no_grad():
        for s in range(0, len(data), batch_size):
            keep, inputs = batcher.batch(np.arange(s, min(len(data), s + batch_size)), None)
            if len(keep) == 0:  # no sample of this batch has a person
                continue
            hl, ol, ht, ot, hv, ov, vl = forward_batch(net, bank, data, keep, inputs)
            if vl is not None:  # the vertex head alone, per-sample F1 at 0.5 (as `interactvlm eval` scores it)
                p = torch.sigmoid(vl).numpy()
                vertex_f1 += [prf(p[j], data.human_contact[i])[2] for j, i in enumerate(keep)]
            if geo is not None and getattr(net, "has_object_vertex_head", False):
                t = {k: torch.from_numpy(v) for k, v in inputs.items()}
                lg = object_vertex_logits(net, geo, data, keep, t)
                object_vertex_f1 += [prf(torch.sigmoid(lg[j]).numpy(), data.object_contact[i])[2]
                                     for j, i in enumerate(keep)]
            for side, (lg, tg, va) in (("human", (hl, ht, hv)), ("object", (ol, ot, ov))):
                p = (lg > 0).float() * va
                t = tg * va
                out[side]["tp"] += float((p * t).sum())
                out[side]["fp"] += float((p * (1 - t)).sum())
                out[side]["fn"] += float(((1 - p) * t).sum())
    net.train()
    res = {}
    for side, c in out.items():
        res[f"{side}_mask_f1"] = 2 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1e-9)
        res[f"{side}_mask_iou"] = c["tp"] / max(c["tp"] + c["fp"] + c["fn"], 1e-9)
    if vertex_f1:
        res["human_vertex_f1"] = float(np.mean(vertex_f1))
    if object_vertex_f1:
        res["object_vertex_f1"] = float(np.mean(object_vertex_f1))
    return res


def save_model(path: Path, net, cfg: dict, space: LabelSpace, step: int, data_info: dict, metrics: dict | None = None,
               human_template: np.ndarray | None = None, body=None):
    """Shippable checkpoint: float16 weights + everything the predictor needs (no optimiser)."""
    import torch

    ckpt = {
        "version": 1,
        "model_config": net.config,
        "state_dict": {k: v.detach().to(torch.float16) for k, v in net.state_dict().items()},
        "label_space": {**space.to_dict(), "embeddings": space.embeddings.astype(np.float32)},
        "asset_size": int(cfg["asset_size"]),
        "trained_steps": int(step),
        "data": data_info,
        "metrics": metrics or {},
        "train_config": cfg,
        "human_template": None if human_template is None else np.asarray(human_template, np.float32),
        "vertex_merge": str(cfg.get("vertex_merge", "max")),
        "object_vertex_merge": str(cfg.get("object_vertex_merge", "max")),
    }
    if body is not None:
        ckpt.update(human_template_faces=np.asarray(body.faces, np.int32), human_template_source=body.source,
                    human_part_ids=None if body.part_ids is None else np.asarray(body.part_ids, np.int16),
                    human_part_names=body.part_names)
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, str(tmp))
    tmp.replace(path)


def init_weights(net, path: str | Path) -> list[str]:
    """Start ``net`` from a checkpoint's weights where names and shapes match (``init_from``); logs and returns
    the top-level modules left (partly) at their initialisation. A missing/unreadable file or one with no matching weight is an error."""
    import torch

    p = Path(path)
    _check_init_from(p)
    try:
        st = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(f"init_from: cannot read {p}: {exc}") from exc
    src = (st.get("model") or st.get("state_dict")) if isinstance(st, dict) else None
    if not isinstance(src, dict) or not all(torch.is_tensor(v) for v in src.values()):
        raise ConfigError(f"init_from: {p} is not a default-model checkpoint (no 'model' or 'state_dict' of tensors); "
                          "give a run's last.pt or a packaged model.pt")
    own = net.state_dict()
    use = {k: v.float() for k, v in src.items() if k in own and own[k].shape == v.shape}
    if not use:
        raise ConfigError(f"init_from: {p} has no weight matching this model (not a default-model checkpoint?)")
    # a new (or resized) vertex head/branch may differ; the shared network of another size would start almost all
    # from its random init (a dim 16 model kept 20 of 202 tensors of a dim 64 checkpoint, logged as info only)
    other = [k for k, v in src.items() if k in own and own[k].shape != v.shape
             and not k.startswith(HEADS + VERTEX_PATH + OBJECT_VERTEX_PATH)]
    if other:
        k = other[0]
        theirs = st.get("model_config") or (st.get("config") or {}).get("model") or "not recorded"
        raise ConfigError(f"init_from: {p} is another architecture ({len(other)} tensors of another shape, e.g. {k} "
                          f"{tuple(src[k].shape)} vs {tuple(own[k].shape)}; its model config: {theirs}); set model.dim/"
                          "heads/render_size/up_channels as it was trained, or train without init_from")
    net.load_state_dict(use, strict=False)
    fresh = sorted({k.split(".")[0] for k in own if k not in use})
    log.info("initialised %d/%d tensors from %s; at their initialisation: %s", len(use), len(own), p, fresh or "none")
    return fresh


def _check_init_from(p: Path, must_exist: bool = True) -> None:
    if p.is_dir():
        raise ConfigError(f"init_from: {p} is a folder; give the file: its last.pt (a run) or model.pt (a packaged model)")
    if must_exist and not p.is_file():
        raise ConfigError(f"init_from: {p} not found (give a run's last.pt or a packaged model.pt)")


def _refresh(root, cfg, space, label_feats, aug, text_encoder, train_data, val_data, batcher, val_batcher):
    """Re-read the splits (a dataset still being generated); new labels are projected and added."""
    try:
        new_train = load_split(root, cfg["train_split"], cfg["train_limit"], cache=False)
        new_val = load_split(root, cfg["val_split"], cfg["val_limit"], cache=False) if cfg["val_split"] else None
        if cfg["remask"]:
            from .assets_provider import AssetProvider

            mp = AssetProvider(root, read_meta(root), int(train_data.human_masks.shape[-1]), cfg["body"])
            remask(new_train, mp)
            if new_val is not None:
                remask(new_val, mp)
    except Exception as exc:  # noqa: BLE001 - keep training on what we have
        log.warning("refresh failed (%s); continuing with %d samples", exc, len(train_data))
        return train_data, val_data, batcher, val_batcher
    new_labels = [lab for lab in set(new_train.labels + (new_val.labels if new_val else [])) if lab not in label_feats]
    if new_labels:
        label_feats.update(project_labels(space, new_labels, text_encoder))
    log.info("refreshed data: %d -> %d training samples", len(train_data), len(new_train))
    return (new_train, new_val, Batcher(new_train, label_feats, aug),
            Batcher(new_val, label_feats, None) if new_val is not None else None)


def _kept(last: Path) -> str:
    return f"{last} keeps the last checkpoint" if last.is_file() else "no checkpoint was written"


def _plain(x):
    """A config as plain JSON types (how it is compared across runs)."""
    return json.loads(json.dumps(x, default=str))


def _dataset_id(meta: dict) -> dict:
    return _plain({"generator": meta.get("generator_version", meta.get("version")), "seed": meta.get("seed"),
                   "n": meta.get("n")})


def _resume_state(last: Path, cfg: dict, meta: dict) -> dict:
    """``last.pt`` read for --resume, refused (ConfigError) when it was written with another config or dataset where
    that changes the weights (a checkpoint from before the config was recorded: a logged fallback)."""
    import torch

    try:
        st = torch.load(str(last), map_location="cpu", weights_only=False)
        if not isinstance(st, dict) or not {"model", "optimizer", "step"} <= set(st):
            raise ValueError("not a training checkpoint (model, optimizer, step)")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError/KeyError/UnpicklingError
        why = " ".join(str(exc).split())
        raise ConfigError(f"--resume: cannot continue from {last} ({why[:300]}): it is damaged or not a run's last.pt; "
                          "train into another --out (or without --resume)") from None
    then = st.get("config")
    if then is None:
        log.warning("--resume: %s records no config (written before configs were recorded): not checked against this "
                    "config", last)
        return st
    now = _plain(cfg)
    diff = [(k, then.get(k), now.get(k)) for k in sorted(set(now) | set(then))
            if k not in RESUME_FREE and k != "model" and now.get(k) != then.get(k)]
    # model: compared where this config sets it (mask_size/vertices are filled in from the dataset once it is loaded)
    m_then, m_now = then.get("model") or {}, now.get("model") or {}
    diff += [(f"model.{k}", m_then.get(k), m_now.get(k)) for k in sorted(set(m_now) | set(m_then))
             if m_now.get(k) != m_then.get(k) and not (k in ("mask_size", "vertices") and m_now.get(k) in (None, 0))]
    ds_then, ds_now = st.get("dataset"), _dataset_id(meta)
    if ds_then is not None and now.get("refresh_every"):  # a dataset still being generated: its n grows meanwhile
        ds_then, ds_now = ({k: v for k, v in d.items() if k != "n"} for d in (ds_then, ds_now))
    if ds_then is not None and ds_then != ds_now:
        diff.append(("dataset", ds_then, ds_now))
    if diff:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff[:6])
        raise ConfigError(f"--resume: {last} was written with another config ({shown}); resume with the config of the "
                          "run that wrote it, or train into another --out (or without --resume)")
    if then.get("steps") != now.get("steps"):
        log.warning("--resume: steps %s -> %s: the learning-rate schedule of the steps after %d follows the new count "
                    "(the weights differ from an uninterrupted %s-step run)", then.get("steps"), now.get("steps"),
                    int(st["step"]), now.get("steps"))
    return st


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of ``log.jsonl`` up to ``step`` (and drop a line cut off by a kill)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            keep.append(line + "\n")
    path.write_text("".join(keep))


def train(cfg: dict, resume: bool = False, text_encoder=None, provider=None, stop_at: int | None = None) -> dict | None:
    """Run training; returns the final metrics dict. ``provider``: an AssetProvider (tests inject one).
    ``stop_at``: leave after that many steps with only ``last.pt`` written (an interrupted run; returns None).
    Runs on ``cfg["threads"]`` torch threads and gives the caller its own thread count back."""
    import torch

    prev = torch.get_num_threads()
    try:
        return _train(cfg, resume, text_encoder, provider, stop_at)
    finally:
        torch.set_num_threads(prev)


def _train(cfg: dict, resume: bool, text_encoder, provider, stop_at: int | None) -> dict | None:
    import torch
    import yaml

    from ..models.default.model import DefaultContactNet, count_parameters
    from .assets_provider import AssetProvider
    from .losses import lifted_loss, mask_loss, vertex_loss

    check_config(cfg)  # before any data is read
    only = cfg.get("train_only")
    torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg["data"])
    meta = read_meta(root)
    last = out / "last.pt"
    st = _resume_state(last, cfg, meta) if resume and last.is_file() else None  # before the data is loaded
    if resume and st is None:
        log.warning("--resume: %s not found; training from step 0", last)
    if st is None and cfg.get("init_from"):  # before any data is read; a resumed run does not read it
        _check_init_from(Path(cfg["init_from"]))
    train_data = load_split(root, cfg["train_split"], cfg["train_limit"])
    val_data = load_split(root, cfg["val_split"], cfg["val_limit"]) if cfg["val_split"] else None
    mask_size = int(train_data.human_masks.shape[-1])
    mcfg = dict(cfg["model"])
    if mcfg.get("mask_size") in (None, mask_size):
        mcfg["mask_size"] = mask_size
    else:
        raise ValueError(f"model.mask_size={mcfg['mask_size']} but the dataset masks are {mask_size}²")
    if mcfg.get("vertex_head"):  # the head predicts on the dataset's vertices (the body template)
        mcfg["vertices"] = int(train_data.human_contact.shape[1])
    cfg = {**cfg, "model": mcfg}
    torch.manual_seed(int(cfg["seed"]))
    net = DefaultContactNet(**mcfg)
    log.info("model: %d parameters", count_parameters(net))
    space = build_label_space(train_data.categories, cfg, text_encoder)
    label_feats = project_labels(space, train_data.labels + (val_data.labels if val_data else []), text_encoder)
    aug = AugmentConfig.from_dict(cfg["augment"])
    batcher = Batcher(train_data, label_feats, aug)
    val_batcher = Batcher(val_data, label_feats, None) if val_data else None
    provider = provider or AssetProvider(root, meta, cfg["asset_size"], cfg["body"])
    if cfg["remask"]:
        mask_provider = AssetProvider(root, meta, mask_size, cfg["body"])
        remask(train_data, mask_provider)
        if val_data is not None:
            remask(val_data, mask_provider)
        log.info("GT view masks recomputed on the %s template views (%d²)", mask_provider.body.source, mask_size)
    bank = RenderBank(provider, mcfg["render_size"], mask_size)
    from .lifting import TrainLifter  # the deployed soft lifting, differentiable with a fast backward

    lifter = TrainLifter(provider.human(), mask_size) if float(cfg["loss"].get("lifted", 0.0)) > 0 else None
    o_lifters: dict[str, TrainLifter] = {}

    def object_lifted(ol, keep):
        """Mean lifted loss over the batch's objects (each sample has its own mesh and vertex count)."""
        losses, parts = [], {"bce": 0.0, "dice": 0.0}
        for j, i in enumerate(keep):
            oid = train_data.object_ids[i]
            if oid not in o_lifters:
                o_lifters[oid] = TrainLifter(provider.object(oid, train_data.categories[i]), mask_size)
            lf = o_lifters[oid]
            target = torch.as_tensor(np.asarray(train_data.object_contact[i], np.float32))[None]
            lv, pv = lifted_loss(lf(ol[j:j + 1]), target, lf.seen)
            losses.append(lv)
            parts = {k: parts[k] + pv[k] / len(keep) for k in parts}
        return torch.stack(losses).mean(), parts
    geo = GeometryBank(provider) if net.has_object_vertex_head else None
    if only:
        for n, p in net.named_parameters():  # the rest is frozen (and not run: see the loop)
            p.requires_grad_(n.startswith(TRAIN_ONLY[only]))
    head = [p for n, p in net.named_parameters() if n.startswith(HEADS) and p.requires_grad]
    rest = [p for n, p in net.named_parameters() if not n.startswith(HEADS) and p.requires_grad]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if head:
        groups.append({"params": head, "lr_scale": float(cfg["vertex_lr_scale"])})
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step = 0
    if st is not None:
        try:  # another model/train_only config (or a damaged file) cannot continue this run: one line, not a traceback
            net.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            step = int(st["step"])
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError/KeyError/UnpicklingError
            why = " ".join(str(exc).split())
            raise ConfigError(f"--resume: cannot continue from {last} ({why[:300]}): it was written with another "
                              "model/train_only config or is damaged; resume with the config of the run that wrote it, "
                              "or train into another --out (or without --resume)") from None
        log.info("resumed from %s at step %d", last, step)
    else:
        fresh = init_weights(net, cfg["init_from"]) if cfg.get("init_from") else None
        if net.has_vertex_branch and fresh is not None and "vertex_transformer" in fresh:
            net.init_vertex_branch_from_main()  # a new branch starts from the encoder the checkpoint's head read
            log.info("vertex branch: started as a copy of the main encoder")
        if net.has_object_vertex_head and fresh is not None and "object_vertex_transformer" in fresh:
            net.init_object_vertex_branch_from_main()  # its [OSEG] is what drives the trained object masks
            log.info("object vertex branch: started as a copy of the main encoder")
        if net.has_vertex_head and (fresh is None or "human_vertex_decoder" in fresh):
            ev = net.human_vertex_decoder.init_from_contacts(torch.as_tensor(train_data.human_contact))
            log.info("vertex head: keys from the top %d principal components of the training contact (%.0f %% of "
                     "its variance)", net.config["vertex_head"], 100 * ev)
        # an earlier run's last.pt must not be what a --resume of this run continues (nor its model.pt/metrics.json sit
        # beside this run's config.yaml and log.jsonl until this run ends)
        remove_stale(out, ["last.pt", "model.pt", "metrics.json", "frame.onnx"], [])
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False))
    data_info = {"path": str(root), "generator": meta.get("generator_version", meta.get("version")),
                 "seed": meta.get("seed"), "n": meta.get("n"), "train_split": cfg["train_split"],
                 "train_samples": len(train_data), "categories": space.categories}
    if step:  # resumed: rows of the steps after last.pt (a run stopped between checkpoints) are run and logged again
        _truncate_log(out / "log.jsonl", step)
    logf = open(out / "log.jsonl", "a" if step else "w")  # a fresh run does not continue an earlier run's log
    lc = cfg["loss"]
    net.train()
    t_start = time.perf_counter()
    samples_seen = 0
    metrics: dict = {}
    try:
        while step < cfg["steps"]:
            if cfg["refresh_every"] and step % int(cfg["refresh_every"]) == 0 and step > 0:
                train_data, val_data, batcher, val_batcher = _refresh(root, cfg, space, label_feats, aug, text_encoder,
                                                                       train_data, val_data, batcher, val_batcher)
                data_info["train_samples"] = len(train_data)
            rng = np.random.default_rng([int(cfg["seed"]), step])
            idx = rng.integers(0, len(train_data), int(cfg["batch_size"]))
            keep, inputs = batcher.batch(idx, rng)
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg) * g.get("lr_scale", 1.0)
            t = {k: torch.from_numpy(v) for k, v in inputs.items()}
            if only == "vertex":  # the frozen rest is not run: the branch reads the cues directly
                vl = net.vertex_logits(t["pose"], t["hands"], t["label"], t["obj"], t["depth"], None)
                ph, po, loss = {}, {}, torch.zeros(())
            elif only == "object_vertex":
                vl, ph, po, loss = None, {}, {}, torch.zeros(())
            else:
                hl, ol, ht, ot, hv, ov, vl = forward_batch(net, bank, train_data, keep, inputs)
                lh, ph = mask_loss(hl, ht, hv, lc["focal"], lc["dice"], lc["alpha"], lc["gamma"])
                lo, po = mask_loss(ol, ot, ov, lc["focal"], lc["dice"], lc["alpha"], lc["gamma"])
                loss = lh + lc["object_weight"] * lo
            if lifter is not None:
                target = torch.as_tensor(train_data.human_contact[keep], dtype=torch.float32)
                lv, pv = lifted_loss(lifter(hl), target, lifter.seen)
                loss = loss + float(lc["lifted"]) * lv
                ph.update({"lifted_bce": pv["bce"], "lifted_dice": pv["dice"]})
            if float(lc.get("lifted_object", 0.0)) > 0:
                lv, pv = object_lifted(ol, keep)
                loss = loss + float(lc["lifted_object"]) * lv
                po.update({"lifted_bce": pv["bce"], "lifted_dice": pv["dice"]})
            if float(lc.get("vertex", 0.0)) > 0:
                if vl is None:
                    raise ValueError("loss.vertex > 0 needs model.vertex_head > 0")
                target = torch.as_tensor(train_data.human_contact[keep], dtype=torch.float32)
                lv, pv = vertex_loss(vl, target)
                loss = loss + float(lc["vertex"]) * lv
                ph.update({"vertex_bce": pv["bce"], "vertex_dice": pv["dice"]})
            if float(lc.get("object_vertex", 0.0)) > 0:
                lv, pv = object_vertex_batch_loss(object_vertex_logits(net, geo, train_data, keep, t), train_data, keep)
                loss = loss + float(lc["object_vertex"]) * lv
                po.update({"vertex_bce": pv["bce"], "vertex_dice": pv["dice"]})
            if not torch.isfinite(loss):
                raise DivergedError(f"step {step + 1}: the loss is {loss.item()}; stopped before applying it "
                                    f"({_kept(last)}); lower lr ({cfg['lr']}) or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], cfg["grad_clip"])
            if not torch.isfinite(norm):
                raise DivergedError(f"step {step + 1}: the gradient norm is {norm.item()}; stopped before applying it "
                                    f"({_kept(last)}); lower lr ({cfg['lr']}) or check the data")
            opt.step()
            step += 1
            samples_seen += len(keep)
            if step % cfg["log_every"] == 0 or step == 1:
                masks = {} if only else {  # no mask loss is computed when only a vertex path trains
                    "human": lh.item(), "object": lo.item(), "human_focal": ph["focal"], "human_dice": ph["dice"],
                    "object_focal": po["focal"], "object_dice": po["dice"]}
                rec = {"step": step, "loss": loss.item(), **masks, "lr": _lr(step - 1, cfg),
                       **{f"human_{k}": v for k, v in ph.items() if k.startswith(("lifted", "vertex"))},
                       **{f"object_{k}": v for k, v in po.items() if k.startswith(("lifted", "vertex"))},
                       "samples_per_s": samples_seen / max(time.perf_counter() - t_start, 1e-9)}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                if only:
                    side = "human" if only == "vertex" else "object"
                    log.info("step %d loss %.4f (%s vertex head: bce %.4f dice %.4f) %.1f samples/s", step, rec["loss"],
                             side, rec[f"{side}_vertex_bce"], rec[f"{side}_vertex_dice"], rec["samples_per_s"])
                else:
                    log.info("step %d loss %.4f (human %.4f object %.4f) %.1f samples/s", step, rec["loss"], rec["human"],
                             rec["object"], rec["samples_per_s"])
            if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"] or step == stop_at:
                bad = [n for n, p in net.named_parameters() if not torch.isfinite(p).all()]
                if bad:
                    raise DivergedError(f"step {step}: non-finite weights ({', '.join(bad[:3])}); not saved "
                                        f"({_kept(last)}); lower lr ({cfg['lr']}) or check the data")
                torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                            "config": _plain(cfg), "dataset": _dataset_id(meta)}, str(last) + ".tmp")
                Path(str(last) + ".tmp").replace(last)
            if val_data is not None and cfg["eval_every"] and step % cfg["eval_every"] == 0 and step < cfg["steps"]:
                m = evaluate_masks(net, bank, val_data, val_batcher, geo=geo)
                logf.write(json.dumps({"step": step, "val": m}) + "\n")
                logf.flush()
                log.info("step %d val %s", step, m)
            if stop_at is not None and step >= stop_at:
                log.info("stopping at step %d (stop_at); resume with --resume", step)
                return None
    finally:
        logf.close()
    train_s = time.perf_counter() - t_start
    if val_data is not None:
        metrics = {"val_split": cfg["val_split"], "val_samples": len(val_data), **evaluate_masks(net, bank, val_data, val_batcher, geo=geo)}
    metrics.update({"steps": step, "train_seconds_this_run": train_s,
                    "train_samples_per_s": samples_seen / max(train_s, 1e-9), "parameters": count_parameters(net)})
    net.eval()
    if not cfg["export_onnx"]:  # an earlier run's graph must not sit beside these weights (onnxruntime would run it)
        remove_stale(out, ["frame.onnx"], [])
    save_model(out / "model.pt", net, cfg, space, step, data_info, metrics, bank.human_vertices(),
               getattr(provider, "body", None) if bank.human_vertices() is not None else None)
    if cfg["export_onnx"]:
        from ..models.default.export import export_onnx

        from ..models.default.predictor import load_checkpoint

        shipped, _ = load_checkpoint(out / "model.pt")  # the float16-rounded weights the torch path loads
        export_onnx(shipped, out / "frame.onnx", human_views=bank.human()[0].shape[0])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
