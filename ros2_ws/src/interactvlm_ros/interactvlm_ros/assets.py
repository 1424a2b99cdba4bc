"""View assets: the 4 renders + per-pixel lifting maps of one mesh on one view set.

* ``ViewAssets`` — ``renders uint8 [V,H,W,3]``, ``vertex_ids int64 [V,H,W,3]`` (−1 bg), ``bary float32 [V,H,W,3]``
  (−1 bg), ``face_ids int64 [V,H,W]`` (−1 bg, may be None for official files), ``num_vertices``, ``view_set``,
  ``cam_params float32 [V,5]``, ``key`` (content hash). Internally the maps are kept foreground-only
  (``compact``: see ``lift.CompactMaps``); the dense arrays are built on first access.
* ``build_view_assets(vertices, faces, view_set, size, colors=..., backend=..., cache=True)`` renders a mesh
  (``render.render_views``) and caches the result on disk under ``paths.cache_dir("assets")`` keyed by
  sha256(mesh bytes, colours, view set, size, renderer version). The cache stores the compact arrays as
  uncompressed ``.npy`` files so that a cached load is a few file reads (≈ 10 ms at 1024²). The write runs on a
  background thread (atomic rename, so readers never see a partial entry; the interpreter waits for it at exit);
  until it lands, a second request for the same key gets the in-memory result. ``flush_cache_writes()`` waits.
* ``human_assets(body, size)``, ``object_assets(mesh, size)``: the convenience builders (body: normal colours;
  object: xyz colours of the normalised mesh, spec 3.6).
* Official loaders: ``load_official_human_assets(folder)`` (``data.zip``'s ``hcontact_vitruvian`` folder) and
  ``load_lift2d_dict(pkl)`` (the demo's ``sam_inp_objs``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import paths
from .lift import CompactMaps
from .views import ViewSet, get_view_set

log = logging.getLogger(__name__)

ASSET_CACHE_VERSION = "1"


class AssetError(ValueError):
    """Missing/invalid view-asset files (the message names the file and the fix)."""


class ViewAssets:
    """Renders + lifting maps of one mesh on one view set (see module docstring)."""

    def __init__(self, renders: np.ndarray, compact: CompactMaps, num_vertices: int, view_set: ViewSet,
                 key: str, cam_params: np.ndarray | None = None, source: str = ""):
        renders = np.asarray(renders)
        if renders.dtype != np.uint8 or renders.ndim != 4 or renders.shape[-1] != 3:
            raise AssetError(f"renders must be uint8 [V,H,W,3]; got {renders.dtype} {renders.shape}")
        if renders.shape[0] != compact.num_views or tuple(renders.shape[1:3]) != tuple(compact.size):
            raise AssetError(f"renders {renders.shape} do not match the maps ({compact.num_views} views of {compact.size})")
        if len(view_set) != compact.num_views:
            raise AssetError(f"view set '{view_set.name}' has {len(view_set)} views, the maps have {compact.num_views}")
        self.renders = renders
        self.compact = compact
        self.num_vertices = int(num_vertices)
        self.view_set = view_set
        self.cam_params = np.asarray(view_set.cam_params() if cam_params is None else cam_params, np.float32)
        self.key = key
        self.source = source
        #: (vertices float32 [N,3], faces int64 [F,3]) the assets were rendered from, when built by
        #: :func:`build_view_assets` (models that predict per vertex of any mesh read it); None otherwise
        self.mesh: tuple[np.ndarray, np.ndarray] | None = None
        self._dense: dict[str, np.ndarray | None] = {}

    @classmethod
    def from_dense(cls, renders, vertex_ids, bary, num_vertices, view_set, key=None, face_ids=None, cam_params=None,
                   source=""):
        compact = CompactMaps.from_dense(vertex_ids, bary, face_ids)
        if key is None:
            key = _hash_arrays(np.asarray(renders), compact.pix, compact.vid, compact.bary)
        va = cls(renders, compact, num_vertices, get_view_set(view_set), key, cam_params, source)
        va._dense["vertex_ids"] = np.asarray(vertex_ids, np.int64)
        va._dense["bary"] = np.asarray(bary, np.float32)
        return va

    # dense views of the maps, built on first access
    @property
    def vertex_ids(self) -> np.ndarray:
        if "vertex_ids" not in self._dense:
            self._dense["vertex_ids"] = self.compact.dense_vertex_ids()
        return self._dense["vertex_ids"]

    @property
    def bary(self) -> np.ndarray:
        if "bary" not in self._dense:
            self._dense["bary"] = self.compact.dense_bary()
        return self._dense["bary"]

    @property
    def face_ids(self) -> np.ndarray | None:
        if "face_ids" not in self._dense:
            self._dense["face_ids"] = self.compact.dense_face_ids()
        return self._dense["face_ids"]

    @property
    def size(self) -> int:
        return int(self.compact.size[0])

    @property
    def view_names(self) -> tuple[str, ...]:
        return self.view_set.names

    @property
    def num_views(self) -> int:
        return self.compact.num_views

    def foreground(self) -> np.ndarray:
        """bool [V,H,W]: pixels covered by the mesh."""
        H, W = self.compact.size
        out = np.zeros((self.num_views, H * W), bool)
        for v in range(self.num_views):
            out[v, self.compact.view(v)[0]] = True
        return out.reshape(self.num_views, H, W)

    def __repr__(self) -> str:
        return (f"ViewAssets(view_set={self.view_set.name!r}, views={self.num_views}, size={self.compact.size}, "
                f"num_vertices={self.num_vertices}, key={self.key!r})")


def _hash_arrays(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


# ============================================================================================ official
def _read_png(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise AssetError(f"{path}: {what} missing")
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - any decoder error
        raise AssetError(f"{path}: cannot read the PNG ({exc}); re-extract it from the official data.zip") from exc


def load_official_human_assets(folder, view_set: str = "4MV-Z_Vitru", num_vertices: int = 6890,
                               input_type: str = "norm", require_renders: bool = True) -> ViewAssets:
    """The official human assets of ``data.zip`` (``data/hcontact_vitruvian``: ``pixel_to_vertex_map_1024.npz``,
    ``bary_coords_map_1024.npz`` with one ``[1024,1024,3]`` entry per view name, ``body_render_<input_type>_<view>.png``).

    ``folder`` may also be the parent ``data`` folder. ``num_vertices`` is the official predictor's fixed
    6890 (SMPL-H); vertex ids outside ``[0, num_vertices)`` are ignored by the lifting, as in the official code."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetError(f"{folder}: not a folder; pass the official data/hcontact_vitruvian folder from data.zip")
    if (folder / "hcontact_vitruvian").is_dir() and not (folder / "pixel_to_vertex_map_1024.npz").is_file():
        folder = folder / "hcontact_vitruvian"
    vs = get_view_set(view_set)
    p2v, bc = folder / "pixel_to_vertex_map_1024.npz", folder / "bary_coords_map_1024.npz"
    for f in (p2v, bc):
        if not f.is_file():
            raise AssetError(f"{f}: missing; the official human folder (data.zip: data/hcontact_vitruvian) has "
                             "pixel_to_vertex_map_1024.npz, bary_coords_map_1024.npz and body_render_norm_<view>.png")
    try:
        with np.load(p2v) as a, np.load(bc) as b:
            missing = [n for n in vs.names if n not in a.files or n not in b.files]
            if missing:
                raise AssetError(f"{p2v} / {bc}: view(s) {missing} missing (files have {a.files} / {b.files})")
            ids = np.stack([np.asarray(a[n]) for n in vs.names]).astype(np.int64)
            bary = np.stack([np.asarray(b[n]) for n in vs.names]).astype(np.float32)
    except AssetError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/npy decoding errors
        raise AssetError(f"{p2v} / {bc}: unreadable ({exc}); re-extract data.zip") from exc
    if ids.shape != bary.shape or ids.ndim != 4 or ids.shape[-1] != 3:
        raise AssetError(f"{p2v}: maps must be [H,W,3] per view with equal shapes; got {ids.shape} / {bary.shape}")
    V, H, W, _ = ids.shape
    if require_renders:
        renders = np.stack([_read_png(folder / f"body_render_{input_type}_{n}.png", "SAM input render") for n in vs.names])
    else:
        renders = np.full((V, H, W, 3), 255, np.uint8)
    if renders.shape[1:3] != (H, W):
        raise AssetError(f"{folder}: renders are {renders.shape[1:3]} but the maps are {(H, W)}")
    compact = CompactMaps.from_dense(ids, bary)
    key = "official-human-" + _hash_arrays(renders, compact.pix, compact.vid, compact.bary)
    va = ViewAssets(renders, compact, num_vertices, vs, key, source=str(folder))
    va._dense["vertex_ids"], va._dense["bary"] = ids, bary
    return va


def load_lift2d_dict(pkl, renders_dir=None, view_set: str = "object", input_type: str = "color",
                     require_renders: bool = True) -> ViewAssets:
    """The demo's object assets: ``lift2d_dict.pkl`` (joblib dict ``pixel_to_vertices_map``/``bary_coords_map``: lists
    of V ``[1024,1024,3]``, ``num_vertices``) + ``obj_render_<input_type>_<view>.png`` in ``renders_dir``
    (default: the pkl's folder). View order = the view set's (demo: frontleft, frontright, backleft, backright)."""
    pkl = Path(pkl)
    if pkl.is_dir():
        pkl = pkl / ("sam_inp_objs" if (pkl / "sam_inp_objs").is_dir() else "") / "lift2d_dict.pkl"
    if not pkl.is_file():
        raise AssetError(f"{pkl}: missing; pass the demo's sam_inp_objs/lift2d_dict.pkl")
    try:
        import joblib

        d = joblib.load(pkl)
    except Exception as exc:  # noqa: BLE001
        raise AssetError(f"{pkl}: unreadable as a joblib pickle ({exc})") from exc
    try:
        ids = np.stack([np.asarray(x) for x in d["pixel_to_vertices_map"]]).astype(np.int64)
        bary = np.stack([np.asarray(x) for x in d["bary_coords_map"]]).astype(np.float32)
        n = int(d["num_vertices"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AssetError(f"{pkl}: not a demo lift2d_dict (needs pixel_to_vertices_map, bary_coords_map, "
                         f"num_vertices): {exc!r}") from exc
    vs = get_view_set(view_set)
    if ids.shape[0] != len(vs):
        raise AssetError(f"{pkl}: {ids.shape[0]} views but view set '{vs.name}' has {len(vs)}")
    V, H, W, _ = ids.shape
    rdir = Path(renders_dir) if renders_dir is not None else pkl.parent
    if require_renders:
        renders = np.stack([_read_png(rdir / f"obj_render_{input_type}_{n_}.png", "SAM input render") for n_ in vs.names])
    else:
        renders = np.full((V, H, W, 3), 255, np.uint8)
    compact = CompactMaps.from_dense(ids, bary)
    key = "official-object-" + _hash_arrays(renders, compact.pix, compact.vid, compact.bary)
    va = ViewAssets(renders, compact, n, vs, key, source=str(pkl))
    va._dense["vertex_ids"], va._dense["bary"] = ids, bary
    return va


# ============================================================================================ building
def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence=None) -> np.ndarray:
    """Area-weighted vertex normals (sum of unnormalised face normals (v1−v0)×(v2−v0), normalised), float32 [N,3].
    ``incidence``: an optional sparse [N,F] vertex-face incidence matrix of ``faces``; the vertex ← face sum is
    then one sparse product (≈10× faster than ``np.add.at`` for a mesh re-normalised every frame)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if incidence is not None:
        n = incidence @ fn
    else:
        n = np.zeros_like(v)
        for k in range(3):
            np.add.at(n, f[:, k], fn)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n.astype(np.float32)


def normal_colors(vertices, faces) -> np.ndarray:
    """Spec 3.5 ``norm`` colours: (n + 1)/2, float32 [N,3]."""
    return ((vertex_normals(vertices, faces) + 1.0) / 2.0).astype(np.float32)


def xyz_colors(vertices) -> np.ndarray:
    """Spec 3.6 ``color`` colours: per axis (v − min)/(max − min)·0.8 + 0.1, float32 [N,3]."""
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    return ((v - lo) / np.maximum(hi - lo, 1e-12) * 0.8 + 0.1).astype(np.float32)


def _colors(colors, vertices, faces) -> np.ndarray:
    if isinstance(colors, str):
        if colors == "normals":
            return normal_colors(vertices, faces)
        if colors == "xyz":
            return xyz_colors(vertices)
        raise AssetError(f"colors={colors!r}: use 'normals', 'xyz' or a float [N,3] array")
    c = np.asarray(colors, np.float32)
    if c.shape != (len(vertices), 3):
        raise AssetError(f"colors array must be [N,3] = {(len(vertices), 3)}; got {c.shape}")
    return c


_cache_root_failed: set[str] = set()
_capture = threading.local()  # per thread: the list collecting this thread's cache fallbacks (capture_fallbacks)


@contextlib.contextmanager
def capture_fallbacks():
    """``with capture_fallbacks() as notes:`` collects the asset cache's named fallbacks (no cache folder; a damaged
    entry re-rendered) that this thread takes inside the block, each once, so that the caller — ContactEstimator —
    can list them with its own fallbacks (contacts.json, the node's /diagnostics), not only in the log."""
    outer = getattr(_capture, "notes", None)
    notes: list[str] = []
    _capture.notes = notes
    try:
        yield notes
    finally:
        _capture.notes = outer
        if outer is not None:
            outer.extend(n for n in notes if n not in outer)


def _note(text: str, log_it: bool = True) -> None:
    if log_it:
        log.warning("fallback: %s", text)
    notes = getattr(_capture, "notes", None)
    if notes is not None and text not in notes:
        notes.append(text)


def _cache_root() -> Path | None:
    """The asset cache folder, or None (logged once per folder) when it cannot be created — a read-only home or
    INTERACTVLM_CACHE_DIR, no home at all: the assets are then rendered without the cache instead of failing."""
    try:
        return paths.cache_dir("assets")
    except OSError as exc:  # paths.CacheDirError names the fix (INTERACTVLM_CACHE_DIR)
        first = str(exc) not in _cache_root_failed  # logged once per folder, noted for every capture
        _cache_root_failed.add(str(exc))
        _note(f"asset cache folder unavailable ({exc}); rendering view assets without the cache (each new process "
              "re-renders)", log_it=first)
        return None


_CACHE_FILES = ("renders", "offsets", "pix", "vid", "bary", "fid")


def _cache_load(path: Path, view_set: ViewSet, key: str):
    try:
        meta = json.loads((path / "meta.json").read_text())
        arrs = {n: np.load(path / f"{n}.npy") for n in _CACHE_FILES}
        H, W = (int(x) for x in meta["size"])
        off, n = arrs["offsets"], len(arrs["pix"])
        fid = arrs["fid"] if len(arrs["fid"]) else None
        if (meta.get("key") != key or off.ndim != 1 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0)
                or arrs["vid"].shape != (n, 3) or arrs["bary"].shape != (n, 3) or fid is not None and len(fid) != n
                or n and (arrs["pix"].min() < 0 or arrs["pix"].max() >= H * W)):
            raise AssetError("maps inconsistent with each other or with meta.json")
        compact = CompactMaps((H, W), off, arrs["pix"], arrs["vid"], arrs["bary"], fid)
        return ViewAssets(arrs["renders"], compact, meta["num_vertices"], view_set, key, source=f"cache:{path}")
    except Exception as exc:  # noqa: BLE001 - a damaged entry is removed and rebuilt (logged)
        _note(f"asset cache entry {path} unreadable ({exc}); removing it and re-rendering the mesh")
    # moved aside first (atomic), so that the rebuilt entry can take its place and no reader sees it half-deleted
    doomed = path.with_name(f".damaged-{path.name}-{os.getpid()}-{threading.get_ident()}")
    try:
        os.replace(path, doomed)
    except OSError:  # another process moved or replaced it meanwhile
        return None
    shutil.rmtree(doomed, ignore_errors=True)
    return None


_pending_lock = threading.Lock()
_pending: dict[Path, tuple[threading.Thread, "ViewAssets"]] = {}


def flush_cache_writes(timeout: float | None = None) -> None:
    """Wait until the background asset-cache writes started so far have landed on disk."""
    with _pending_lock:
        threads = [t for t, _ in _pending.values()]
    for t in threads:
        t.join(timeout)


def _cache_store_background(path: Path, va: "ViewAssets") -> None:
    def work():
        try:
            _cache_store(path, va)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written costs speed, never the result
            log.warning("asset cache: could not write %s (%s); this mesh will be re-rendered next time. "
                        "Fix: make INTERACTVLM_CACHE_DIR writable", path, exc)
        finally:
            with _pending_lock:
                _pending.pop(path, None)

    # not a daemon: interpreter exit waits for the write instead of leaving a temp folder behind
    t = threading.Thread(target=work, name="asset-cache-write", daemon=False)
    with _pending_lock:
        _pending[path] = (t, va)
    t.start()


def _cache_store(path: Path, va: ViewAssets) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        c = va.compact
        for n, a in (("renders", va.renders), ("offsets", c.offsets), ("pix", c.pix), ("vid", c.vid), ("bary", c.bary),
                     ("fid", c.fid if c.fid is not None else np.zeros(0, np.int32))):
            np.save(tmp / f"{n}.npy", np.ascontiguousarray(a))
        (tmp / "meta.json").write_text(json.dumps({"size": list(c.size), "num_vertices": va.num_vertices,
                                                   "view_set": va.view_set.name, "key": va.key}))
        try:
            os.replace(tmp, path)
        except OSError:  # another process won the race
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def asset_key(vertices, faces, view_set, size: int, colors) -> str:
    from .render import RENDERER_VERSION

    vs = get_view_set(view_set)
    col = colors if isinstance(colors, str) else _hash_arrays(np.asarray(colors, np.float32))
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.asarray(vertices, np.float32)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(faces, np.int64)).tobytes())
    h.update(f"|{vs.key()}|{int(size)}|{col}|{RENDERER_VERSION}|{ASSET_CACHE_VERSION}".encode())
    return h.hexdigest()[:32]


def build_view_assets(vertices, faces, view_set="human", size: int = 1024, colors="normals", backend: str = "auto",
                      cache: bool = True) -> ViewAssets:
    """Render ``vertices [N,3]``/``faces [F,3]`` on ``view_set`` at ``size``² → ``ViewAssets``.

    ``colors``: ``"normals"`` (human ``norm`` input), ``"xyz"`` (object ``color`` input) or float [N,3] in [0,1].
    With ``cache`` the result is stored under ``paths.cache_dir("assets")/<key>/``; the key covers the mesh bytes,
    colours, view set, size and renderer version, so any change rebuilds (backends agree away from edges and
    share the cache)."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    va = _cached_or_rendered(vertices, faces, view_set, size, colors, backend, cache)
    va.mesh = (vertices, faces)  # on a cache hit too: models that predict per vertex of any mesh read it
    return va


def _cached_or_rendered(vertices, faces, view_set, size, colors, backend, cache) -> ViewAssets:
    """``build_view_assets`` without the mesh: the in-flight or on-disk cache entry, else a fresh render."""
    from .render import render_compact

    vs = get_view_set(view_set)
    size = int(size)
    if size < 8 or size > 4096:
        raise AssetError(f"size={size}: use 8..4096 (official assets are 1024)")
    key = asset_key(vertices, faces, vs, size, colors)
    root = _cache_root() if cache else None
    path = root / key if root is not None else None
    if path is not None:
        with _pending_lock:
            hit = _pending.get(path)
        if hit is not None:  # rendered moments ago, still being written
            return hit[1]
        if path.exists():  # an entry, or a damaged one (removed by _cache_load, so that the rebuild can replace it)
            va = _cache_load(path, vs, key)
            if va is not None:
                return va
    cols = _colors(colors, vertices, faces)
    from .render.raster_torch import cpu_threads

    with cpu_threads("cpu"):  # whole build single-threaded on CPU (see cpu_threads; identical results)
        images, compact, _, used = render_compact(vertices, faces, vs, size, vertex_colors=cols, backend=backend)
    va = ViewAssets(images, compact, len(vertices), vs, key, source=f"rendered:{used}")
    if path is not None:
        _cache_store_background(path, va)
    return va


def human_assets(body, size: int = 1024, view_set="human", backend: str = "auto", cache: bool = True) -> ViewAssets:
    """Assets of a ``BodyModel``'s canonical template (normal colours, spec 3.5)."""
    return build_view_assets(body.template_vertices, body.faces, view_set, size, colors="normals", backend=backend,
                             cache=cache)


def object_assets(mesh, size: int = 1024, view_set="object", backend: str = "auto", cache: bool = True) -> ViewAssets:
    """Assets of an object mesh (``objects.Mesh`` or (vertices, faces)): normalised (spec 3.6), xyz colours."""
    from .objects import normalize_mesh

    if isinstance(mesh, tuple):
        v, f = mesh
    else:
        v, f = mesh.vertices, mesh.faces
    return build_view_assets(normalize_mesh(np.asarray(v, np.float32)), f, view_set, size, colors="xyz",
                             backend=backend, cache=cache)
