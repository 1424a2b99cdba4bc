"""Procedural object meshes (licence-free, CC0) for categories a robot meets, built with ``trimesh.creation``.

Every builder returns a ``trimesh.Trimesh`` in metres, **y up** (the body/world frame of the views), resting
on y = 0, front towards +z. ``make_library`` refines them (edges ≤ 7 % of the longest side) so per-vertex
contact has a useful resolution, and writes them to ``objects/data/<name>.ply``. Shapes are coarse on
purpose: what matters for InteractVLM's object views is the silhouette and the part layout (handle, seat,
screen …), not detail. Used only offline (library generation); nothing here runs on the hot path.
"""
from __future__ import annotations

import numpy as np

Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]])  # z-axis primitives → y-axis


def _tm():
    import trimesh

    return trimesh


def box(ext, centre=(0, 0, 0)):
    m = _tm().creation.box(extents=ext)
    m.apply_translation(centre)
    return m


X_FROM_Z = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1.0]])  # z-axis primitives → x-axis


def _orient(m, axis: str, centre):
    """Turn a z-axis trimesh primitive onto ``axis`` ("z" | "y" | "x") and move it to ``centre``."""
    if axis == "y":
        m.apply_transform(Y_UP)
    elif axis == "x":
        m.apply_transform(X_FROM_Z)
    m.apply_translation(centre)
    return m


def cyl(r, h, centre=(0, 0, 0), axis="y", sections=32):
    m = _tm().creation.cylinder(radius=r, height=h, sections=sections)  # along z
    return _orient(m, axis, centre)


def torus(R, r, centre=(0, 0, 0), axis="z", major=48, minor=16):
    m = _tm().creation.torus(major_radius=R, minor_radius=r, major_sections=major, minor_sections=minor)  # ring ⟂ z
    return _orient(m, axis, centre)


def cat(parts):
    return _tm().util.concatenate(parts)


def on_floor(m):
    m.apply_translation((0, -m.bounds[0, 1], 0))
    return m


# ------------------------------------------------------------------------------------------ categories
def ball():
    return on_floor(_tm().creation.icosphere(subdivisions=4, radius=0.11))


def cup():
    """Mug: open-looking cylinder body (closed mesh) + a handle (half torus) on +x."""
    body = cyl(0.04, 0.10, (0, 0.05, 0), sections=48)
    handle = torus(0.028, 0.007, (0.045, 0.05, 0), axis="z")
    return on_floor(cat([body, handle]))


def bowl():
    trimesh = _tm()
    prof = np.array([[0.0, 0.0], [0.05, 0.0], [0.08, 0.03], [0.085, 0.06], [0.075, 0.06], [0.07, 0.032],
                     [0.045, 0.01], [0.0, 0.01]])
    m = trimesh.creation.revolve(prof, sections=48)  # around z
    m.apply_transform(Y_UP)
    return on_floor(m)


def phone():
    return on_floor(box((0.072, 0.15, 0.008), (0, 0.075, 0)))


def laptop():
    base = box((0.32, 0.018, 0.22), (0, 0.009, 0))
    screen = box((0.32, 0.21, 0.008))
    a = np.radians(105.0)  # opened 105°
    R = np.array([[1, 0, 0, 0], [0, np.cos(a - np.pi / 2), -np.sin(a - np.pi / 2), 0],
                  [0, np.sin(a - np.pi / 2), np.cos(a - np.pi / 2), 0], [0, 0, 0, 1.0]])
    screen.apply_translation((0, 0.105, 0))
    screen.apply_transform(R)
    screen.apply_translation((0, 0.018, -0.11))
    return on_floor(cat([base, screen]))


def book():
    return on_floor(box((0.16, 0.24, 0.035), (0, 0.12, 0)))


def cardboard_box():
    return on_floor(box((0.4, 0.3, 0.3), (0, 0.15, 0)))


def chair():
    seat = box((0.45, 0.04, 0.45), (0, 0.45, 0))
    back = box((0.45, 0.45, 0.04), (0, 0.695, -0.205))
    legs = [box((0.04, 0.43, 0.04), (sx * 0.2, 0.215, sz * 0.2)) for sx in (-1, 1) for sz in (-1, 1)]
    return on_floor(cat([seat, back] + legs))


def table():
    top = box((1.2, 0.04, 0.7), (0, 0.73, 0))
    legs = [box((0.05, 0.71, 0.05), (sx * 0.55, 0.355, sz * 0.3)) for sx in (-1, 1) for sz in (-1, 1)]
    return on_floor(cat([top] + legs))


def bench():
    seat = box((1.4, 0.05, 0.35), (0, 0.45, 0))
    legs = [box((0.05, 0.43, 0.3), (sx * 0.6, 0.215, 0)) for sx in (-1, 1)]
    return on_floor(cat([seat] + legs))


def bicycle():
    """Side view along x: two wheels (tori ⟂ z), frame tubes, seat, handlebar."""
    r = 0.34
    wheels = [torus(r, 0.02, (sx * 0.52, r, 0), axis="z", major=64) for sx in (-1, 1)]
    hub_back, hub_front = np.array([-0.52, r, 0]), np.array([0.52, r, 0])
    crank, seat_top, head_top = np.array([-0.05, 0.32, 0]), np.array([-0.2, 0.85, 0]), np.array([0.4, 0.88, 0])

    def tube(a, b, rad=0.018):
        trimesh = _tm()
        return trimesh.creation.cylinder(radius=rad, segment=np.stack([a, b]), sections=12)

    tubes = [tube(hub_back, crank), tube(crank, seat_top), tube(hub_back, seat_top), tube(seat_top, head_top),
             tube(crank, head_top), tube(head_top, hub_front), tube(head_top + [0, 0.08, -0.25], head_top + [0, 0.08, 0.25])]
    seat = box((0.24, 0.05, 0.12), seat_top + [0, 0.04, 0])
    return on_floor(cat(wheels + tubes + [seat]))


def skateboard():
    deck = box((0.8, 0.02, 0.21), (0, 0.09, 0))
    wheels = [cyl(0.027, 0.03, (sx * 0.28, 0.027, sz * 0.08), axis="z", sections=20) for sx in (-1, 1) for sz in (-1, 1)]
    trucks = [box((0.05, 0.05, 0.16), (sx * 0.28, 0.055, 0)) for sx in (-1, 1)]
    return on_floor(cat([deck] + wheels + trucks))


def backpack():
    trimesh = _tm()
    body = trimesh.creation.capsule(height=0.3, radius=0.13, count=[32, 16])  # along z
    body.apply_transform(Y_UP)
    body.apply_scale((1.0, 1.0, 0.6))
    body.apply_translation((0, 0.28, 0))
    pocket = box((0.2, 0.16, 0.06), (0, 0.2, 0.09))
    straps = [torus(0.12, 0.012, (sx * 0.08, 0.3, -0.08), axis="x") for sx in (-1, 1)]
    for s in straps:
        s.apply_scale((1.0, 1.0, 0.4))
    return on_floor(cat([body, pocket] + straps))


def umbrella():
    trimesh = _tm()
    canopy = trimesh.creation.cone(radius=0.5, height=0.25, sections=48)  # apex +z
    canopy.apply_transform(Y_UP)
    canopy.apply_translation((0, 0.75, 0))
    shaft = cyl(0.008, 0.85, (0, 0.425, 0), sections=12)
    handle = torus(0.04, 0.01, (0.04, 0.02, 0), axis="z")
    return on_floor(cat([canopy, shaft, handle]))


def knife():
    blade = box((0.18, 0.03, 0.002), (0.09, 0, 0))
    handle = box((0.11, 0.022, 0.016), (-0.055, 0, 0))
    return on_floor(cat([blade, handle]))


def racket():
    head = torus(0.12, 0.012, (0, 0.45, 0), axis="z", major=48)
    head.apply_scale((0.8, 1.0, 1.0))
    head.apply_translation((0, 0.45 * (1 - 1.0), 0))
    strings = box((0.17, 0.22, 0.004), (0, 0.45, 0))
    handle = cyl(0.015, 0.33, (0, 0.165, 0), sections=16)
    return on_floor(cat([head, strings, handle]))


def bat():
    trimesh = _tm()
    prof = np.array([[0.0, 0.0], [0.018, 0.0], [0.015, 0.02], [0.013, 0.3], [0.03, 0.6], [0.033, 0.8],
                     [0.03, 0.84], [0.0, 0.84]])
    m = trimesh.creation.revolve(prof, sections=32)
    m.apply_transform(Y_UP)
    return on_floor(m)


def frisbee():
    trimesh = _tm()
    prof = np.array([[0.0, 0.02], [0.1, 0.02], [0.13, 0.0], [0.125, -0.005], [0.1, 0.012], [0.0, 0.012]])
    m = trimesh.creation.revolve(prof, sections=48)
    m.apply_transform(Y_UP)
    return on_floor(m)


def suitcase():
    body = box((0.42, 0.6, 0.24), (0, 0.32, 0))
    handle = torus(0.06, 0.01, (0, 0.62, 0), axis="z")
    wheels = [cyl(0.02, 0.02, (sx * 0.17, 0.02, -0.09), axis="x", sections=16) for sx in (-1, 1)]
    return on_floor(cat([body, handle] + wheels))


def _dome(radius, flat):
    """Closed half-ellipsoid, flat side down (y up)."""
    trimesh = _tm()
    sph = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    v = sph.vertices.copy()
    v[:, 1] = np.maximum(v[:, 1], 0.0) * flat
    m = trimesh.Trimesh(v, sph.faces, process=True)
    m.update_faces(m.nondegenerate_faces())
    return m


def hat():
    crown = _dome(0.095, 0.9)
    brim = cyl(0.15, 0.008, (0, 0.004, 0), sections=48)
    return on_floor(cat([crown, brim]))


def helmet():
    shell = _dome(0.13, 1.0)
    shell.apply_scale((1.0, 1.0, 1.2))
    return on_floor(shell)


def cabinet():
    body = box((0.8, 1.8, 0.45), (0, 0.9, 0))
    handles = [box((0.02, 0.2, 0.03), (sx * 0.05, 1.0, 0.235)) for sx in (-1, 1)]
    return on_floor(cat([body] + handles))


def generic():
    """Stand-in for unknown labels: a rounded box (capsule squashed), neither ball nor box."""
    trimesh = _tm()
    m = trimesh.creation.capsule(height=0.1, radius=0.08, count=[32, 16])
    m.apply_scale((1.0, 0.7, 1.0))
    m.apply_transform(Y_UP)
    return on_floor(m)


BUILDERS = {
    "ball": ball, "cup": cup, "bowl": bowl, "phone": phone, "laptop": laptop, "book": book, "box": cardboard_box,
    "chair": chair, "table": table, "bench": bench, "bicycle": bicycle, "skateboard": skateboard,
    "backpack": backpack, "umbrella": umbrella, "knife": knife, "racket": racket, "bat": bat, "frisbee": frisbee,
    "suitcase": suitcase, "hat": hat, "helmet": helmet, "cabinet": cabinet, "generic": generic,
}
