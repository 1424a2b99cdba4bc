"""Lens distortion: undistorting camera images to the pinhole camera the pipeline assumes (the node's ``undistort``
parameter, the ``reconstruct`` CLI's ``--D``). Core: imports nothing from ROS.

The pipeline models the camera as a pinhole with intrinsics K: the reconstruction projects the fitted body and
object with K and compares with the image's landmarks, silhouette and depth. An ``image_raw`` of a lens with
distortion breaks that model near the image borders (a webcam's k1 ≈ -0.3 moves corner pixels by tens of pixels), so
the node can resample each image — and the depth image and object mask registered to it — to the undistorted pinhole
image *with the same K* (``cv2.initUndistortRectifyMap`` with K as the new camera matrix, maps cached per CameraInfo;
``cv2.remap``: bilinear for colour, nearest for depth and masks so that no depth is blended across an edge). The 3-D
camera frame does not change, so every output stays in the image's frame.

Rectified images (``image_rect*`` from image_proc) must not be undistorted again: their CameraInfo still carries the
raw camera's D. That is why it is a parameter (default off), as in ROS, where the topic name tells which one it is.
Distortion models: ``plumb_bob`` and ``rational_polynomial`` (OpenCV's 4-14 coefficient model) and ``equidistant``
(``cv2.fisheye``). OpenCV is what image_proc itself uses for this; nothing is written by hand but the cache.
"""
from __future__ import annotations

import threading

import numpy as np

PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)


class RectifyError(ValueError):
    """A distortion this module cannot undo (unknown model, wrong number of coefficients)."""


def parse_distortion(text: str) -> np.ndarray:
    """``"k1,k2,p1,p2[,k3,...]"`` (CameraInfo.d's order) → D (CLI ``--D``)."""
    try:
        D = np.array([float(x) for x in str(text).split(",")], np.float64)
    except ValueError:
        raise RectifyError(f"--D {text!r}: expected comma-separated numbers k1,k2,p1,p2[,k3,...] (CameraInfo.d's order)"
                           ) from None
    if not np.all(np.isfinite(D)):
        raise RectifyError(f"--D {text!r}: the coefficients must be finite")
    return D


def has_distortion(D, model: str | None = None) -> bool:
    """Whether images of this lens differ from the pinhole image with the same K: any non-zero coefficient, or a
    fisheye ``model`` whatever its D — the equidistant projection (r = f·θ) with k1..k4 = 0 is still no pinhole
    (r = f·tan θ), so a fisheye CameraInfo with zero coefficients must be undistorted too."""
    if model in FISHEYE_MODELS:
        return True
    d = np.asarray(D, np.float64).reshape(-1)
    return bool(d.size) and bool(np.any(d != 0.0))


class Rectifier:
    """Undistorts arrays [H, W(, C)] to the pinhole camera K; the remap tables are built once per (K, model, D,
    size) and reused while the CameraInfo stays the same. Thread-safe (the node's perception thread rectifies the
    image while its worker rectifies the previous frame's depth)."""

    def __init__(self):
        self._key = None
        self._maps = None
        self._lock = threading.Lock()

    def _tables(self, K, model: str, D, size: tuple[int, int]):
        K = np.asarray(K, np.float64).reshape(3, 3)
        D = np.asarray(D, np.float64).reshape(-1)
        key = (K.tobytes(), model, D.tobytes(), tuple(size))
        with self._lock:
            if key != self._key:
                self._maps, self._key = self._build(K, model, D, size), key
            return self._maps

    @staticmethod
    def _build(K: np.ndarray, model: str, D: np.ndarray, size: tuple[int, int]):
        import cv2

        if model in PINHOLE_MODELS:
            if D.size not in (4, 5, 8, 12, 14):
                raise RectifyError(f"distortion model {model} with {D.size} coefficients: OpenCV takes 4, 5, 8, 12 or 14")
            return cv2.initUndistortRectifyMap(K, D, None, K, size, cv2.CV_16SC2)
        if model in FISHEYE_MODELS:
            if D.size == 0:  # no coefficients: the ideal fisheye (has_distortion says a fisheye always needs undoing)
                D = np.zeros(4)
            if D.size < 4:
                raise RectifyError(f"distortion model {model} with {D.size} coefficients: 4 needed")
            if np.any(D[4:] != 0):  # k1..k4 only; trailing zeros (a driver padding D to 5) are harmless
                raise RectifyError(f"distortion model {model} with {D.size} coefficients, the ones after k4 not zero: "
                                   "the equidistant model has k1..k4 only (is the distortion_model right?)")
            return cv2.fisheye.initUndistortRectifyMap(K, D[:4], np.eye(3), K, size, cv2.CV_16SC2)
        raise RectifyError(f"distortion model '{model}' is not supported (use "
                           f"{', '.join(PINHOLE_MODELS + FISHEYE_MODELS)}, or rectify upstream with image_proc and keep "
                           "undistort:=false)")

    def apply(self, arr: np.ndarray, K, model: str, D, nearest: bool = False) -> np.ndarray:
        """``arr`` resampled to the undistorted pinhole image with the same K. ``nearest``: depth / masks (no
        blending across edges); bool arrays stay bool. Pixels that come from outside the image are 0 (colour, mask)
        or NaN (float depth: no return)."""
        import cv2

        a = np.asarray(arr)
        h, w = a.shape[:2]
        m1, m2 = self._tables(K, model, D, (w, h))
        src = a.view(np.uint8) if a.dtype == bool else a
        border = float("nan") if np.issubdtype(a.dtype, np.floating) else 0
        out = cv2.remap(src, m1, m2, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        return out.astype(bool) if a.dtype == bool else out


def undistorted_box(box, shape: tuple[int, int], undistort) -> list[float]:
    """A box (x0, y0, x1, y1) of the distorted image → the box around its pixels after ``undistort`` (a function of
    a uint8 mask, e.g. ``lambda m: rectifier.apply(m, K, model, D, nearest=True)``). The box unchanged when none of
    its pixels is left in the image (the fit then says the object is not visible)."""
    H, W = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    m = np.zeros((H, W), np.uint8)
    m[max(0, int(np.floor(y0))):max(0, int(np.ceil(y1))), max(0, int(np.floor(x0))):max(0, int(np.ceil(x1)))] = 1
    ys, xs = np.nonzero(undistort(m))
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else [x0, y0, x1, y1]
