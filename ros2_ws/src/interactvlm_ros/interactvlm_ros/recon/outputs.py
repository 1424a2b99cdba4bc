"""What a planner gets out of a reconstruction: grip poses, free grasp points, files, an overlay image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from interactvlm_ros.recon.geometry import kdtree, vertex_normals

HUMAN_RGB = np.array([0.05, 0.66, 0.96])  # official optim preview colours
OBJECT_RGB = np.array([1.0, 0.9, 0.3])
CONTACT_RGB = np.array([1.0, 38 / 255, 25 / 255])  # official contact colour (255, 38, 25)


def contact_patches(vertices: np.ndarray, prob: np.ndarray, thr: float = 0.3, link: float = 0.03,
                    min_vertices: int = 3) -> list[np.ndarray]:
    """Vertex index sets of the contact patches: vertices with p > thr, linked when closer than ``link`` m."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    idx = np.nonzero(np.asarray(prob) > thr)[0]
    if len(idx) < min_vertices:
        return []
    pairs = cKDTree(vertices[idx]).query_pairs(link, output_type="ndarray")
    n = len(idx)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    k, lab = connected_components(g, directed=False)
    patches = [idx[lab == c] for c in range(k) if (lab == c).sum() >= min_vertices]
    return sorted(patches, key=len, reverse=True)


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
               human_vertices: np.ndarray, human_contact: np.ndarray, thr: float = 0.3) -> list[dict]:
    """Where the person holds the object: one entry per contact patch on the object (camera frame):
    ``{"pose": 4x4 (z = outward object normal), "centre", "normal", "num_vertices", "mean_contact",
    "human_distance"}``. Without object contact, the object vertices within 2 cm of the human contact
    vertices form the patches."""
    ov = np.asarray(obj_vertices, np.float64)
    if obj_contact is None:
        from scipy.spatial import cKDTree

        hc = np.asarray(human_vertices)[np.asarray(human_contact) > 0.5]
        if len(hc) == 0:
            return []
        d, _ = cKDTree(hc).query(ov)
        obj_contact = (d < 0.02).astype(np.float32)
    n = vertex_normals(ov, obj_faces).astype(np.float64)
    from scipy.spatial import cKDTree

    tree = kdtree(human_vertices)
    out = []
    for p in contact_patches(ov, obj_contact, thr):
        w = np.asarray(obj_contact)[p].astype(np.float64)
        c = (ov[p] * w[:, None]).sum(0) / w.sum()
        nn = (n[p] * w[:, None]).sum(0)
        if np.linalg.norm(nn) < 1e-9:
            continue
        nn /= np.linalg.norm(nn)
        out.append({"pose": patch_pose(c, nn), "centre": c, "normal": nn, "num_vertices": int(len(p)),
                    "mean_contact": float(w.mean()), "human_distance": float(tree.query(c)[0])})
    return out


def free_grasp_points(obj_vertices: np.ndarray, obj_faces: np.ndarray, human_vertices: np.ndarray,
                      human_contact: np.ndarray, margin: float = 0.05, body_margin: float = 0.03
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Object surface points a robot may grasp: farther than ``margin`` from every human contact vertex
    (p > 0.5) and farther than ``body_margin`` from the body. Returns (points [P,3], normals [P,3])."""
    from scipy.spatial import cKDTree

    ov = np.asarray(obj_vertices, np.float64)
    keep = np.ones(len(ov), bool)
    hc = np.asarray(human_vertices)[np.asarray(human_contact) > 0.5]
    if len(hc):
        keep &= cKDTree(hc).query(ov)[0] > margin
    keep &= kdtree(human_vertices).query(ov)[0] > body_margin
    n = vertex_normals(ov, obj_faces)
    return ov[keep].astype(np.float32), n[keep]


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


def save_outputs(rec, image: np.ndarray, out_dir: str | Path) -> dict[str, str]:
    """Write human.ply, object.ply, scene.glb, result.json and overlay.png. Returns {name: path}."""
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
        scene.add_geometry(m, node_name=name)
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
    p.write_text(json.dumps(rec.to_json(), indent=1))
    files["result"] = str(p)
    return files
