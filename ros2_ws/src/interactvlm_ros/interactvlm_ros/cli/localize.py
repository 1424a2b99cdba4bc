"""``interactvlm localize``: run an official-format MV-Loc checkpoint on one image.

    interactvlm localize photo.jpg --object bottle --model trained_models/interactvlm-3d-hcontact-damon \\
        --assets data/hcontact_vitruvian --out out/

Defaults reproduce ``run_demo.py`` (demo prompt, greedy generation, fp32 here). ``--clip`` defaults to
``<model>/../openai/clip-vit-large-patch14`` when that folder exists (the official code resolves
``config.vision_tower`` relative to its working directory). Writes ``masks.npz`` (``logits`` float32
[V,H,W], ``input_ids``, ``output_ids``, ``seg_hidden``, ``low_res_masks``), ``contact.npz`` (``contact``
float32 per-vertex), ``overlay_<view>.png``, ``overlay_grid.png`` and ``summary.json``. Files of this set an
earlier run left in ``--out`` that this run does not write are removed (a run that generates no ``[SEG]`` writes
``masks.npz`` without logits only). An ``--out`` that cannot be written is an error before the model loads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

TASKS = ("hcontact", "ocontact", "oafford")
OUTPUTS = ("masks.npz", "contact.npz", "overlay_grid.png", "summary.json")  # + overlay_<view>.png


def add_arguments(p) -> None:
    p.add_argument("image", help="RGB photo (any format PIL reads)")
    p.add_argument("--object", required=True, help="object label, e.g. bottle (lower-cased into the prompt)")
    p.add_argument("--model", required=True, help="official InteractVLM HF folder")
    p.add_argument("--clip", default=None, help="CLIP ViT-L/14 folder (default <model>/../openai/clip-vit-large-patch14)")
    p.add_argument("--assets", default=None,
                   help="official-format view assets: hcontact -> data/hcontact_vitruvian (maps + body_render_norm_*), "
                        "ocontact -> sam_inp_objs (lift2d_dict.pkl + obj_render_color_*). "
                        "Default for hcontact: <model>/../data/hcontact_vitruvian")
    p.add_argument("--task", choices=TASKS, default=None, help="default: from config.json (hC/oC loss weights)")
    p.add_argument("--mode", choices=("generate", "forward"), default="generate")
    p.add_argument("--question", default=None, help="user question ({class_name} is filled); default: the demo's")
    p.add_argument("--answer", default=None, help="teacher-forced answer for --mode forward (must contain [SEG])")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--out", required=True, help="output folder")


def _overlay(render: np.ndarray, logits: np.ndarray, thr: float) -> np.ndarray:
    """Demo overlay: 50/50 blend with (255,38,25) where logit > thr and the render is not white."""
    out = render.astype(np.float32).copy()
    sel = (logits > thr) & (render.astype(np.int32).sum(-1) < 765)
    out[sel] = 0.5 * out[sel] + 0.5 * np.array([255, 38, 25], np.float32)
    return out.clip(0, 255).astype(np.uint8)


def run(args) -> int:
    from PIL import Image

    from . import prepare_out
    from ..assets import AssetError, load_lift2d_dict, load_official_human_assets
    from ..lift import Lifter
    from ..models.base import LocalizerError
    from ..models.mvloc.checkpoint import CheckpointError, read_official_config
    from ..models.mvloc.predictor import MVLocPredictor
    from ..models.mvloc.prompts import normalize_label
    from ..paths import remove_stale

    log = logging.getLogger("interactvlm.localize")
    model_dir = Path(args.model)
    out = Path(args.out)
    why = prepare_out(out)
    if why:
        print(f"interactvlm localize: error: cannot write --out {out} ({why}); give a folder that can be created and "
              f"written")
        return 2
    try:
        img_path = Path(args.image)
        if not img_path.is_file():
            raise LocalizerError(f"{img_path}: image not found")
        try:
            image = np.asarray(Image.open(img_path).convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            raise LocalizerError(f"{img_path}: not a readable image ({exc})") from exc
        raw = read_official_config(model_dir)
        task = args.task or ("hcontact" if float(raw.get("hC_loss_weight") or 0) > 0 else "ocontact")
        # the label and the assets' presence are checked before the model loads (minutes and ~26 GB for 13B)
        normalize_label(args.object)
        if task == "hcontact":
            folder = Path(args.assets) if args.assets else model_dir.parent / "data" / "hcontact_vitruvian"
        elif not args.assets:
            raise LocalizerError("--assets: object tasks need the demo's sam_inp_objs folder "
                                 "(lift2d_dict.pkl + obj_render_color_<view>.png)")
        else:
            folder = Path(args.assets)
        if not folder.exists():
            raise AssetError(f"{folder}: view-asset folder not found"
                             + ("" if args.assets else " (the default <model>/../data/hcontact_vitruvian, the "
                                "official data.zip layout)") + "; pass --assets DIR")
        loc = MVLocPredictor.from_pretrained(model_dir, args.clip, precision=args.precision, device=args.device,
                                             mode=args.mode, max_new_tokens=args.max_new_tokens)
        cfg = loc.cfg
        if task == "hcontact":
            assets = load_official_human_assets(folder, view_set=cfg.hC_sam_view_type)
        else:
            assets = load_lift2d_dict(folder, view_set=cfg.oC_sam_view_type)
        res = loc.run(image, args.object, task, assets, question=args.question, answer=args.answer)
    except (LocalizerError, CheckpointError, AssetError) as exc:
        print(f"interactvlm localize: error: {exc}")
        return 2
    print(f"text: {res['text']!r}")
    stale = list(OUTPUTS) + [p.name for p in out.glob("overlay_*.png")]
    if res["logits"] is None:
        print("no segmentation token was generated: no masks (the official demo would crash here)")
        np.savez(out / "masks.npz", input_ids=res["input_ids"], output_ids=res["output_ids"])
        remove_stale(out, stale, ["masks.npz"])  # an earlier run's contact/overlays must not look like this run's
        return 1
    logits = res["logits"]
    np.savez(out / "masks.npz", logits=logits, input_ids=res["input_ids"], output_ids=res["output_ids"],
             seg_hidden=res["seg_hidden"], seg_index=np.int64(res["seg_index"]), low_res_masks=res["low_res"],
             iou_predictions=res["iou"], cam_params=res["cam_params"])
    contact = Lifter(assets, mode="human" if task == "hcontact" else "object")(logits)
    np.savez(out / "contact.npz", contact=contact)
    thr = 0.3 if task == "hcontact" else 0.5
    renders = np.asarray(assets.renders)
    tiles = []
    written = ["masks.npz", "contact.npz", "summary.json"]
    for v, name in enumerate(assets.view_names):
        ov = _overlay(renders[v], logits[v], thr)
        Image.fromarray(ov).save(out / f"overlay_{name}.png")
        written.append(f"overlay_{name}.png")
        tiles.append(ov)
    if len(tiles) == 4:
        grid = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
        Image.fromarray(grid).save(out / "overlay_grid.png")
        written.append("overlay_grid.png")
    (out / "summary.json").write_text(json.dumps({
        "task": task, "mode": res["mode"], "text": res["text"], "seg_index": res["seg_index"],
        "timings_ms": res["timings"], "contact_vertices_gt_0.5": int((contact > 0.5).sum()),
        "num_vertices": int(contact.shape[0])}, indent=2))
    remove_stale(out, stale, written)
    log.info("wrote %s", out)
    print(f"wrote {out}/masks.npz, contact.npz, overlays ({int((contact > 0.5).sum())} vertices > 0.5)")
    return 0
