"""The official InteractVLM view sets and the PyTorch3D camera maths (spec 3.1-3.3).

Conventions (PyTorch3D, reproduced exactly because the lifting maps and the camera code depend on them):

* ``look_at_view_transform(dist, elev, azim)`` (degrees, target origin, up +y): camera centre
  ``C = dist·(cos e·sin a, sin e, cos e·cos a)``; camera axes z = normalize(−C), x = normalize(up × z),
  y = z × x; ``R`` has these axes as **columns**; world→view is the row-vector map ``X_view = X·R + T``
  with ``T = −Rᵀ·C``.
* Offsets: ``T[1] += y_off`` (content moves **up** in the image), ``T[0] += x_off`` (view-space shift).
* ``FoVPerspectiveCameras`` defaults: vertical fov 60°, aspect 1, znear 1, zfar 100.
  NDC: +X left, +Y up, +Z into the scene; pixel (0, 0) is the top-left; pixel centres at
  ``ndc = 1 − (2·i + 1)/S`` (column i ↔ ndc x, row i ↔ ndc y).

Hand-written (numpy) because PyTorch3D is not a dependency; the formulas are PyTorch3D's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FOV_DEG = 60.0
ZNEAR = 1.0
ZFAR = 100.0


@dataclass(frozen=True)
class ViewSpec:
    """One fixed camera: distance, elevation/azimuth (degrees), view-space offsets, point-light location (world)."""

    name: str
    dist: float
    elev: float
    azim: float
    x_off: float = 0.0
    y_off: float = 0.0
    light_location: tuple[float, float, float] = (0.0, 0.0, 3.0)

    def cam_vector(self, encoded_dist: float | None = None) -> np.ndarray:
        """Official 5-number camera code ``(d/10, elev/360, azim/360, (x+1)/2, (y+1)/2)`` float32 [5]
        (spec 2.1; angles are not wrapped: elev 315 → 0.875)."""
        d = self.dist if encoded_dist is None else encoded_dist
        return np.array([d / 10.0, self.elev / 360.0, self.azim / 360.0, (self.x_off + 1) / 2, (self.y_off + 1) / 2],
                        np.float32)


@dataclass(frozen=True)
class ViewSet:
    """Ordered views (order = SAM stacking order = lifting-table order) + the distance the camera code encodes."""

    name: str
    views: tuple[ViewSpec, ...]
    encoded_dist: float | None = None

    def cam_params(self) -> np.ndarray:
        """float32 [V, 5]: the official camera vectors, with the *encoded* distance (spec pitfall 2)."""
        return np.stack([v.cam_vector(self.encoded_dist) for v in self.views]).astype(np.float32)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.views)

    def __len__(self) -> int:
        return len(self.views)

    def __iter__(self):
        return iter(self.views)

    def key(self) -> str:
        """Stable text identity (used in cache keys)."""
        parts = [f"{v.name}:{v.dist:g},{v.elev:g},{v.azim:g},{v.x_off:g},{v.y_off:g},{v.light_location}" for v in self.views]
        return f"{self.name}|enc={self.encoded_dist}|" + ";".join(parts)


# spec 3.2 — lights indexed in the official scripts by (topfront, topback, bottomfront, bottomback)
#            = (0,0,3), (0,0,-3), (0,0,-3), (0,0,3)
_HUMAN = (
    ViewSpec("topfront", 2.0, 45, 315, 0.0, 0.0, (0.0, 0.0, 3.0)),
    ViewSpec("bottomfront", 2.0, 315, 315, 0.0, 0.3, (0.0, 0.0, -3.0)),
    ViewSpec("topback", 2.0, 45, 135, 0.0, 0.0, (0.0, 0.0, -3.0)),
    ViewSpec("bottomback", 2.0, 315, 135, 0.0, 0.3, (0.0, 0.0, 3.0)),
)


def _object_views(dist: float) -> tuple[ViewSpec, ...]:
    # spec 3.3/3.4 — lights by (frontleft, frontright, backleft, backright) = (0,0,3), (0,0,3), (0,0,-3), (0,0,-3)
    return (
        ViewSpec("frontleft", dist, 45, 315, 0.0, 0.0, (0.0, 0.0, 3.0)),
        ViewSpec("frontright", dist, 45, 45, 0.0, 0.0, (0.0, 0.0, 3.0)),
        ViewSpec("backleft", dist, 330, 135, 0.0, 0.0, (0.0, 0.0, -3.0)),
        ViewSpec("backright", dist, 330, 225, 0.0, 0.0, (0.0, 0.0, -3.0)),
    )


HUMAN = ViewSet("human", _HUMAN, 2.0)
# demo objects (run_demo generate_sam_inp_objs): rendered at 1.5 but encoded with the 2.0 vectors (pitfall 2)
OBJECT = ViewSet("object", _object_views(1.5), 2.0)
# PICO training meshes: rendered at 1.5 and encoded with mesh_cam_params (1.5)
OBJECT_MESH = ViewSet("object_mesh", _object_views(1.5), 1.5)
# point-cloud sets (PIAD) rendered and encoded at 2.0
OBJECT_D2 = ViewSet("object_d2", _object_views(2.0), 2.0)

_ALIASES = {
    "human": HUMAN,
    "4MV-Z_Vitru": HUMAN,
    "4MV-Z_Vitru_mv2": HUMAN,
    "4MV-Z_Vitru_FootGround": HUMAN,
    "4MV-Z_Vitru_wScene": HUMAN,
    "object": OBJECT,
    "demo_object": OBJECT,
    # official object keys: the demo path renders meshes at 1.5 and encodes cam_params (2.0) -> "object"
    "4MV-Z_HM": OBJECT,
    "4MV-Z_HM_BM": OBJECT,
    "4MV-Z_HM_BM-L": OBJECT,
    "4MV-Z_HM1": OBJECT,
    "4MV-Z_HM2": OBJECT,
    "4MV-Z_HM_MeshInf": OBJECT,
    "4MV-Z_Fix": OBJECT,
    "object_mesh": OBJECT_MESH,
    "object_d2": OBJECT_D2,
}


def available_view_sets() -> list[str]:
    return sorted(_ALIASES)


def get_view_set(name: "str | ViewSet") -> ViewSet:
    """``"human"`` (= ``4MV-Z_Vitru``), ``"object"`` (demo: rendered 1.5, encoded 2.0), ``"object_mesh"``
    (1.5/1.5, PICO), ``"object_d2"`` (2.0/2.0) or an official key (see ``available_view_sets()``)."""
    if isinstance(name, ViewSet):
        return name
    try:
        return _ALIASES[str(name)]
    except KeyError:
        raise ValueError(f"unknown view set {name!r}; use one of {available_view_sets()}") from None


# ----------------------------------------------------------------------------------------- camera maths
def camera_center(dist: float, elev: float, azim: float) -> np.ndarray:
    e, a = math.radians(elev), math.radians(azim)
    return dist * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)], np.float64)


def look_at_view_transform(dist: float, elev: float, azim: float) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D ``look_at_view_transform`` (one camera, degrees) → ``R`` float64 [3,3], ``T`` float64 [3]
    with ``X_view = X·R + T``."""
    C = camera_center(dist, elev, azim)
    z = -C / np.linalg.norm(C)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    if np.linalg.norm(x) < 1e-5:  # PyTorch3D: up parallel to the view axis -> x from the default
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    y = y / np.linalg.norm(y)
    R = np.stack([x, y, z], axis=1)
    T = -R.T @ C
    return R, T


def view_transform(view: ViewSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(R, T)`` of a view including its offsets (``T[0] += x_off``, ``T[1] += y_off``)."""
    R, T = look_at_view_transform(view.dist, view.elev, view.azim)
    T = T.copy()
    T[0] += view.x_off
    T[1] += view.y_off
    return R, T


def camera_position(view: ViewSpec) -> np.ndarray:
    """World position of the (offset) camera centre: the point mapped to view-space 0 (= −R·T)."""
    R, T = view_transform(view)
    return -R @ T


def fov_projection(fov_deg: float = FOV_DEG, znear: float = ZNEAR, zfar: float = ZFAR, aspect: float = 1.0) -> np.ndarray:
    """PyTorch3D ``FoVPerspectiveCameras`` projection matrix (column-vector form, float64 [4,4]):
    ``ndc_x = x·s/z``, ``ndc_y = y·s/z`` with ``s = 1/tan(fov/2)``; ``ndc_z = zfar/(zfar−znear) − zfar·znear/((zfar−znear)·z)``."""
    s = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    P = np.zeros((4, 4))
    P[0, 0] = s / aspect
    P[1, 1] = s
    P[2, 2] = zfar / (zfar - znear)
    P[2, 3] = -(zfar * znear) / (zfar - znear)
    P[3, 2] = 1.0
    return P


def world_to_view(points: np.ndarray, view: ViewSpec) -> np.ndarray:
    """points [N,3] world → [N,3] view space (z = depth along the optical axis)."""
    R, T = view_transform(view)
    return np.asarray(points, np.float64) @ R + T


def project_points(points: np.ndarray, view: ViewSpec, size: int, fov_deg: float = FOV_DEG) -> tuple[np.ndarray, np.ndarray]:
    """points [N,3] world → (pixel coords [N,2] float64 (col, row) with pixel centres at i+0.5, depth [N]).

    NDC +X left / +Y up: ``col = (1 − ndc_x)·S/2``, ``row = (1 − ndc_y)·S/2``."""
    pv = world_to_view(points, view)
    s = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    z = pv[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc_x = pv[:, 0] * s / z
        ndc_y = pv[:, 1] * s / z
    px = np.stack([(1.0 - ndc_x) * size / 2.0, (1.0 - ndc_y) * size / 2.0], axis=1)
    return px, z
