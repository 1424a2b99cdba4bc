"""``interactvlm reconstruct IMAGE --object LABEL [--depth D --K fx,fy,cx,cy] --out DIR``.

Writes human.ply, object.ply, scene.glb, result.json and overlay.png (fitted meshes over the image); result.json
(status, message, fallbacks) and overlay.png also when the frame fails (no person, bad input), with exit 1, and files
of an earlier run in DIR that this run did not write are removed. Contacts come from the pipeline's
``ContactEstimator`` (``--contacts pipeline``, default when it can be built) or, as a named heuristic, from the hands
(``--contacts hands``: palm/finger vertices of the Anny body as human contact, no object contact) — logged as a
fallback; ``--contacts auto`` takes it only when the default model's pipeline cannot be built, never for a ``--model``
the user named (that is an error, exit 2); ``--object-box`` / ``--object-mask`` (nonzero = object) go to the contact model
as input cues too. An --out that cannot be written is exit 2 before any work. An
``--object-mesh`` is sized as the pipeline sizes it (``Reconstructor.object_size``): its extent when plausible in
metres, else the label's catalog size (a named fallback), unless ``--object-size``. result.json's ``object_pose``
(rigid) is the pose of the fitted mesh — centred on its vertex mean and scaled whenever the mesh was sized — and
``object_pose_mesh_file`` (with ``object_scale``) the pose of the mesh file's own coordinates.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from . import positive_float, prepare_out

log = logging.getLogger("interactvlm_ros.cli.reconstruct")


def add_arguments(p) -> None:
    p.add_argument("image", help="RGB image (png/jpg)")
    p.add_argument("--object", required=True, help="object label, e.g. 'ball'")
    p.add_argument("--object-mesh", default=None, help="object mesh file (its extent is taken as metres when plausible "
                   "for the label, else the label's catalog size; --object-size overrides)")
    p.add_argument("--object-size", type=positive_float, default=None,
                   help="longest side of the object in metres (> 0)")
    p.add_argument("--object-mask", default=None, help="mask image of the object, the image's size (optional; "
                   "nonzero = object, as the node's object_mask: a 0/1 or a 0/255 PNG)")
    p.add_argument("--object-box", default=None, metavar="X0,Y0,X1,Y1",
                   help="a detector's box around the object in pixels (optional; used when there is no --object-mask): "
                        "its region selects the depth points and bounds where the object may project")
    p.add_argument("--depth", default=None, help="depth registered to the image: .npy, 16-bit .png or float .tif; "
                   "integer depth is mm, float depth m (an 8-bit image needs --depth-scale)")
    p.add_argument("--depth-scale", type=positive_float, default=None,
                   help="metres per depth unit, > 0 (default: integer depth, png or npy, is mm: 0.001; float depth is m: 1)")
    p.add_argument("--K", default=None, help="intrinsics fx,fy,cx,cy (default: fx=fy=1.2·max(W,H), centre)")
    p.add_argument("--D", default=None, help="lens distortion --D=k1,k2,p1,p2[,k3,...] (CameraInfo.d; needs --K): the image, "
                   "depth and mask are undistorted to the pinhole K first (overlay.png shows the undistorted image)")
    p.add_argument("--distortion-model", default="plumb_bob", choices=("plumb_bob", "rational_polynomial", "equidistant"),
                   help="model of --D (CameraInfo.distortion_model; default plumb_bob)")
    p.add_argument("--contacts", choices=("auto", "pipeline", "hands"), default="auto",
                   help="where contacts come from (auto: pipeline if it can be built, else the hands heuristic)")
    p.add_argument("--model", default="default", help="localizer for --contacts pipeline/auto ('default' or a model "
                   "folder; one that cannot be loaded is an error)")
    p.add_argument("--out", required=True, help="output folder")


def hand_contact(num_vertices: int) -> np.ndarray:
    """Heuristic human contact: the vertices of both hands' landmark regressor rows (palm + fingers)."""
    from interactvlm_ros.perception.landmarks import NUM_POSE, get_regressor

    reg = get_regressor()
    c = np.zeros(num_vertices, np.float32)
    c[np.unique(reg.indices[NUM_POSE:][reg.weights[NUM_POSE:] > 0])] = 1.0
    return c


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from interactvlm_ros.recon import Reconstruction, Reconstructor, load_depth, parse_K

    from . import ImageReadError, read_image_rgb

    try:
        image = read_image_rgb(args.image)
    except ImageReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from interactvlm_ros.recon.camera import DepthError, IntrinsicsError, validate_K

    try:
        K = parse_K(args.K) if args.K else None
        depth = load_depth(args.depth, args.depth_scale) if args.depth else None
    except (IntrinsicsError, DepthError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mask = None
    if args.object_mask:
        import cv2

        m = cv2.imread(args.object_mask, cv2.IMREAD_ANYDEPTH)  # one channel, 8 or 16 bits as saved
        if m is None:
            print(f"error: cannot read --object-mask {args.object_mask}", file=sys.stderr)
            return 2
        mask = m != 0  # nonzero = object, as the node's object_mask and ContactEstimator (a 0/1 mask was read as empty)
    for name, arr in (("--depth", depth), ("--object-mask", mask)):  # before the contact estimation (seconds), not after
        if arr is not None and arr.shape[:2] != image.shape[:2]:
            print(f"error: {name} is {arr.shape[1]}x{arr.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}; "
                  "register it to the colour camera first (it is not resized)", file=sys.stderr)
            return 2
    box = None
    if args.object_box:
        try:
            box = [float(v) for v in args.object_box.split(",")]
            if len(box) != 4:
                raise ValueError
        except ValueError:
            print(f"error: --object-box {args.object_box!r}: expected four numbers x0,y0,x1,y1 (pixels)", file=sys.stderr)
            return 2
        from interactvlm_ros.recon.reconstructor import box_pixels

        try:  # reversed, empty or non-finite: refused here, not as bad_input after the contact estimation (a box off
            box_pixels(box, *image.shape[:2])  # the image is the frame's object_not_visible, as in the node)
        except ValueError as exc:
            print(f"error: --object-box {args.object_box!r}: {exc}", file=sys.stderr)
            return 2
    extra = {}
    if args.D:
        from interactvlm_ros.lens import Rectifier, RectifyError, parse_distortion, undistorted_box

        if K is None:
            print("error: --D needs --K (a distortion is relative to the camera's intrinsics)", file=sys.stderr)
            return 2
        try:  # the undistortion maps need a usable K (fx = 0 raised a cv2.error traceback)
            validate_K(K, *image.shape[:2])
        except IntrinsicsError as exc:
            print(f"error: --K {args.K}: {exc}; --D needs the camera's valid intrinsics", file=sys.stderr)
            return 2
        try:
            D, rect = parse_distortion(args.D), Rectifier()
            image = rect.apply(image, K, args.distortion_model, D)
            depth = None if depth is None else rect.apply(depth, K, args.distortion_model, D, nearest=True)
            mask = None if mask is None else rect.apply(mask, K, args.distortion_model, D, nearest=True)
            if box is not None:  # the box's pixels, undistorted like the image: the box around them
                box = undistorted_box(box, image.shape[:2], lambda m: rect.apply(m, K, args.distortion_model, D,
                                                                                nearest=True))
        except RectifyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        extra["undistorted"] = {"model": args.distortion_model, "D": D.tolist()}
        log.info("undistorted image%s with %s D=%s", "/depth/mask" if depth is not None or mask is not None else "",
                 args.distortion_model, D.tolist())

    label_key = None
    if args.contacts == "hands" and not args.object_mesh:  # refused before anything is written
        label_key = _library_key(args.object)
        if label_key is None:
            return 2
    out = Path(args.out)
    created = not out.exists()
    why = prepare_out(out)
    if why:
        print(f"error: cannot write --out {out} ({why}); give a folder that can be created and written",
              file=sys.stderr)
        return 2

    rc = Reconstructor()
    fallbacks: list[str] = []
    contact_result = None
    if args.contacts in ("auto", "pipeline"):
        from interactvlm_ros.pipeline import ContactEstimator

        est = None
        try:
            est = ContactEstimator(model=args.model, body="anny")
        except Exception as exc:  # noqa: BLE001 - cannot be built: a part missing, or the model cannot be loaded
            if args.model != "default":  # a model the user named: never replaced by the heuristic
                print(f"error: --model {args.model} cannot be used: {exc}", file=sys.stderr)
                return 2
            if args.contacts == "pipeline":
                print(f"error: the contact pipeline cannot run: {exc}", file=sys.stderr)
                return 1
            fallbacks.append(f"contact pipeline unavailable ({exc}); 'hands' heuristic: human contact = hand vertices, "
                             "no object contact")
            log.warning("fallback: %s", fallbacks[-1])
        if est is not None:
            # the box / mask also go to the contact model (the default model reads them as cues: ContactResult.cues)
            contact_result = est.estimate(image, args.object, object_mesh=args.object_mesh, depth=depth, K=K,
                                          object_mask=mask, object_box=box)
            extra["contact_cues"] = contact_result.cues
            fallbacks += est.all_fallbacks()
            if not contact_result.ok:  # no person, bad input: result.json says so (no meshes)
                print(f"contact estimation: {contact_result.status}: {contact_result.message}", file=sys.stderr)
                rec = Reconstruction(contact_result.status, f"contact estimation: {contact_result.message}")
                return _finish(rec, image, out, fallbacks + rc.fallbacks, extra)
    if contact_result is not None:
        obs = contact_result.observation
        if obs is None:
            from interactvlm_ros.perception.human import HumanPerception

            obs = HumanPerception().observe(image)
        rec = _fit(rc, image, obs, contact_result, depth=depth, K=K, object_mask=mask, object_size=args.object_size,
                   object_box=box)
    else:
        if args.object_mesh:
            mesh = args.object_mesh
        else:  # the object library by label, as the pipeline resolves it (metric meshes, synonyms)
            from interactvlm_ros.objects import library

            label_key = label_key or _library_key(args.object)
            if label_key is None:
                if created and out.is_dir() and not any(out.iterdir()):
                    out.rmdir()  # nothing was written: leave no empty folder behind
                return 2
            mesh = library().lookup(args.object).mesh_path
        # sized as the pipeline sizes a mesh (Reconstructor.object_size): the file's extent when plausible in metres
        # (then the mesh is used as it is), else the label's catalog size / the default — named fallbacks
        # a library mesh is named as the pipeline names it (library:<category>), so the same label gets the same size
        # whatever the contacts come from (the file's extent came first here: a bottle 0.16 m, 0.25 m in the pipeline)
        source = mesh if args.object_mesh else f"library:{label_key}"
        size, why = (args.object_size, "--object-size") if args.object_size else rc.object_size(args.object, source)
        log.info("object mesh: %s, size %.3f m (%s)", mesh, size, why)
        if args.object_mesh and why.startswith("extent of"):
            size = None  # metric: object_pose maps the file's own coordinates
        from interactvlm_ros.perception.human import HumanPerception

        obs = HumanPerception().observe(image)
        rec = _fit(rc, image, obs, hand_contact(rc.body_fitter.poser.N), None, mesh, depth=depth, K=K,
                   object_mask=mask, object_size=size, object_label=args.object, object_box=box)
    return _finish(rec, image, out, fallbacks + rc.fallbacks, extra)


def _fit(rc, *args, **kwargs):
    """``rc.fit``; a fit that raises (a bug) is status ``failed`` with the error, as ContactEstimator reports it, so
    result.json says so (it was a traceback, and an earlier run's result.json stayed in --out)."""
    from interactvlm_ros.recon import Reconstruction

    try:
        return rc.fit(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in result.json, traceback logged
        log.warning("reconstruction failed", exc_info=True)
        return Reconstruction("failed", f"reconstruction failed: {type(exc).__name__}: {exc}")


def _library_key(label: str) -> str | None:
    """The library category of a label for the hands heuristic, or None (error printed): a generic stand-in mesh of
    made-up size cannot be placed metrically."""
    from interactvlm_ros.objects import GENERIC, library

    key = library().resolve(label)
    if key is None or key == GENERIC:
        print(f"error: '{label}' is not in the object library ({', '.join(library().categories)}); "
              "pass --object-mesh (and --object-size if it is not in metres)", file=sys.stderr)
        return None
    return key


def _finish(rec, image, out: Path, fallbacks: list[str], extra: dict) -> int:
    """Write the outputs of ``rec`` (any status), print a summary; exit code 0 when ok, else 1."""
    from interactvlm_ros.recon.outputs import save_outputs

    files = save_outputs(rec, image, out, fallbacks=list(dict.fromkeys(fallbacks)), extra=extra)
    print(f"status: {rec.status} {rec.message}")
    for k, v in files.items():
        print(f"  {k}: {v}")
    if rec.ok:
        print(f"  object position (camera frame, m): {np.round(rec.object_pose[:3, 3], 3).tolist()}; "
              f"grip patches: {len(rec.human_grip_poses)}; free grasp points: {len(rec.free_grasp_points)}")
    return 0 if rec.ok else 1
