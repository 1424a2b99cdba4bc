"""``interactvlm estimate IMAGE --object LABEL [--object-mesh PATH] [--model default|DIR] --out DIR``.

One-shot contact estimation with ``pipeline.ContactEstimator`` (the object the ROS node uses). Writes:
``contacts.npz`` (per-vertex human/object contact, template + object vertices/faces, part id per vertex,
part names), ``contacts.json`` (status, per-part max/mean contact, label used and whether the model and
the object library know it, model, backend, timings), ``overlay.png`` (views with contact painted),
``human_contact.ply`` / ``object_contact.ply`` (meshes with vertex colours: grey → red with contact). Files of
this set an earlier run left in DIR that this run does not write are removed. A model, backend or device that
cannot be used, or an --out that cannot be written, is one error line and exit 2 (checked before the model loads);
so is an IMAGE that is missing, a folder, unreadable, or a truncated JPEG.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

GREY = np.array([200, 200, 200], np.float32)
RED = np.array([255, 38, 25], np.float32)
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")  # runtime.select.select_backend's names
#: every file this command writes (a re-run removes those it did not write this time)
OUTPUTS = ("contacts.npz", "contacts.json", "overlay.png", "human_contact.ply", "object_contact.ply")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="RGB image file (png/jpg)")
    parser.add_argument("--object", required=True, dest="object_label", help="object label, e.g. 'cup'")
    parser.add_argument("--object-mesh", default=None, help="mesh of the object (default: the library mesh of LABEL)")
    parser.add_argument("--model", default="default", help="'default' or a model folder")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help=" | ".join(BACKENDS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="output folder")


def _ply(path: Path, vertices, faces, contact) -> None:
    import trimesh

    c = np.clip(np.asarray(contact, np.float32), 0, 1)[:, None]
    rgb = (GREY * (1 - c) + RED * c).astype(np.uint8)
    colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
    mesh = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), vertex_colors=colors, process=False)
    mesh.export(str(path))


def run(args) -> int:
    import cv2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from . import ImageReadError, read_image_rgb

    try:
        image = read_image_rgb(args.image)
    except ImageReadError as exc:
        print(f"interactvlm estimate: {exc}", file=sys.stderr)
        return 2
    from . import prepare_out
    from ..paths import remove_stale
    from ..pipeline import ContactEstimator, PipelineError

    out = Path(args.out)
    why = prepare_out(out)
    if why:
        print(f"interactvlm estimate: cannot write --out {out} ({why}); give a folder that can be created and written",
              file=sys.stderr)
        return 2
    try:  # "default", an official checkpoint folder or a default-model folder (model.pt, a training run)
        est = ContactEstimator(model=args.model, backend=args.backend, device=args.device)
    except PipelineError as exc:
        print(f"interactvlm estimate: {exc}", file=sys.stderr)
        return 2
    res = est.estimate(image, args.object_label, object_mesh=args.object_mesh)
    written = ["contacts.npz", "overlay.png", "contacts.json"]
    model_label = {}
    lf = getattr(est.localizer, "label_feature", None)
    if callable(lf) and res.status != "bad_input":
        f = lf(args.object_label)
        model_label = {"known": bool(f.known), "nearest_category": f.nearest, "similarity": round(float(f.similarity), 4)}
        if getattr(f, "read_as", ""):  # the label's other form that the model read ('the cans' → 'can')
            model_label["read_as"] = f.read_as
    label_known = bool(res.label_known) and model_label.get("known", True)
    info = {
        "status": res.status,
        "message": res.message,
        "image": str(args.image),
        "object_label": res.object_label or args.object_label,
        "label_known": label_known,
        "library_label_known": bool(res.library_known),
        "model_label": model_label,
        "object_source": res.object_source,
        "model": res.model,
        "backend": res.backend,
        "cues": res.cues,
        # "frame", or "zoom" when Pose found the person only in a zoomed crop (perception.human); None without perception
        "person_source": getattr(getattr(res, "observation", None), "person_source", None),
        "timings_ms": {k: round(float(v), 3) for k, v in res.timings.items()},
        "human_parts": res.part_summary(),
        "contact_parts": res.contact_parts(0.5) if res.ok else [],
        "fallbacks": est.all_fallbacks(),
    }
    if res.object_contact is not None:
        info["object_contact"] = {"max": float(res.object_contact.max()), "mean": float(res.object_contact.mean()),
                                  "vertices_ge_0.5": int((res.object_contact >= 0.5).sum())}
    arrays = {k: v for k, v in {
        "human_contact": res.human_contact, "object_contact": res.object_contact,
        "human_vertices": res.human_vertices, "human_faces": res.human_faces,
        "object_vertices": res.object_vertices, "object_faces": res.object_faces,
        "part_ids": res.part_ids,
    }.items() if v is not None}
    arrays["part_names"] = np.asarray(res.part_names or [], dtype=str)
    arrays["status"] = np.asarray(res.status)
    np.savez_compressed(out / "contacts.npz", **arrays)
    cv2.imwrite(str(out / "overlay.png"), cv2.cvtColor(res.overlay(), cv2.COLOR_RGB2BGR))
    if res.human_contact is not None and res.human_vertices is not None:
        _ply(out / "human_contact.ply", res.human_vertices, res.human_faces, res.human_contact)
        written.append("human_contact.ply")
    if res.object_contact is not None and res.object_vertices is not None:
        _ply(out / "object_contact.ply", res.object_vertices, res.object_faces, res.object_contact)
        written.append("object_contact.ply")
    (out / "contacts.json").write_text(json.dumps(info, indent=2))
    remove_stale(out, OUTPUTS, written)
    top = list(info["human_parts"].items())[:3]
    print(f"status: {res.status}{' (' + res.message + ')' if res.message else ''}")
    if top:
        print("top parts: " + ", ".join(f"{k} {v['max']:.2f}" for k, v in top))
    print(f"wrote {out}")
    return 0 if res.status in ("ok", "no_person") else 1
