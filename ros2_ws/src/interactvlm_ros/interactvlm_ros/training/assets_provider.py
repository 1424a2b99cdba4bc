"""View assets (renders + lifting maps) for the template body and every object mesh of a dataset.

Built with the core's ``assets.build_view_assets`` (disk-cached there) when importable, i.e. exactly
what the pipeline feeds the localizer at inference; otherwise with ``fallback_assets.map_assets``
(logged). Meshes: the human template from ``bodies.get_body_model`` (else the synthetic generator's
own Vitruvian template, logged), each object from the dataset's ``objects/<object_id>.npz``
(normalised mesh written by the generator), else ``meta["objects"]``, else the object library.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DatasetError
from .fallback_assets import map_assets, warn_once

log = logging.getLogger(__name__)


@dataclass
class SimpleMesh:
    template_vertices: np.ndarray
    faces: np.ndarray
    source: str
    part_ids: np.ndarray | None = None
    part_names: list | None = None

    @property
    def vertices(self):
        return self.template_vertices

    @property
    def num_vertices(self) -> int:
        return len(self.template_vertices)


def template_hash(vertices, faces) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(vertices, np.float32).round(5)).tobytes()
                        + np.asarray(faces, np.int64).tobytes()).hexdigest()[:16]


def human_template(body: str = "anny") -> SimpleMesh:
    try:
        from .. import bodies

        b = bodies.get_body_model(body)
        return SimpleMesh(np.asarray(b.template_vertices, np.float32), np.asarray(b.faces, np.int64), f"bodies:{body}",
                          np.asarray(b.part_labels, np.int64), list(b.part_names))
    except ImportError as exc:
        warn_once(f"interactvlm_ros.bodies unavailable ({exc}); human template from synth.generator.Templates")
    from ..synth.generator import Templates

    t = Templates()
    from ..synth.anny_body import COARSE_PARTS

    return SimpleMesh(np.asarray(t.template_vertices, np.float32), np.asarray(t.faces, np.int64), t.template_source,
                      np.asarray(t.parts, np.int64), list(COARSE_PARTS))


def build_assets(vertices, faces, kind: str, size: int):
    try:
        from .. import assets
        from ..views import get_view_set
    except ImportError:
        return map_assets(vertices, faces, kind, size)
    colors = "xyz"
    return assets.build_view_assets(np.asarray(vertices, np.float32), np.asarray(faces, np.int64), get_view_set(kind),
                                    size, colors=colors)


def _catalog_has(category: str) -> bool:
    try:
        from ..synth import catalog
    except ImportError:
        return False
    return category in catalog.CATEGORIES


class AssetProvider:
    def __init__(self, root: str | Path, meta: dict, asset_size: int, body: str = "anny"):
        self.root = Path(root)
        self.meta = meta
        self.asset_size = int(asset_size)
        self.body_spec = body
        self._human = None
        self._body = None
        self._objects: dict[str, object] = {}
        self._meshes: dict[str, SimpleMesh] = {}

    @property
    def body(self) -> SimpleMesh:
        if self._body is None:
            self._body = human_template(self.body_spec)
            want = (self.meta.get("body") or {}).get("template_hash")
            got = template_hash(self._body.template_vertices, self._body.faces)
            if want and want != got:
                log.warning("human template %s (hash %s) differs from the dataset's (%s): GT view masks were made on "
                            "another template", self._body.source, got, want)
        return self._body

    def human(self):
        if self._human is None:
            self._human = build_assets(self.body.template_vertices, self.body.faces, "human", self.asset_size)
        return self._human

    def object_mesh(self, object_id: str, category: str) -> SimpleMesh:
        if object_id in self._meshes:
            return self._meshes[object_id]
        p = self.root / "objects" / f"{object_id}.npz"
        if p.is_file():
            with np.load(p) as z:
                m = SimpleMesh(np.asarray(z["vertices"], np.float32), np.asarray(z["faces"], np.int64), str(p))
        elif (self.meta.get("generator_version") or "synth-").startswith("synth-") and _catalog_has(category):
            # the generator writes objects/ when it finishes; until then its catalogue gives the same mesh
            from ..synth import catalog

            v, f = catalog.normalized_mesh(category)
            m = SimpleMesh(np.asarray(v, np.float32), np.asarray(f, np.int64), f"synth.catalog:{category}")
        else:
            entry = (self.meta.get("objects") or {}).get(object_id)
            path = None
            if isinstance(entry, dict):
                path = entry.get("mesh_path") or entry.get("mesh") or entry.get("path")
            elif isinstance(entry, str):
                path = entry
            from .. import objects

            if path is None:
                e = objects.lookup_object(category)
                path = getattr(e, "mesh_path", None)
                if path is None:
                    raise DatasetError(f"object '{object_id}' (category '{category}'): no objects/{object_id}.npz, "
                                       "no mesh in meta.json 'objects' and none in the object library")
            path = Path(path) if Path(path).is_absolute() else self.root / path
            mesh = objects.load_mesh(str(path))
            m = SimpleMesh(np.asarray(objects.normalize_mesh(mesh.vertices), np.float32), np.asarray(mesh.faces), str(path))
        self._meshes[object_id] = m
        return m

    def object(self, object_id: str, category: str):
        if object_id not in self._objects:
            m = self.object_mesh(object_id, category)
            self._objects[object_id] = build_assets(m.template_vertices, m.faces, "object", self.asset_size)
        return self._objects[object_id]
