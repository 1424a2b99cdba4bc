"""``interactvlm render``: render a body or an object from the official views; write renders + lifting maps.

    interactvlm render --body anny --views human --size 1024 --out out/human
    interactvlm render --body smplh:/models/SMPLH_NEUTRAL.pkl --out out/smplh
    interactvlm render --mesh mug.obj --out out/mug            # normalised (spec 3.6), xyz colours
    interactvlm render --object cup --size 512 --out out/cup    # from the built-in object library

Writes, per view ``<v>``: ``render_<v>.png`` (the SAM input), and ``maps.npz`` (``vertex_ids`` int64 [V,S,S,3],
``bary`` float32 [V,S,S,3], ``face_ids`` int64 [V,S,S], −1 background; ``cam_params`` [V,5]; ``view_names``;
``vertices``/``faces`` of the rendered mesh). Also the official layouts so the files drop into the official
code: human → ``body_render_norm_<v>.png`` + ``pixel_to_vertex_map_<S>.npz`` + ``bary_coords_map_<S>.npz``;
object → ``obj_render_color_<v>.png`` + ``lift2d_dict.pkl``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--body", help="body model: anny | smplh:PATH | smplx:PATH")
    src.add_argument("--mesh", help="object mesh file (obj, ply, stl, glb, ...)")
    src.add_argument("--object", help="object label from the built-in library (e.g. cup, ball)")
    p.add_argument("--views", default=None, help="view set: human | object | object_mesh | official key "
                                                 "(default: human for --body, object otherwise)")
    p.add_argument("--size", type=int, default=1024, help="render size in pixels (official: 1024)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "nvdiffrast", "embree"))
    p.add_argument("--no-cache", action="store_true", help="do not read/write the view-asset cache")
    p.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    """A bad body/mesh/label/view set/size or an --out that cannot be written: one line, exit 2 (was a traceback)."""
    import sys

    from . import prepare_out

    why = prepare_out(args.out)
    if why:
        print(f"interactvlm render: cannot write --out {args.out} ({why}); give a folder that can be created and "
              "written", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (ValueError, OSError) as exc:  # BodyError, MeshError, AssetError, RenderError, a view set; a file
        print(f"interactvlm render: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from PIL import Image

    from .. import assets as A
    from ..views import get_view_set

    t0 = time.perf_counter()
    if args.size < 16:
        raise ValueError(f"--size {args.size}: renders need at least 16 pixels a side (official: 1024)")
    if args.body:
        from ..bodies import get_body_model

        body = get_body_model(args.body)
        verts, faces, colors, kind = body.template_vertices, body.faces, "normals", "human"
        label = body.name
    else:
        from .. import objects

        if args.mesh:
            mesh = objects.load_mesh(args.mesh)
            label = Path(args.mesh).stem
        else:
            entry = objects.lookup_object(args.object)
            if not entry.known:
                log.warning("object label %r is not in the library; rendering its fallback mesh %s", args.object,
                            entry.mesh_path)
            mesh = objects.load_mesh(entry.mesh_path)
            label = entry.canonical
        verts = objects.normalize_mesh(np.asarray(mesh.vertices, np.float32))
        faces, colors, kind = np.asarray(mesh.faces, np.int64), "xyz", "object"
    vs = get_view_set(args.views or kind)
    va = A.build_view_assets(verts, faces, vs, args.size, colors=colors, backend=args.backend, cache=not args.no_cache)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids, bary, fids = va.vertex_ids, va.bary, va.face_ids
    for v, name in enumerate(vs.names):
        Image.fromarray(va.renders[v]).save(out / f"render_{name}.png")
    np.savez_compressed(out / "maps.npz", vertex_ids=ids, bary=bary,
                        face_ids=fids if fids is not None else np.full(ids.shape[:3], -1, np.int64),
                        cam_params=va.cam_params, view_names=np.array(vs.names), vertices=np.asarray(verts, np.float32),
                        faces=np.asarray(faces, np.int64))
    if kind == "human":
        for v, name in enumerate(vs.names):
            Image.fromarray(va.renders[v]).save(out / f"body_render_norm_{name}.png")
        np.savez_compressed(out / f"pixel_to_vertex_map_{args.size}.npz", **{n: ids[v] for v, n in enumerate(vs.names)})
        np.savez_compressed(out / f"bary_coords_map_{args.size}.npz", **{n: bary[v] for v, n in enumerate(vs.names)})
    else:
        import joblib

        for v, name in enumerate(vs.names):
            Image.fromarray(va.renders[v]).save(out / f"obj_render_color_{name}.png")
        joblib.dump({"pixel_to_vertices_map": [ids[v] for v in range(len(vs))],
                     "bary_coords_map": [bary[v] for v in range(len(vs))], "num_vertices": int(len(verts))},
                    out / "lift2d_dict.pkl", compress=3)
    info = {"source": label, "view_set": vs.name, "views": list(vs.names), "size": args.size,
            "num_vertices": int(len(verts)), "num_faces": int(len(faces)), "key": va.key, "built_by": va.source,
            "foreground_pixels": [int(x) for x in np.diff(va.compact.offsets)],
            "seconds": round(time.perf_counter() - t0, 3)}
    (out / "render.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0
