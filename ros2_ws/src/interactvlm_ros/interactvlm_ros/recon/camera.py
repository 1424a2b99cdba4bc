"""Camera intrinsics and depth input handling for the reconstruction (camera optical frame, metres).

Frame: REP 103 camera *optical* frame — x right, y down, z forward (out of the lens); pixel (u, v) with
u right / v down, pixel centres at integer coordinates (``u = fx·x/z + cx``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: default focal length factor when no CameraInfo is given: fx = fy = DEFAULT_FOCAL_FACTOR · max(W, H)
#: (≈ 45° horizontal field of view on a 4:3 image — a typical webcam / RGB-D colour camera).
DEFAULT_FOCAL_FACTOR = 1.2


class IntrinsicsError(ValueError):
    """Nonsensical intrinsics (status ``bad_intrinsics``)."""


class DepthError(ValueError):
    """Unusable depth image (status ``bad_depth``)."""


def default_intrinsics(height: int, width: int, hfov_deg: float | None = None) -> np.ndarray:
    """K [3,3] used when the caller has no CameraInfo: fx = fy = 1.2·max(W, H), principal point at the
    image centre ((W−1)/2, (H−1)/2). Documented in docs/reconstruction.md; a metric result needs the real K.
    ``hfov_deg``: that horizontal field of view instead (fx = fy = W / (2 tan(hfov/2)); ``interactvlm-replay --hfov``)."""
    if hfov_deg is None:
        f = DEFAULT_FOCAL_FACTOR * float(max(width, height))
    else:
        f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def parse_K(text: str) -> np.ndarray:
    """``"fx,fy,cx,cy"`` → K [3,3] (CLI ``--K``)."""
    try:
        fx, fy, cx, cy = (float(x) for x in str(text).split(","))
    except ValueError as exc:
        raise IntrinsicsError(f"--K {text!r}: expected four comma-separated numbers fx,fy,cx,cy") from exc
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def validate_K(K, height: int, width: int) -> np.ndarray:
    """Return K as float64 [3,3] or raise IntrinsicsError naming what is wrong.

    Accepted: finite, fx, fy > 0, skew 0 (|K01| ≤ 1e-3·fx), last row (0,0,1), aspect fx/fy in [0.5, 2],
    field of view between 5° and 170° horizontally, principal point within the image ± half its size."""
    try:
        K = np.asarray(K, np.float64)
    except (TypeError, ValueError) as exc:
        raise IntrinsicsError(f"K is not numeric: {exc}") from exc
    if K.shape == (4,):
        K = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1.0]])
    if K.shape == (9,):
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise IntrinsicsError(f"K has shape {K.shape}; expected 3x3 (CameraInfo.k) or fx,fy,cx,cy")
    if not np.all(np.isfinite(K)):
        raise IntrinsicsError("K contains NaN/inf; pass the camera's CameraInfo.k")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise IntrinsicsError(f"K has fx={fx}, fy={fy}; focal lengths must be > 0 pixels")
    if not np.allclose(K[2], [0, 0, 1]) or abs(K[1, 0]) > 1e-6:
        raise IntrinsicsError(f"K last row is {K[2].tolist()}; expected [0, 0, 1] (a pinhole CameraInfo.k)")
    if abs(K[0, 1]) > 1e-3 * fx:
        raise IntrinsicsError(f"K has skew {K[0, 1]}; a skewed camera is not supported")
    if not 0.5 <= fx / fy <= 2.0:
        raise IntrinsicsError(f"K has fx/fy = {fx / fy:.3f}; expected close to 1 (check the units of K)")
    fov = np.degrees(2 * np.arctan(0.5 * width / fx))
    if not 5.0 <= fov <= 170.0:
        raise IntrinsicsError(
            f"K gives a {fov:.1f}° horizontal field of view for a {width}-px wide image; expected 5°..170° "
            "(is K for another resolution?)")
    if not (-0.5 * width <= cx <= 1.5 * width and -0.5 * height <= cy <= 1.5 * height):
        raise IntrinsicsError(f"K principal point ({cx:.1f}, {cy:.1f}) is far outside the {width}x{height} image")
    return K


def load_depth(path: str | Path, scale: float | None = None) -> np.ndarray:
    """Depth image → float32 [H,W] metres (0 = invalid).

    Units unless ``scale`` is given follow the ROS depth encodings for every format: integer depth is millimetres
    (``16UC1``: ``scale`` = 0.001 — a RealSense/Kinect frame saved with ``numpy.save`` or as a 16-bit PNG), float depth
    is metres (``32FC1``); 8-bit depth (at most 255 mm: a visualisation) only with a ``scale``. ``.npy`` is read
    without unpickling (a corrupt file or an object/string array is a ``DepthError``); ``.png``/``.tif`` through
    OpenCV."""
    p = Path(path)
    if not p.is_file():
        raise DepthError(f"depth file {p} does not exist")
    if p.suffix.lower() == ".npy":
        try:
            d = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # corrupt, truncated, or pickled objects (never unpickled)
            why = ("corrupt, or pickled Python objects" if "pickle" in str(exc).lower() else str(exc))
            raise DepthError(f"depth file {p} is not a numeric .npy depth array ({why}); save a float32 HxW array "
                             "in metres with numpy.save") from None
        if not isinstance(d, np.ndarray) or d.dtype.kind not in "uif":
            raise DepthError(f"depth file {p} is not a numeric .npy depth array (dtype "
                             f"{getattr(d, 'dtype', type(d).__name__)}); save a float32 HxW array in metres")
    else:
        import cv2

        d = cv2.imread(str(p), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
        if d is None:
            raise DepthError(f"depth file {p} cannot be read (expected a 16-bit PNG in mm or a .npy in m)")
        if d.ndim == 3:
            raise DepthError(f"depth file {p} has {d.shape[2]} channels; expected a single-channel depth image")
    if scale is None and d.dtype.itemsize == 1:  # as mm it would be 0..0.255 m everywhere: silently wrong depth
        raise DepthError(f"depth file {p} is 8-bit (a depth visualisation, or depth that lost its units); save depth as a "
                         "16-bit PNG in mm or a .npy/.tif in m, or give its metres per unit (--depth-scale)")
    s = (0.001 if d.dtype.kind in "ui" else 1.0) if scale is None else float(scale)
    return d.astype(np.float32) * s


def validate_depth(depth, height: int, width: int, min_valid_fraction: float = 0.01) -> np.ndarray:
    """Return depth as float32 [H,W] metres with invalid pixels (NaN, inf, ≤ 0, > 20 m) set to 0, or raise DepthError."""
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise DepthError(f"depth has shape {d.shape}; expected HxW")
    if d.shape != (height, width):
        raise DepthError(f"depth is {d.shape[1]}x{d.shape[0]} but the image is {width}x{height}; "
                         "register depth to the colour camera first")
    d = d.astype(np.float32)
    bad = ~np.isfinite(d) | (d <= 0) | (d > 20.0)
    d = np.where(bad, 0.0, d).astype(np.float32)
    frac = 1.0 - bad.mean()
    if frac < min_valid_fraction:
        raise DepthError(f"depth has only {100 * frac:.2f}% valid pixels (all zero/NaN?); "
                         "check the depth topic/encoding (16UC1 mm or 32FC1 m)")
    return d


def project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points [...,3] → pixels [...,2]."""
    X = np.asarray(X, np.float64)
    z = np.maximum(X[..., 2:3], 1e-6)
    return np.concatenate([K[0, 0] * X[..., 0:1] / z + K[0, 2], K[1, 1] * X[..., 1:2] / z + K[1, 2]], -1)


def backproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels + depth → camera-frame points [n,3]."""
    x = (np.asarray(u, np.float64) - K[0, 2]) / K[0, 0] * z
    y = (np.asarray(v, np.float64) - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, np.asarray(z, np.float64)], -1)
