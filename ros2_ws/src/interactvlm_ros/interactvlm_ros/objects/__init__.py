"""Object meshes: loading with validation, the official normalisation, a built-in labelled library.

* ``load_mesh(path, max_faces=1_000_000, on_too_many="decimate") -> Mesh`` — any format trimesh reads (obj, ply,
  stl, glb/gltf, off). OBJ vertex order is the file's ``v`` order (as PyTorch3D ``load_obj``, which the official
  lifting relies on — spec pitfall 15); nothing is merged or reordered. Validation (``MeshError`` naming the file
  and the fix): missing file, unsupported extension, unreadable, empty, NaN/inf vertices, face indices out of
  range. Degenerate faces (repeated index or zero area) are removed and the removal is logged. More than
  ``max_faces`` faces: decimated with quadric decimation (``fast_simplification`` through trimesh; vertex order is
  then new; logged) or, with ``on_too_many="error"``, a ``MeshError``. The pipeline and the reconstructor use
  meshes of at most ``PIPELINE_MAX_FACES`` (50 k) faces: a larger one (a photogrammetry / 3-D scanner mesh,
  0.5–2 M faces) is decimated once when loaded, a named fallback; its size and origin are kept.
* ``normalize_mesh(vertices)`` — spec 3.6: subtract the vertex mean, divide by the longest bbox side.
* ``lookup_object(label) -> ObjectEntry`` — the built-in library (``objects/data/catalog.json``; licences in
  ``objects/data/LICENSES.md``): canonical category, synonyms, mesh path, licence. Unknown labels return the
  generic stand-in mesh with ``known=False`` (and a logged fallback).
"""
from __future__ import annotations

import codecs
import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths

log = logging.getLogger(__name__)

DATA_DIR = paths.package_data("objects", "data")
CATALOG_PATH = DATA_DIR / "catalog.json"
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
MAX_FACES = 1_000_000
# faces of the object meshes the pipeline (renders, lifting, contact) and the reconstructor (fit, outputs) use: their
# cost grows with the mesh (a 1.3 M-face scan: reconstruction 5 min and 4.8 GB, vs 45 s and 1.1 GB at 50 k faces)
PIPELINE_MAX_FACES = 50_000
GENERIC = "generic"


class MeshError(ValueError):
    """A mesh file cannot be used; the message names the file and the fix."""


@dataclass
class Mesh:
    """vertices float32 [N,3] (file units, file order), faces int64 [F,3], source (path or description)."""

    vertices: np.ndarray
    faces: np.ndarray
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))


def validate_mesh(vertices, faces, source: str = "<array>", max_faces: int = MAX_FACES,
                  on_too_many: str = "decimate") -> Mesh:
    """Check/clean a (vertices [N,3], faces [F,3]) pair; see the module docstring for the rules."""
    if on_too_many not in ("decimate", "error"):
        raise ValueError(f"on_too_many={on_too_many!r}: use 'decimate' or 'error'")
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise MeshError(f"{source}: mesh has no vertices (shape {v.shape}); give a non-empty triangle mesh")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise MeshError(f"{source}: mesh has no triangle faces (shape {f.shape}); a point cloud is not supported — "
                        "give a triangle mesh (obj, ply, stl, glb)")
    if not np.issubdtype(f.dtype, np.integer):
        raise MeshError(f"{source}: face indices must be integers, got {f.dtype}")
    v64 = v.astype(np.float64)
    v = v.astype(np.float32)
    f = f.astype(np.int64)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(f"{source}: {int(bad.sum())} of {len(v)} vertices are NaN/inf (first at index "
                        f"{int(np.argmax(bad))}); repair the mesh (e.g. MeshLab 'Remove NaN/Inf vertices') and retry")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError(f"{source}: face indices out of range [0, {len(v)}) (min {f.min()}, max {f.max()}); "
                        "the file is corrupt — re-export it")
    # float32 vertices (renders, lifting, outputs) round a mesh far from its origin (a georeferenced scan, a part placed
    # in a large assembly): its shape is lost, and many faces become "degenerate"
    size = float(np.ptp(v64, axis=0).max())
    step = float(np.spacing(np.float32(np.abs(v64).max())))
    if size > 0 and step > 1e-2 * size:
        raise MeshError(f"{source}: the mesh is {size:.4g} across but lies {float(np.abs(v64).max()):.4g} from its "
                        f"origin; its float32 vertices would be rounded by {step:.3g} ({100 * step / size:.3g} % of "
                        "its size); move it to the origin (Blender 'Origin to Geometry' + clear location, MeshLab "
                        "'Transform: Translate' to the centre) and re-export")
    used = np.zeros(len(v), bool)
    used[f.ravel()] = True
    if not used.all():  # kept: the file's vertex order; but they count in the normalisation (vertex mean, longest side)
        grow = size / max(float(np.ptp(v64[used], axis=0).max()), 1e-30)
        log.warning("%s: %d of %d vertices are not used by any face; they are kept (the file's vertex order) and count "
                    "in the normalisation (vertex mean, longest side)%s; remove them (MeshLab 'Remove Unreferenced "
                    "Vertices', Blender 'Delete Loose')", source, int((~used).sum()), len(v),
                    f": the surface is only 1/{grow:.3g} of the rendered size" if grow > 1.05 else "")
    if len(f) > max_faces and on_too_many != "decimate":  # fail fast, before the per-face work
        raise MeshError(f"{source}: {len(f)} faces > max_faces={max_faces}; decimate it (e.g. MeshLab quadric "
                        "edge collapse, Blender 'Decimate') or call load_mesh(..., on_too_many='decimate')")
    info: dict = {}
    tri = v[f].astype(np.float64)
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = float(np.ptp(v, axis=0).max()) or 1.0
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    degenerate = repeated | (area2 <= (1e-12 * scale * scale))
    if degenerate.all():
        raise MeshError(f"{source}: all {len(f)} faces are degenerate (zero area or repeated vertex); "
                        "the mesh has no surface to render")
    if degenerate.any():
        log.warning("%s: removed %d degenerate faces (zero area or repeated vertex) of %d", source,
                    int(degenerate.sum()), len(f))
        f = f[~degenerate]
        info["removed_degenerate_faces"] = int(degenerate.sum())
    if len(f) > max_faces:
        info["decimated_from_faces"] = int(len(f))
        v, f = _decimate(v, f, max_faces, source)
        info["decimated_to_faces"] = int(len(f))
    return Mesh(v, f, source, info)


def _decimate(v: np.ndarray, f: np.ndarray, target: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import fast_simplification
    except ImportError as exc:
        raise MeshError(f"{source}: {len(f)} faces > {target}; decimating needs 'fast_simplification' "
                        "(pip install fast-simplification) — or decimate the file yourself") from exc
    reduction = 1.0 - target / len(f)
    v2, f2 = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int64), target_reduction=reduction)
    log.warning("fallback: %s: decimated %d → %d faces (quadric decimation, fast_simplification); vertex order "
                "changed", source, len(f), len(f2))
    return np.asarray(v2, np.float32), np.asarray(f2, np.int64)


def _obj_bytes(p: Path) -> bytes:
    """An OBJ file's bytes without its ``usemtl`` lines and a UTF-8 byte-order mark. trimesh splits an OBJ into one
    mesh per material, each with its own copy of the vertices (a two-material cube: 16 vertices, not the file's 8 —
    the ``v`` order the official lifting maps index is lost), and a BOM hides the first ``v`` line (every face then
    points one vertex off). Materials are not used here (renders are coloured by position)."""
    data = p.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return re.sub(rb"(?m)^[ \t]*usemtl\b[^\r\n]*", b"", data)


def load_mesh(path, max_faces: int = MAX_FACES, on_too_many: str = "decimate") -> Mesh:
    """Load and validate a triangle mesh file (obj, ply, stl, glb/gltf, off). Scenes are flattened with their
    transforms. OBJ keeps the ``v``-line vertex order (PyTorch3D ``load_obj`` order)."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise MeshError(f"mesh file '{path}' not found; give the path of an existing mesh "
                        f"({', '.join(MESH_EXTENSIONS)})")
    if not p.is_file():
        raise MeshError(f"mesh path '{path}' is not a file; give a mesh file ({', '.join(MESH_EXTENSIONS)})")
    ext = p.suffix.lower()
    if ext not in MESH_EXTENSIONS:
        raise MeshError(f"mesh file '{path}': unsupported extension '{ext}'; convert it to one of "
                        f"{', '.join(MESH_EXTENSIONS)}")
    if p.stat().st_size == 0:
        raise MeshError(f"mesh file '{path}' is empty (0 bytes); re-export the mesh")
    import trimesh

    kw = {"process": False}
    if ext == ".obj":
        kw.update(maintain_order=True, skip_materials=True)
    try:
        if ext == ".obj":  # read as one mesh in the file's v order (see _obj_bytes)
            m = trimesh.load(io.BytesIO(_obj_bytes(p)), file_type="obj", force="mesh", **kw)
        else:
            m = trimesh.load(str(p), force="mesh", **kw)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many kinds; name the file
        raise MeshError(f"mesh file '{path}' could not be read ({type(exc).__name__}: {exc}); check it is a valid "
                        f"{ext} file (open it in MeshLab/Blender) or convert it") from exc
    if not isinstance(m, trimesh.Trimesh) or m.vertices is None or len(m.vertices) == 0 or len(m.faces) == 0:
        raise MeshError(f"mesh file '{path}' contains no triangle mesh (empty, or only points/lines); "
                        "give a file with triangle faces")
    return validate_mesh(np.asarray(m.vertices), np.asarray(m.faces), str(p), max_faces, on_too_many)


def normalization(vertices) -> tuple[np.ndarray, float]:
    """Spec 3.6's normalisation of a mesh: (centre = vertex mean, not bbox centre; extent = longest bbox side).
    MeshError for a mesh of zero extent or with NaN vertices."""
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise MeshError(f"normalize_mesh: vertices must be [N,3] with N > 0, got {v.shape}")
    centre = v.mean(axis=0)
    c = v - centre
    ext = float((c.max(axis=0) - c.min(axis=0)).max())
    if not np.isfinite(ext) or ext <= 0:
        raise MeshError("normalize_mesh: the mesh has zero extent (all vertices coincide) or NaN vertices")
    return centre, ext


def normalize_mesh(vertices) -> np.ndarray:
    """Spec 3.6: centre = vertex mean (not bbox centre), then divide by the longest bbox side → float32 [N,3]."""
    centre, ext = normalization(vertices)
    return ((np.asarray(vertices, np.float64) - centre) / ext).astype(np.float32)


def similarity(scale: float, centre) -> np.ndarray:
    """4x4 ``x ↦ scale · (x − centre)``: the map from a mesh's own coordinates to the mesh centred and scaled (with
    :func:`normalization`'s centre and 1 / extent, to what :func:`normalize_mesh` gives)."""
    T = np.eye(4)
    T[:3, :3] *= scale
    T[:3, 3] = -scale * np.asarray(centre, np.float64)
    return T


# ------------------------------------------------------------------------------------------- library
@dataclass(frozen=True)
class ObjectEntry:
    """label (as asked), canonical category, mesh_path (str), known, licence, source, synonyms."""

    label: str
    canonical: str
    mesh_path: str
    known: bool
    licence: str = ""
    source: str = ""
    synonyms: tuple[str, ...] = ()


def _norm_label(label: str) -> str:
    # accents folded ('bòwl' → bowl; they were deleted: 'bwl'); letters of other scripts go (→ unknown, flagged)
    s = unicodedata.normalize("NFKD", str(label)).encode("ascii", "ignore").decode("ascii")
    s = s.strip().lower().replace("_", " ").replace("-", " ")
    # an apostrophe joins ("cup's" → cups); any other mark or space (tab, newline, '/', ',', '.') separates words: it was
    # deleted ("soccer\tball" → soccerball, "cup/mug" → cupmug: unknown, while the model read the words)
    s = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", re.sub(r"['`]", "", s))).strip()
    return re.sub(r"^(a|an|the|some) ", "", s)


class ObjectLibrary:
    """The labelled meshes of ``catalog.json`` (category → file, synonyms, licence)."""

    def __init__(self, catalog_path: Path | str = CATALOG_PATH):
        self.catalog_path = Path(catalog_path)
        if not self.catalog_path.is_file():
            raise MeshError(f"object catalog {self.catalog_path} is missing; regenerate it with "
                            "'python -m interactvlm_ros.objects.make_library'")
        self.entries: dict[str, dict] = json.loads(self.catalog_path.read_text())["objects"]
        self._index: dict[str, str] = {}
        for name, e in self.entries.items():
            for key in [name] + list(e.get("synonyms", [])):
                self._index.setdefault(_norm_label(key), name)
        if GENERIC not in self.entries:
            raise MeshError(f"{self.catalog_path}: no '{GENERIC}' fallback entry")

    @property
    def categories(self) -> list[str]:
        return sorted(n for n in self.entries if n != GENERIC)

    def _entry(self, label: str, name: str, known: bool) -> ObjectEntry:
        e = self.entries[name]
        return ObjectEntry(label, name, str(self.catalog_path.parent / e["file"]), known, e.get("licence", ""),
                           e.get("source", ""), tuple(e.get("synonyms", [])))

    def resolve(self, label: str) -> str | None:
        """Canonical category of a label (synonyms, articles, plural 's'/'es'/'ves'), or None; then its last word, also
        singularised ('red cups' → cup)."""
        key = _norm_label(label)
        for word in (key, key.split(" ")[-1] if " " in key else None):
            if not word:
                continue
            ves = word[:-3] if word.endswith("ves") else None  # knives → knife, shelves → shelf
            for cand in (word, word[:-1] if word.endswith("s") else None, word[:-2] if word.endswith("es") else None,
                         ves and ves + "fe", ves and ves + "f"):
                if cand and cand in self._index:
                    return self._index[cand]
        return None

    def lookup(self, label: str) -> ObjectEntry:
        name = self.resolve(label)
        if name is None or name == GENERIC:
            log.warning("fallback: object label %r is not in the object library; using the generic stand-in mesh "
                        "(pass the object's own mesh for a meaningful result)", label)
            return self._entry(str(label), GENERIC, False)
        return self._entry(str(label), name, True)


_LIBRARY: ObjectLibrary | None = None


def library() -> ObjectLibrary:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = ObjectLibrary()
    return _LIBRARY


def lookup_object(label: str) -> ObjectEntry:
    """Library entry for a label; unknown labels → the generic mesh with ``known=False`` (logged)."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"object label must be a non-empty string, got {label!r}")
    return library().lookup(label)


__all__ = ["GENERIC", "PIPELINE_MAX_FACES", "Mesh", "MeshError", "ObjectEntry", "ObjectLibrary", "library", "load_mesh",
           "lookup_object", "normalization", "normalize_mesh", "similarity", "validate_mesh"]
