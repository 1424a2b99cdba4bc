"""Evaluate the default localizer on a synthetic split: per-vertex human / object contact metrics.

Predicted mask logits are lifted with the same ``lift.Lifter`` the pipeline uses (human: soft
aggregation, object: vote aggregation) on the assets the model sees at inference, then compared with
the dataset's GT per-vertex contact (DAMON-style, see ``metrics.py``). ``cues`` picks which inputs the
model gets: ``deploy`` = pose + hands + label only (what the pipeline has from mediapipe on a plain RGB
camera, the default), ``full`` = + object box + depth summary.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .metrics import GeodesicMesh, auc, prf, sim, summarize

log = logging.getLogger(__name__)

HUMAN_KEYS = ["f1", "precision", "recall", "geo_cm"]
OBJECT_KEYS = ["f1", "precision", "recall", "sim", "auc"]


def evaluate(data_dir: str | Path, split: str, model: str = "default", cues: str = "deploy", limit: int | None = None,
             batch_size: int = 32, out: str | Path | None = None, body: str = "anny", oracle: bool = True,
             remask_gt: bool = True) -> dict:
    """-> metrics dict (also written to ``out``/metrics_<split>.json when ``out`` is given; ``cues="full"``:
    metrics_<split>_full.json, beside the deploy figures)."""
    import torch

    from ..lift import Lifter, merge_direct_contact
    from ..models.default.predictor import DefaultLocalizer, DefaultModelError
    from ..training.assets_provider import AssetProvider
    from ..training.data import load_split, read_meta
    from ..training.train import Batcher, GeometryBank, RenderBank, forward_batch, object_vertex_logits, project_labels

    if cues not in ("deploy", "full"):
        raise ValueError(f"cues='{cues}': use 'deploy' (pose+hands+label) or 'full' (+ object box + depth)")
    t0 = time.perf_counter()
    loc = DefaultLocalizer(weights=None if model == "default" else model, backend="torch")
    root = Path(data_dir)
    meta = read_meta(root)
    data = load_split(root, split, limit)
    if remask_gt:  # oracle masks on the same views the model is used with
        from ..training.data import remask

        remask(data, AssetProvider(root, meta, loc.mask_size, body))
    label_feats = project_labels(loc.labels, data.labels, loc.text_encoder)
    known = {lab: loc.labels.project(loc.text_encoder.encode([lab])[0]).known for lab in set(data.labels)}
    batcher = Batcher(data, label_feats, None)
    provider = AssetProvider(root, meta, loc.asset_size, body)
    bank = RenderBank(provider, loc.render_size, loc.mask_size)
    net = loc.net
    human_assets = provider.human()
    if human_assets.num_vertices != data.human_contact.shape[1]:
        raise ValueError(f"dataset human_contact has {data.human_contact.shape[1]} vertices but the '{body}' "
                         f"template has {human_assets.num_vertices}: dataset and body model do not match")
    fill = bool(getattr(loc, "fill_unseen_vertices", False))  # lift as the pipeline does for this model
    h_lifter = Lifter(human_assets, mode="human",
                      fill_unseen_from=(provider.body.template_vertices, provider.body.faces) if fill else None)
    geo = GeodesicMesh(provider.body.template_vertices, provider.body.faces)
    o_lifters: dict[str, Lifter] = {}
    geo_bank = GeometryBank(provider) if getattr(net, "has_object_vertex_head", False) else None
    rows = []
    with torch.no_grad():
        for s in range(0, len(data), batch_size):
            keep, inputs = batcher.batch(np.arange(s, min(len(data), s + batch_size)), None,
                                         use_roi=(cues == "full"), use_depth=(cues == "full"))
            dropped = set(range(s, min(len(data), s + batch_size))) - set(keep.tolist())
            for i in dropped:  # no usable person in the cues: predict nothing (counts as a miss)
                rows.append(_row(data, i, np.zeros(data.human_contact.shape[1]), np.zeros_like(data.object_contact[i]),
                                 geo, known))
            if len(keep) == 0:  # no sample of this batch has a person: nothing to run
                continue
            hl, ol, *_, vl = forward_batch(net, bank, data, keep, inputs)
            hl, ol = hl.numpy(), ol.numpy()
            direct = None if vl is None else torch.sigmoid(vl).numpy()  # vertex head: merged as the pipeline does
            obj_direct = None  # object vertex head (v9+): per sample, on its object mesh; merged likewise
            if geo_bank is not None:
                t = {k: torch.from_numpy(v) for k, v in inputs.items()}
                obj_direct = [torch.sigmoid(lg).numpy() for lg in object_vertex_logits(net, geo_bank, data, keep, t)]
            for j, i in enumerate(keep):
                hc = np.asarray(h_lifter(hl[j]))
                if direct is not None:
                    hc = merge_direct_contact(hc, direct[j], loc.vertex_merge)
                oid = data.object_ids[i]
                if oid not in o_lifters:
                    om = provider.object_mesh(oid, data.categories[i])
                    o_lifters[oid] = Lifter(provider.object(oid, data.categories[i]), mode="object",
                                            fill_unseen_from=(om.template_vertices, om.faces) if fill else None)
                oc = np.asarray(o_lifters[oid](ol[j]))
                if obj_direct is not None:
                    oc = merge_direct_contact(oc, obj_direct[j], loc.object_vertex_merge)
                bad = [f"{name} {int((~np.isfinite(a)).sum())}/{a.size}" for name, a in (("human", hc), ("object", oc))
                       if not np.isfinite(a).all()]
                if bad:  # NaN >= 0.5 read as "no contact" (F1 0) and SIM/AUC became NaN in the table and the json
                    raise DefaultModelError(f"model '{model}' predicts NaN/inf contact for sample {data.indices[i]} "
                                            f"({', '.join(bad)} vertices): broken weights (a diverged training? "
                                            "evaluate an earlier checkpoint) or non-finite cues in that sample")
                row = _row(data, int(i), hc, oc, geo, known)
                if oracle:  # the same lifting applied to the GT view masks: the ceiling of any mask predictor
                    ho = np.asarray(h_lifter(np.where(data.human_masks[i] > 0, 20.0, -20.0).astype(np.float32)))
                    oo = np.asarray(o_lifters[oid](np.where(data.object_masks[i] > 0, 20.0, -20.0).astype(np.float32)))
                    orow = _row(data, int(i), ho, oo, geo, known)
                    row["oracle_human"], row["oracle_object"] = orow["human"], orow["object"]
                rows.append(row)
    res = _aggregate(rows)
    if oracle:
        res["oracle_lifted_gt_masks"] = {
            "human": summarize([r["oracle_human"] for r in rows if "oracle_human" in r], HUMAN_KEYS),
            "object": summarize([r["oracle_object"] for r in rows if "oracle_object" in r], OBJECT_KEYS)}
    res.update({"split": split, "data": str(root), "model": model, "cues": cues, "samples": len(rows),
                "fill_unseen_vertices": fill,
                "seconds": time.perf_counter() - t0})
    if out is not None:
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        # cues=full beside the deploy figures (it overwrote them): metrics_<split>_full.json
        (outp / f"metrics_{split}{'' if cues == 'deploy' else '_' + cues}.json").write_text(json.dumps(res, indent=2))
    return res


def _row(data, i: int, hc: np.ndarray, oc: np.ndarray, geo: GeodesicMesh, known: dict) -> dict:
    gh = data.human_contact[i]
    go = data.object_contact[i]
    hp, hr, hf = prf(hc, gh)
    if len(oc) != len(go):
        raise ValueError(f"sample {data.indices[i]}: object_contact has {len(go)} vertices but the object mesh "
                         f"'{data.object_ids[i]}' has {len(oc)}")
    op, orc, of = prf(oc, go)
    return {"index": int(data.indices[i]), "category": data.categories[i], "interaction": data.interactions[i],
            "label": data.labels[i], "label_known": bool(known.get(data.labels[i], False)),
            "human": {"f1": hf, "precision": hp, "recall": hr, "geo_cm": geo.error_cm(hc, gh)},
            "object": {"f1": of, "precision": op, "recall": orc, "sim": sim(oc, go), "auc": auc(oc, go)}}


def _aggregate(rows: list[dict]) -> dict:
    by_cat: dict[str, list] = defaultdict(list)
    by_int: dict[str, list] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
        by_int[r["interaction"]].append(r)

    def block(rs, ci=()):
        return {"human": summarize([r["human"] for r in rs], HUMAN_KEYS, ci),
                "object": summarize([r["object"] for r in rs], OBJECT_KEYS, ci)}

    return {"overall": block(rows, ("f1",)), "per_category": {k: block(v) for k, v in sorted(by_cat.items())},
            "per_interaction": {k: block(v) for k, v in sorted(by_int.items())},
            "label_known_rate": float(np.mean([r["label_known"] for r in rows])) if rows else None}


def format_table(res: dict) -> str:
    """Markdown table: one row per category + overall (its F1 with the 95 % bootstrap interval, when known)."""
    def f(x):
        return "–" if x is None else f"{x:.3f}"

    def f1(b):
        ci = b.get("f1_ci95")
        return f(b["f1"]) if not ci else f"{f(b['f1'])} [{ci[0]:.3f}, {ci[1]:.3f}]"

    lines = ["| category | n | human F1 | human P | human R | geo (cm) | object F1 | object SIM | object AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    items = list(res["per_category"].items()) + [("**overall**", res["overall"])]
    for name, b in items:
        h, o = b["human"], b["object"]
        geo = "–" if h["geo_cm"] is None else f"{h['geo_cm']:.1f}"
        lines.append(f"| {name} | {h['n']} | {f1(h)} | {f(h['precision'])} | {f(h['recall'])} | {geo} | "
                     f"{f1(o)} | {f(o['sim'])} | {f(o['auc'])} |")
    return "\n".join(lines)
