"""What a planner gets out of a reconstruction: grip poses, free grasp points, files, an overlay image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from interactvlm_ros.paths import remove_stale
from interactvlm_ros.recon.geometry import bounded_nearest, is_closed, vertex_normals

HUMAN_RGB = np.array([0.05, 0.66, 0.96])  # official optim preview colours
OBJECT_RGB = np.array([1.0, 0.9, 0.3])
CONTACT_RGB = np.array([1.0, 38 / 255, 25 / 255])  # official contact colour (255, 38, 25)
OUTPUT_FILES = ("human.ply", "object.ply", "scene.glb", "overlay.png", "result.json")  # what save_outputs writes
# scene.glb: glTF is y up and its cameras look down -z; the meshes (camera optical frame: y down, z forward) sit under
# nodes rotated 180° about x, so a glTF viewer shows the scene upright, as seen from the camera (the .ply files and
# result.json stay in the optical frame)
OPTICAL_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])
# a patch whose weighted normals cancel to below this fraction of its contact weight has no direction: no grip pose
GRIP_MIN_ALIGNMENT = 0.01
GRIP_SIDE_RADIUS = 0.05  # m: the body vertices this close to a grip patch's centre tell the person's side (open meshes)


#: contact vertices above which contact_patches links merged cells instead of every pair of vertices
DENSE_PATCH_VERTICES = 2000


def contact_patches(vertices: np.ndarray, prob: np.ndarray, thr: float = 0.3, link: float = 0.03,
                    min_vertices: int = 3) -> list[np.ndarray]:
    """Vertex index sets of the contact patches: vertices with p > thr, linked when closer than ``link`` m."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    idx = np.nonzero(np.asarray(prob) > thr)[0]
    if len(idx) < min_vertices:
        return []
    pts = np.asarray(vertices, np.float64)[idx]
    cell_of = None
    if len(idx) > DENSE_PATCH_VERTICES:
        # dense contact (a scan, a small finely tessellated object): the pairs within `link` grow with the square of
        # the density (11 M pairs, 1.6 s a frame for 5 k contact vertices on a 6 cm object). The vertices are merged
        # per cell of link/6 first and the cells' centres linked within link + a cell diagonal: patches closer than
        # that (≤ 1.5 link) join, which no grip needs apart
        cell = link / 6.0
        _, cell_of, counts = np.unique(np.floor(pts / cell).astype(np.int64), axis=0, return_inverse=True,
                                       return_counts=True)
        cell_of = cell_of.reshape(-1)
        pts = np.zeros((len(counts), 3))
        np.add.at(pts, cell_of, np.asarray(vertices, np.float64)[idx])
        pts /= counts[:, None]
        link = link + cell * np.sqrt(3.0)
    pairs = cKDTree(pts).query_pairs(link, output_type="ndarray")
    n = len(pts)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    k, lab = connected_components(g, directed=False)
    if cell_of is not None:
        lab = lab[cell_of]
    patches = [idx[lab == c] for c in range(k) if (lab == c).sum() >= min_vertices]
    return sorted(patches, key=len, reverse=True)


_MESH_CACHE: list = []  # [(vertices copy, faces copy, entry)], most recently used first


def _mesh_entry(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """The per-mesh entry (compared by value): ``{"normals", "surface" (None until ``object_surface``), "closed" (None
    until ``mesh_closed``), "patches": [(contact copy, thr, patches)] most recent first}``. A hit moves it to the front;
    4 meshes are kept."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    for i, (cv, cf, entry) in enumerate(_MESH_CACHE):
        if cv.shape == v.shape and cf.shape == f.shape and np.array_equal(cv, v) and np.array_equal(cf, f):
            if i:
                _MESH_CACHE.insert(0, _MESH_CACHE.pop(i))
            return entry
    entry = {"normals": vertex_normals(v, f).astype(np.float64), "surface": None, "closed": None, "patches": [],
             "used": _faces_use(f, len(v))}
    _MESH_CACHE.insert(0, (v.copy(), f.copy(), entry))
    del _MESH_CACHE[4:]
    return entry


def _faces_use(faces: np.ndarray, n: int) -> np.ndarray:
    """[n] bool: the vertices some face uses (a stray vertex of a scan or OBJ is not on the surface)."""
    used = np.zeros(n, bool)
    used[np.asarray(faces, np.int64).reshape(-1)] = True
    return used


def _used_vertices(vertices: np.ndarray, faces: np.ndarray, object_frame) -> np.ndarray:
    """``_faces_use`` of the object: once per mesh from its per-mesh entry while it is tracked (``object_frame``)."""
    if object_frame is not None:
        return _mesh_entry(object_frame[0], faces)["used"]
    return _faces_use(faces, len(vertices))


def object_frame_cache(vertices: np.ndarray, faces: np.ndarray, contact: np.ndarray | None, thr: float = 0.3) -> dict:
    """Per-object work that does not change when the object moves rigidly (tracking): vertex normals and
    contact patches in the object's own frame, ``{"normals": [M,3] float64, "patches": list | None}``
    (patches None without contact). The normals are kept per mesh (vertices, faces, compared by value), the patches
    per mesh for the last two (contact, thr): a new contact array every frame — a live camera — recomputes only
    the patches. (Before, one list of (mesh, contact) entries held 2: the contact-less entry, whose R-tree costs
    ~50 ms, was pushed out by the second new contact and rebuilt every other frame.)"""
    entry = _mesh_entry(vertices, faces)
    if contact is None:
        return {"normals": entry["normals"], "patches": None}
    c = np.asarray(contact)
    for cc, ct, patches in entry["patches"]:
        if ct == thr and cc.shape == c.shape and np.array_equal(cc, c):
            return {"normals": entry["normals"], "patches": patches}
    patches = contact_patches(np.asarray(vertices, np.float64), c, thr)
    entry["patches"].insert(0, (c.copy(), thr, patches))
    del entry["patches"][2:]
    return {"normals": entry["normals"], "patches": patches}


def object_surface(vertices: np.ndarray, faces: np.ndarray):
    """The mesh as a ``trimesh.Trimesh`` whose closest-point queries reuse one R-tree over its faces while the same
    mesh (by value) is passed again — the object in its own frame, while it is tracked."""
    entry = _mesh_entry(vertices, faces)
    if entry["surface"] is None:
        import trimesh

        entry["surface"] = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    return entry["surface"]


def mesh_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """``geometry.is_closed`` (every edge shared by two faces), once per mesh (its per-mesh entry): a tracked object's
    grip poses ask every frame."""
    entry = _mesh_entry(vertices, faces)
    if entry["closed"] is None:
        entry["closed"] = is_closed(faces, len(vertices), vertices)
    return entry["closed"]


def patch_pose(centre: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """4x4 pose at ``centre`` whose z axis is the outward surface ``normal``; x = camera x projected on the
    tangent plane (camera y when the normal is along x)."""
    z = normal / max(np.linalg.norm(normal), 1e-12)
    ref = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = ref - (ref @ z) * z
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = centre
    return T


def grip_poses(obj_vertices: np.ndarray, obj_faces: np.ndarray, obj_contact: np.ndarray | None,
               human_vertices: np.ndarray, human_contact: np.ndarray, thr: float = 0.3,
               object_frame: tuple | None = None) -> list[dict]:
    """Where the person holds the object: one entry per contact patch on the object (camera frame):
    ``{"pose": 4x4 (z = outward object normal), "centre", "normal", "num_vertices", "mean_contact",
    "human_distance"}``. Without object contact, the object vertices within 2 cm of the human contact
    vertices form the patches. The normal is the contact-weighted mean of the patch's vertex normals (none, and no
    entry, when they cancel: ``GRIP_MIN_ALIGNMENT``); the centre is the contact-weighted mean moved along the normal
    onto the surface (a curved patch's mean lies inside the object). Vertices no face uses are left out.

    A closed mesh (every edge shared by two faces; an inward-wound one is flipped by the reconstructor) has one
    outward side: its normals are used as they are. An open mesh — a single-sided scan, a sheet or tray modelled as
    one surface, a mesh with holes — has no outside: the sign of its normals is its winding's, and a grip normal
    pointed away from the hand as often as not (a planner approaching along −z came from the wrong side). There each
    vertex normal of a patch is turned to the person's side before the mean: towards the mean of the body vertices
    within ``GRIP_SIDE_RADIUS`` of the patch centre (the hand's bulk; the nearest body vertex when none is that close).
    Not the nearest human contact vertex: contact vertices lie on the object's surface, a few mm in front or behind it
    as the fit penetrates. Per vertex, not per patch, so that a patch spanning both faces of a thin open part (a
    scan with holes; the 2 cm rule without object contact) does not cancel to a near-zero normal.

    object_frame: (object-frame vertices [M,3], pose 4x4 camera ← object) with obj_vertices = that pose
    applied to them: the patches and normals then come from ``object_frame_cache`` (rigid motion keeps
    them) instead of being recomputed, and whether the mesh is closed from ``mesh_closed``."""
    ov = np.asarray(obj_vertices, np.float64)
    if object_frame is not None and obj_contact is not None:
        entry = object_frame_cache(object_frame[0], obj_faces, obj_contact, thr)
        R = np.asarray(object_frame[1], np.float64)[:3, :3]
        n, patches = entry["normals"] @ R.T, entry["patches"]
    else:
        n, patches = None, None
    if obj_contact is None:
        from scipy.spatial import cKDTree

        hc = np.asarray(human_vertices)[np.asarray(human_contact) > 0.5]
        if len(hc) == 0:
            return []
        d, _ = cKDTree(hc).query(ov)
        obj_contact = (d < 0.02).astype(np.float32)
    if n is None:
        n = vertex_normals(ov, obj_faces).astype(np.float64)
        patches = contact_patches(ov, obj_contact, thr)
    closed = mesh_closed(object_frame[0], obj_faces) if object_frame is not None else is_closed(obj_faces, len(ov), ov)
    hv = np.asarray(human_vertices, np.float64)  # a few patch centres: a scan (a 13.7k-vertex k-d tree cost 3 ms)
    used = _used_vertices(ov, obj_faces, object_frame)  # stray vertices are not on the surface
    out = []
    for p in patches:
        p = p[used[p]]
        if not len(p):
            continue
        w = np.asarray(obj_contact)[p].astype(np.float64)
        c = (ov[p] * w[:, None]).sum(0) / w.sum()
        d2 = ((hv - c) ** 2).sum(1)
        pn = n[p]
        if not closed:  # open mesh: each normal to the person's side (the body's bulk near the patch)
            near = d2 < GRIP_SIDE_RADIUS ** 2
            side = (hv[near].mean(0) if near.any() else hv[np.argmin(d2)]) - c
            pn = np.where((pn @ side < 0)[:, None], -pn, pn)
        nn = (pn * w[:, None]).sum(0)
        if np.linalg.norm(nn) < GRIP_MIN_ALIGNMENT * w.sum():  # normals all round (a patch wrapping the object, both
            continue  # faces of a thin part): their mean is rounding noise, no direction (it used to be one at random)
        nn /= np.linalg.norm(nn)
        # the weighted centre of a curved patch lies inside the object (a hand round a bottle: 1-3 cm; the two faces
        # of a thin part: mid-way): moved along the normal to the level of the patch vertex facing it nearest that
        # axis, so the origin is on the surface under the hand
        facing = np.nonzero(pn @ nn > 0)[0]
        rel = ov[p[facing]] - c
        k = facing[np.argmin(((rel - np.outer(rel @ nn, nn)) ** 2).sum(1))]
        c = c + ((ov[p[k]] - c) @ nn) * nn
        d2 = ((hv - c) ** 2).sum(1)
        out.append({"pose": patch_pose(c, nn), "centre": c, "normal": nn, "num_vertices": int(len(p)),
                    "mean_contact": float(w.mean()),
                    "human_distance": float(np.sqrt(d2.min()))})
    return out


def free_grasp_points(obj_vertices: np.ndarray, obj_faces: np.ndarray, human_vertices: np.ndarray,
                      human_contact: np.ndarray, margin: float = 0.05, body_margin: float = 0.03,
                      object_frame: tuple | None = None, obj_contact: np.ndarray | None = None,
                      contact_thr: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Object surface points a robot may grasp: farther than ``margin`` from every human contact vertex
    (p > 0.5) and farther than ``body_margin`` from the body, and not on the object's own contact (``obj_contact``
    > ``contact_thr``, the grip patches' threshold: a free point never lies on a grip patch, where the person holds
    the object although the fitted hand may be a few cm off). Returns (points [P,3], normals [P,3]).
    The normals are outward for a closed mesh; an open mesh's (a single-sided scan, a sheet, a mesh with holes) keep
    its winding's sign, which says nothing about which side is free — no hand there to orient them by, unlike
    ``grip_poses`` —, so a planner takes them as ± (either side of a sheet may be approached).
    object_frame: as in ``grip_poses`` (normals from the per-object cache, rotated)."""
    from scipy.spatial import cKDTree

    ov = np.asarray(obj_vertices, np.float64)
    # nearest body vertex, searched only up to max(margin, body_margin) (inf beyond): a vertex farther
    # than that from the whole body is also farther than margin from every contact vertex
    ub = max(margin, body_margin)
    d_body = bounded_nearest(human_vertices, obj_vertices, ub)[0]
    keep = d_body > body_margin
    hc = np.asarray(human_vertices)[np.asarray(human_contact) > 0.5]
    near = np.nonzero(keep & (d_body <= margin))[0]
    if len(hc) and len(near):
        keep[near] &= cKDTree(hc).query(ov[near])[0] > margin
    if obj_contact is not None:
        keep &= ~(np.asarray(obj_contact, np.float64).reshape(-1) > contact_thr)
    keep &= _used_vertices(ov, obj_faces, object_frame)  # a stray vertex is off the surface
    if object_frame is not None:
        R = np.asarray(object_frame[1], np.float64)[:3, :3]
        n = (object_frame_cache(object_frame[0], obj_faces, None)["normals"][keep] @ R.T).astype(np.float32)
    else:
        n = vertex_normals(ov, obj_faces)[keep]
    return ov[keep].astype(np.float32), n


def _colours(base: np.ndarray, contact: np.ndarray | None, n: int) -> np.ndarray:
    c = np.tile(base, (n, 1))
    if contact is not None:
        p = np.clip(np.asarray(contact, np.float64), 0, 1)[:, None]
        c = c * (1 - p) + CONTACT_RGB * p
    return c


def overlay(image: np.ndarray, K: np.ndarray, meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
            alpha: float = 0.6) -> np.ndarray:
    """Fitted meshes drawn over the image (painter's algorithm, Lambert shading from the camera).

    meshes: list of (vertices [n,3] camera frame, faces [f,3], per-vertex RGB [n,3] in [0,1])."""
    import cv2

    img = np.asarray(image).astype(np.float32).copy()
    H, W = img.shape[:2]
    layer = img.copy()
    drawn = np.zeros((H, W), np.uint8)
    tris, cols, depths = [], [], []
    for v, f, c in meshes:
        v = np.asarray(v, np.float64)
        f = np.asarray(f, np.int64)
        if not np.isfinite(v).all():
            continue
        tri = v[f]
        ok = (tri[..., 2] > 0.05).all(1)
        tri, ff = tri[ok], f[ok]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
        cen = tri.mean(1)
        view = -cen / np.linalg.norm(cen, axis=1, keepdims=True)
        shade = 0.35 + 0.65 * np.abs((fn * view).sum(1))
        uv = np.stack([K[0, 0] * tri[..., 0] / tri[..., 2] + K[0, 2], K[1, 1] * tri[..., 1] / tri[..., 2] + K[1, 2]], -1)
        tris.append(uv)
        cols.append(np.asarray(c)[ff].mean(1) * shade[:, None] * 255)
        depths.append(cen[:, 2])
    if tris:
        uv = np.concatenate(tris)
        col = np.concatenate(cols)
        order = np.argsort(-np.concatenate(depths))  # far first
        pts = np.round(uv * 4).astype(np.int32)  # 2 bits of sub-pixel precision
        for i in order:
            cv2.fillConvexPoly(layer, pts[i], col[i].tolist(), lineType=cv2.LINE_8, shift=2)
            cv2.fillConvexPoly(drawn, pts[i], 1, lineType=cv2.LINE_8, shift=2)
    m = drawn.astype(bool)
    img[m] = (1 - alpha) * img[m] + alpha * layer[m]
    return np.clip(img, 0, 255).astype(np.uint8)


def save_outputs(rec, image: np.ndarray, out_dir: str | Path, fallbacks: list[str] | None = None,
                 extra: dict | None = None) -> dict[str, str]:
    """Write human.ply, object.ply, scene.glb, result.json and overlay.png. Returns {name: path}.
    A result without meshes (e.g. ``no_person``) writes result.json and overlay.png only; files of this set that an
    earlier run left in ``out_dir`` and this one did not write are removed, so no stale mesh sits beside a new status.
    ``fallbacks``: the named fallbacks taken on the way (default intrinsics, ...), listed in result.json; ``extra``:
    more result.json entries (e.g. the undistortion applied to the input)."""
    import cv2
    import trimesh

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    meshes = []
    scene = trimesh.Scene()
    for name, v, f, c, base in (("human", rec.human_vertices_cam, rec.human_faces, rec.human_contact, HUMAN_RGB),
                                ("object", rec.object_vertices_cam, rec.object_faces, rec.object_contact, OBJECT_RGB)):
        if v is None or f is None or not np.isfinite(v).all():
            continue
        col = _colours(base, c, len(v))
        m = trimesh.Trimesh(np.asarray(v, np.float64), np.asarray(f), vertex_colors=(col * 255).astype(np.uint8),
                            process=False)
        p = out / f"{name}.ply"
        m.export(p)
        files[name] = str(p)
        scene.add_geometry(m, node_name=name, transform=OPTICAL_TO_GLTF)
        meshes.append((v, f, col))
    if len(scene.geometry):
        p = out / "scene.glb"
        scene.export(p)
        files["scene"] = str(p)
    ov = overlay(image, rec.K, meshes) if rec.K is not None else np.asarray(image)
    p = out / "overlay.png"
    cv2.imwrite(str(p), cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
    files["overlay"] = str(p)
    p = out / "result.json"
    info = rec.to_json()
    info["fallbacks"] = list(fallbacks or [])
    info.update(extra or {})
    from interactvlm_ros.recon.reconstructor import json_safe

    p.write_text(json.dumps(json_safe(info), indent=1, allow_nan=False))  # NaN is not JSON: None instead
    files["result"] = str(p)
    remove_stale(out, OUTPUT_FILES, files.values())
    return files
