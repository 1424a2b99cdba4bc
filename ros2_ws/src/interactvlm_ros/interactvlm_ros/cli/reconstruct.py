"""``interactvlm reconstruct IMAGE --object LABEL [--depth D --K fx,fy,cx,cy] --out DIR``.

Writes human.ply, object.ply, scene.glb, result.json and overlay.png (fitted meshes over the image).
Contacts come from the pipeline's ``ContactEstimator`` (``--contacts pipeline``, default when it can be
built) or, as a named heuristic, from the hands (``--contacts hands``: palm/finger vertices of the Anny
body as human contact, no object contact) — logged as a fallback.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("interactvlm_ros.cli.reconstruct")


def add_arguments(p) -> None:
    p.add_argument("image", help="RGB image (png/jpg)")
    p.add_argument("--object", required=True, help="object label, e.g. 'ball'")
    p.add_argument("--object-mesh", default=None, help="object mesh file (metric unless --object-size)")
    p.add_argument("--object-size", type=float, default=None, help="longest side of the object in metres")
    p.add_argument("--object-mask", default=None, help="binary mask image of the object (optional)")
    p.add_argument("--object-box", default=None, metavar="X0,Y0,X1,Y1",
                   help="a detector's box around the object in pixels (optional; used when there is no --object-mask): "
                        "its region selects the depth points and bounds where the object may project")
    p.add_argument("--depth", default=None, help="depth registered to the image: .npy (m) or 16-bit .png (mm)")
    p.add_argument("--depth-scale", type=float, default=None, help="metres per depth unit (default: png 0.001, npy 1)")
    p.add_argument("--K", default=None, help="intrinsics fx,fy,cx,cy (default: fx=fy=1.2·max(W,H), centre)")
    p.add_argument("--D", default=None, help="lens distortion --D=k1,k2,p1,p2[,k3,...] (CameraInfo.d; needs --K): the image, "
                   "depth and mask are undistorted to the pinhole K first (overlay.png shows the undistorted image)")
    p.add_argument("--distortion-model", default="plumb_bob", choices=("plumb_bob", "rational_polynomial", "equidistant"),
                   help="model of --D (CameraInfo.distortion_model; default plumb_bob)")
    p.add_argument("--contacts", choices=("auto", "pipeline", "hands"), default="auto",
                   help="where contacts come from (auto: pipeline if it can be built, else the hands heuristic)")
    p.add_argument("--model", default="default", help="localizer for --contacts pipeline")
    p.add_argument("--out", required=True, help="output folder")


def hand_contact(num_vertices: int) -> np.ndarray:
    """Heuristic human contact: the vertices of both hands' landmark regressor rows (palm + fingers)."""
    from interactvlm_ros.perception.landmarks import NUM_POSE, get_regressor

    reg = get_regressor()
    c = np.zeros(num_vertices, np.float32)
    c[np.unique(reg.indices[NUM_POSE:][reg.weights[NUM_POSE:] > 0])] = 1.0
    return c


def _read_rgb(path: str) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from interactvlm_ros.recon import Reconstructor, load_depth, object_size_for, parse_K
    from interactvlm_ros.recon.outputs import save_outputs

    try:
        image = _read_rgb(args.image)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from interactvlm_ros.recon.camera import DepthError, IntrinsicsError

    try:
        K = parse_K(args.K) if args.K else None
        depth = load_depth(args.depth, args.depth_scale) if args.depth else None
    except (IntrinsicsError, DepthError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mask = None
    if args.object_mask:
        import cv2

        m = cv2.imread(args.object_mask, cv2.IMREAD_GRAYSCALE)
        if m is None:
            print(f"error: cannot read --object-mask {args.object_mask}", file=sys.stderr)
            return 2
        mask = m > 127
    box = None
    if args.object_box:
        try:
            box = [float(v) for v in args.object_box.split(",")]
            if len(box) != 4:
                raise ValueError
        except ValueError:
            print(f"error: --object-box {args.object_box!r}: expected four numbers x0,y0,x1,y1 (pixels)", file=sys.stderr)
            return 2
    extra = {}
    if args.D:
        from interactvlm_ros.lens import Rectifier, RectifyError, parse_distortion, undistorted_box

        if K is None:
            print("error: --D needs --K (a distortion is relative to the camera's intrinsics)", file=sys.stderr)
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

    rc = Reconstructor()
    fallbacks: list[str] = []
    contact_result = None
    if args.contacts in ("auto", "pipeline"):
        try:
            from interactvlm_ros.pipeline import ContactEstimator

            est = ContactEstimator(model=args.model, body="anny")
            contact_result = est.estimate(image, args.object, object_mesh=args.object_mesh, depth=depth, K=K)
            fallbacks += est.all_fallbacks()
            if not contact_result.ok:
                print(f"contact estimation: {contact_result.status}: {contact_result.message}", file=sys.stderr)
                return 1
        except Exception as exc:  # noqa: BLE001 - pipeline parts missing → heuristic (auto) or error
            if args.contacts == "pipeline":
                print(f"error: the contact pipeline cannot run: {exc}", file=sys.stderr)
                return 1
            fallbacks.append(f"contact pipeline unavailable ({exc}); 'hands' heuristic: human contact = hand vertices, "
                             "no object contact")
            log.warning("fallback: %s", fallbacks[-1])
    if contact_result is not None:
        obs = contact_result.observation
        if obs is None:
            from interactvlm_ros.perception.human import HumanPerception

            obs = HumanPerception().observe(image)
        rec = rc.fit(image, obs, contact_result, depth=depth, K=K, object_mask=mask, object_size=args.object_size,
                     object_box=box)
    else:
        if args.object_mesh:
            mesh, size = args.object_mesh, args.object_size
        else:  # the object library by label, as the pipeline resolves it (metric meshes, synonyms)
            from interactvlm_ros.objects import GENERIC, library

            key = library().resolve(args.object)
            if key is None or key == GENERIC:  # a stand-in mesh of made-up size cannot be placed metrically
                print(f"error: '{args.object}' is not in the object library ({', '.join(library().categories)}); "
                      "pass --object-mesh (and --object-size if it is not in metres)", file=sys.stderr)
                return 2
            mesh = library().lookup(args.object).mesh_path
            size, why = (args.object_size, "--object-size") if args.object_size else object_size_for(args.object, mesh)
            log.info("object mesh: library '%s' (%s), size %.3f m (%s)", key, mesh, size, why)
        from interactvlm_ros.perception.human import HumanPerception

        obs = HumanPerception().observe(image)
        rec = rc.fit(image, obs, hand_contact(rc.body_fitter.poser.N), None, mesh, depth=depth, K=K,
                     object_mask=mask, object_size=size, object_label=args.object, object_box=box)
    files = save_outputs(rec, image, args.out, fallbacks=list(dict.fromkeys(fallbacks + rc.fallbacks)), extra=extra)
    print(f"status: {rec.status} {rec.message}")
    for k, v in files.items():
        print(f"  {k}: {v}")
    if rec.ok:
        print(f"  object position (camera frame, m): {np.round(rec.object_pose[:3, 3], 3).tolist()}; "
              f"grip patches: {len(rec.human_grip_poses)}; free grasp points: {len(rec.free_grasp_points)}")
    return 0 if rec.ok else 1
