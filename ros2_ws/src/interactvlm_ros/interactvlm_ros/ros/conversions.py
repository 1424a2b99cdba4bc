"""sensor_msgs <-> numpy conversions with validation.

Images go through ``cv_bridge`` when it is importable (a real ROS install); otherwise through the
equivalent numpy decoder below, which covers rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1, 32FC1
(+ the aliases 8UC1/8UC3/8UC4), raw colour (bayer_* 8/16 bit, yuv422 = UYVY, yuv422_yuy2 = YUYV: demosaiced /
converted by OpenCV as cv_bridge does), row padding (``step`` > width * bytes per pixel) and big-endian data.
The decoder is hand-written because cv_bridge is not installable from PyPI and nothing else decodes
``sensor_msgs/Image`` buffers. Either way the header fields are validated first, so a malformed
message never reaches cv_bridge/numpy and every problem raises :class:`InputError` with a message
that names the field and the fix.

The functions take duck-typed messages (anything with the ``sensor_msgs`` field names), so they can
be unit-tested without a ROS transport.
"""
from __future__ import annotations

import logging
import math
import unicodedata

import numpy as np

from ..perception.text import names_nothing

LOG = logging.getLogger("interactvlm_ros.ros.conversions")

#: encoding -> (numpy base dtype, channels, channel order of the decoded array)
ENCODINGS: dict[str, tuple[str, int, str]] = {
    "rgb8": ("u1", 3, "rgb"),
    "bgr8": ("u1", 3, "bgr"),
    "rgba8": ("u1", 4, "rgba"),
    "bgra8": ("u1", 4, "bgra"),
    "mono8": ("u1", 1, "mono"),
    "8UC1": ("u1", 1, "mono"),
    "8UC3": ("u1", 3, "bgr"),  # cv_bridge convention: 8UC3 is OpenCV's BGR order
    "8UC4": ("u1", 4, "bgra"),
    "mono16": ("u2", 1, "mono"),
    "16UC1": ("u2", 1, "mono"),
    "32FC1": ("f4", 1, "mono"),
    # raw colour cameras (no image_proc in front): Bayer mosaics (FLIR/Spinnaker, many machine-vision drivers) and
    # YUV 4:2:2 (usb_cam's raw yuyv/uyvy), converted by OpenCV as cv_bridge converts them
    "bayer_rggb8": ("u1", 1, "bayer_rggb"),
    "bayer_bggr8": ("u1", 1, "bayer_bggr"),
    "bayer_gbrg8": ("u1", 1, "bayer_gbrg"),
    "bayer_grbg8": ("u1", 1, "bayer_grbg"),
    "bayer_rggb16": ("u2", 1, "bayer_rggb"),
    "bayer_bggr16": ("u2", 1, "bayer_bggr"),
    "bayer_gbrg16": ("u2", 1, "bayer_gbrg"),
    "bayer_grbg16": ("u2", 1, "bayer_grbg"),
    "yuv422": ("u1", 2, "uyvy"),  # ROS's yuv422 is UYVY
    "uyvy": ("u1", 2, "uyvy"),
    "yuv422_yuy2": ("u1", 2, "yuyv"),
    "yuyv": ("u1", 2, "yuyv"),
}
#: the OpenCV conversion of each raw colour order to RGB (OpenCV names a Bayer pattern by its second row/column:
#: ROS bayer_rggb8 is OpenCV's BayerBG, as in cv_bridge)
_RAW_TO_RGB = {"bayer_rggb": "COLOR_BayerBG2RGB", "bayer_bggr": "COLOR_BayerRG2RGB", "bayer_gbrg": "COLOR_BayerGR2RGB",
               "bayer_grbg": "COLOR_BayerGB2RGB", "uyvy": "COLOR_YUV2RGB_UYVY", "yuyv": "COLOR_YUV2RGB_YUYV"}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4", "16UC1",
                   *(e for e, v in ENCODINGS.items() if v[2] in _RAW_TO_RGB))
DEPTH_ENCODINGS = ("16UC1", "32FC1", "mono16")
MASK_ENCODINGS = ("mono8", "8UC1")

#: largest accepted image (pixels); a bigger header is rejected before any buffer is touched
MAX_PIXELS = 8192 * 8192
MAX_LABEL_LENGTH = 200


class InputError(ValueError):
    """A message that cannot be used; ``reason`` is a short counter key for diagnostics."""

    def __init__(self, message: str, reason: str = "bad_input"):
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------------------- images
def _bridge():
    """cv_bridge.CvBridge instance, or None (logged once) when cv_bridge is not importable."""
    global _BRIDGE
    if _BRIDGE is None:
        try:
            from cv_bridge import CvBridge  # type: ignore

            _BRIDGE = CvBridge()
            LOG.info("image conversion: cv_bridge")
        except Exception as exc:  # ImportError, or a broken cv_bridge/numpy ABI
            _BRIDGE = False
            LOG.info("image conversion fallback: numpy decoder (cv_bridge not importable: %s)", exc)
    return _BRIDGE or None


_BRIDGE = None


def image_converter_name() -> str:
    """'cv_bridge' or 'numpy' — which converter decodes images (for diagnostics)."""
    return "cv_bridge" if _bridge() is not None else "numpy"


def validate_image_header(msg, what: str = "Image") -> tuple[str, int, int]:
    """Check encoding/size/step/data length of an Image message.

    Returns (encoding, bytes per pixel, row bytes). Raises InputError naming the field.
    """
    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise InputError(
            f"{what}.encoding '{enc}' is not supported; publish one of {', '.join(ENCODINGS)}",
            "bad_encoding",
        )
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise InputError(f"{what} is {w}x{h} (width x height): empty image; fix the publisher", "empty_image")
    if h * w > MAX_PIXELS:
        raise InputError(
            f"{what} header says {w}x{h} = {h * w} pixels, more than the limit {MAX_PIXELS}; "
            "the header is corrupt or the camera needs downscaling",
            "image_too_large",
        )
    base, ch, order = ENCODINGS[enc]
    if order in ("uyvy", "yuyv") and w % 2:
        raise InputError(f"{what} is {enc} (YUV 4:2:2: two pixels share their colour) with an odd width {w}; fix the "
                         "publisher", "bad_step")
    if order.startswith("bayer") and (w % 2 or h % 2):
        raise InputError(f"{what} is {enc} (a 2x2 Bayer mosaic) of odd size {w}x{h}; fix the publisher", "bad_step")
    bpp = np.dtype(base).itemsize * ch
    row = w * bpp
    step = int(msg.step)
    if step < row:
        raise InputError(
            f"{what}.step={step} is smaller than width*bytes_per_pixel={w}*{bpp}={row} for encoding {enc}; "
            "set step to at least that",
            "bad_step",
        )
    n = len(msg.data)
    if n < h * step:
        raise InputError(
            f"{what}.data has {n} bytes but height*step = {h}*{step} = {h * step} are needed; "
            "the message is truncated or its header is wrong",
            "short_data",
        )
    return enc, bpp, row


def _decode_numpy(msg, enc: str, row: int) -> np.ndarray:
    base, ch, _ = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=h * step).reshape(h, step)[:, :row]
    dt = np.dtype(base)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(raw).view(dt).reshape(h, w, ch)
    arr = arr.astype(dt.newbyteorder("="), copy=False)
    return arr[:, :, 0] if ch == 1 else arr


def image_to_numpy(msg, what: str = "Image") -> tuple[np.ndarray, str]:
    """Decode an Image to (array HxW or HxWxC in the message's channel order, encoding).

    The result has native byte order and owns its memory.
    """
    enc, _bpp, row = validate_image_header(msg, what)
    bridge = _bridge()
    # cv_bridge views the buffer as (height, step / pixel size, channels) with default strides: rows padded by a number of
    # bytes that is not a multiple of the pixel size (rgb8 at width 641 with a 4-byte aligned step of 1924) come out
    # skewed. Padded rows are therefore decoded here (validated, exact); unpadded ones by cv_bridge.
    # 'uyvy' / 'yuyv' (newer sensor_msgs names of yuv422 / yuv422_yuy2): cv_bridge's getCvType does not know them
    # (CvBridgeError, a TypeError, on every frame); the numpy decoder reads their two bytes per pixel exactly
    if bridge is not None and enc not in ("8UC1", "8UC3", "8UC4", "uyvy", "yuyv") and int(msg.step) == row:
        arr = np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    else:
        arr = _decode_numpy(msg, enc, row).copy()
    return arr, enc


def image_to_rgb8(msg, what: str = "Image") -> np.ndarray:
    """Decode a colour/mono camera image to uint8 RGB HxWx3 (the pipeline's input).

    mono16/16UC1 are scaled by 1/256; 32FC1 is rejected (a depth image on the colour topic).
    """
    arr, enc = image_to_numpy(msg, what)
    if enc == "32FC1":
        raise InputError(
            f"{what}.encoding is 32FC1 (a depth/float image) on the colour image topic; remap 'image' to a camera "
            "image (rgb8/bgr8/mono8 ...) and 'depth' to the depth topic",
            "bad_encoding",
        )
    return _rgb8(arr, ENCODINGS[enc][2])


def _rgb8(arr: np.ndarray, order: str) -> np.ndarray:
    """8/16-bit pixels in channel ``order`` (mono, rgb, bgr, rgba, bgra; a Bayer mosaic, YUV 4:2:2) -> uint8 RGB
    HxWx3 (16 bit: 1/256)."""
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    if order in _RAW_TO_RGB:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(arr), getattr(cv2, _RAW_TO_RGB[order]))
    if order == "mono":
        return np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2)
    if order == "rgb":
        return arr
    if order == "bgr":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if order == "rgba":
        return np.ascontiguousarray(arr[:, :, :3])
    if order == "bgra":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    raise ValueError(f"channel order {order!r}")  # pragma: no cover (callers pass one of the five)


def _millimetres_to_metres(mm: np.ndarray) -> np.ndarray:
    """uint16 millimetres -> float32 metres, 0 (no return) -> NaN."""
    out = mm.astype(np.float32) * 1e-3
    out[mm == 0] = np.nan
    return out


def depth_to_metres(msg, allow_nonfinite: bool = False, what: str = "depth Image") -> np.ndarray:
    """Decode a depth image to float32 metres HxW.

    16UC1/mono16 are millimetres (0 = no return -> NaN); 32FC1 are metres. Non-finite values in a
    32FC1 image raise InputError unless ``allow_nonfinite`` (REP 118 uses NaN/±inf for "no return";
    enable that for sensors that publish them). Negative depths always raise.
    """
    arr, enc = image_to_numpy(msg, what)
    if enc not in DEPTH_ENCODINGS:
        raise InputError(f"{what}.encoding is {enc}; depth must be 16UC1 (mm) or 32FC1 (m)", "bad_depth")
    if arr.dtype == np.uint16:
        return _millimetres_to_metres(arr)
    out = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(out)
    if bad.any() and not allow_nonfinite:
        raise InputError(
            f"{what} (32FC1) has {int(bad.sum())} NaN/inf pixels; mark invalid depth with 0 or set the "
            "parameter depth_allow_nonfinite:=true (REP 118 sensors)",
            "bad_depth",
        )
    if (out[~bad] < 0).any():
        raise InputError(f"{what} has negative depth values; depth must be >= 0 metres", "bad_depth")
    return out


def mask_to_bool(msg, what: str = "object_mask Image") -> np.ndarray:
    """Decode an object mask (a segmentation node's output: mono8 / 8UC1, nonzero = object) to bool HxW."""
    arr, enc = image_to_numpy(msg, what)
    if enc not in MASK_ENCODINGS:
        raise InputError(f"{what}.encoding is {enc}; an object mask must be mono8 or 8UC1 (nonzero = object)",
                         "bad_object_mask")
    return arr.reshape(arr.shape[0], arr.shape[1]) != 0


# ------------------------------------------------------------------------ compressed transports
#: image_transport's transports the node subscribes to: name -> topic suffix (``<base topic>/<suffix>``)
IMAGE_TRANSPORTS = {"raw": "", "compressed": "compressed"}
DEPTH_TRANSPORTS = {"raw": "", "compressedDepth": "compressedDepth"}
#: compressed_depth_image_transport's ConfigHeader before the PNG: int32 format, float32 depthParam[2]
_DEPTH_CONFIG = np.dtype([("format", "<i4"), ("quant_a", "<f4"), ("quant_b", "<f4")])


def transport_topic(resolved_base: str, transport: str) -> str:
    """Where image_transport publishes ``transport`` of a base topic (already resolved: remapped, namespaced):
    ``/camera/color/image_raw`` + compressed -> ``/camera/color/image_raw/compressed``; raw -> the base itself."""
    suffix = {**IMAGE_TRANSPORTS, **DEPTH_TRANSPORTS}[transport]
    return f"{resolved_base.rstrip('/')}/{suffix}" if suffix else resolved_base


def _imdecode(data: np.ndarray, fmt: str, what: str) -> np.ndarray:
    """OpenCV-decode compressed image bytes (IMREAD_UNCHANGED: channel count and bit depth as encoded)."""
    import cv2

    if data.size == 0:
        raise InputError(f"{what} (format '{fmt}') has no data; fix the publisher", "bad_compressed")
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header announcing more pixels than OpenCV's limit
        raise InputError(f"{what} (format '{fmt}', {data.size} bytes) cannot be decoded: "
                         f"{str(exc).strip().splitlines()[-1]}", "bad_compressed") from None
    if arr is None or arr.size == 0:
        raise InputError(f"{what} (format '{fmt}', {data.size} bytes) is not a readable jpeg/png image; "
                         "the data is truncated or corrupt", "bad_compressed")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InputError(f"{what} decodes to {arr.shape[1]}x{arr.shape[0]} pixels, more than the limit "
                         f"{MAX_PIXELS}; the camera needs downscaling", "image_too_large")
    return arr


def encode_jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR uint8 image (OpenCV), the data of a "<encoding>; jpeg compressed bgr8" CompressedImage."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"OpenCV could not jpeg-encode an image of shape {bgr.shape}", "bad_encoding")
    return buf.tobytes()


def compressed_to_rgb8(msg, what: str = "CompressedImage") -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage of image_transport's ``compressed`` plugin (jpeg or png; ``format``
    "<encoding>; <jpeg|png> compressed <bgr8|rgb8|...>", or the older bare "jpeg" / "png") to uint8 RGB HxWx3.

    As image_transport's own subscriber does: the decoded channels are BGR(A) unless the format says
    "compressed rgb"; grey images are repeated into RGB; 16-bit images are scaled by 1/256. OpenCV decodes
    (``cv2.imdecode``) — it is what the publishing plugin encodes with."""
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise InputError(f"{what}.format is '{fmt}', a compressed depth image on the colour image topic; remap "
                         "'image' to the camera's colour topic", "bad_encoding")
    arr = _imdecode(np.frombuffer(msg.data, dtype=np.uint8), fmt, what)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{what} (format '{fmt}') decodes to {arr.dtype} pixels; a camera image is 8 or 16 bit",
                         "bad_encoding")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels not in (1, 3, 4):
        raise InputError(f"{what} (format '{fmt}') decodes to {channels} channels; publish a colour or grey image",
                         "bad_encoding")
    rgb = "compressed rgb" in fmt  # else OpenCV's BGR(A), as image_transport's subscriber assumes
    return _rgb8(arr, {1: "mono", 3: "rgb" if rgb else "bgr", 4: "rgba" if rgb else "bgra"}[channels])


def compressed_depth_to_metres(msg, what: str = "depth CompressedImage") -> np.ndarray:
    """Decode a CompressedImage of image_transport's ``compressedDepth`` plugin (png) to float32 metres HxW.

    ``format`` "16UC1; compressedDepth png" (also "16UC1; compressedDepth", and mono16): the PNG holds the
    millimetres, 0 = no return -> NaN. "32FC1; compressedDepth png": the PNG holds quantised inverse depth q,
    depth = quant_a / (q - quant_b) with the publisher's parameters from the 12-byte header before the PNG
    (compressed_depth_image_transport's ConfigHeader), q = 0 (no return or beyond its depth_max) -> NaN.
    The plugin's ``rvl`` format is refused with the fix (its run-length code has no Python decoder here)."""
    fmt = str(msg.format)
    enc, sep, rest = fmt.partition(";")
    enc = enc.strip()
    if sep and "compressedDepth" not in rest:
        raise InputError(f"{what}.format is '{fmt}', not a compressedDepth image; remap 'depth' to the "
                         "<depth topic>/compressedDepth publisher or set depth_transport:=raw", "bad_depth")
    if "rvl" in rest.lower():
        raise InputError(f"{what}.format is '{fmt}': the rvl codec is not supported; set the publisher's "
                         "'<depth topic>.compressedDepth.format' parameter to png", "bad_depth")
    if enc not in DEPTH_ENCODINGS:
        raise InputError(f"{what}.format '{fmt}' names encoding '{enc}'; depth must be 16UC1 (mm) or 32FC1 (m)",
                         "bad_depth")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size <= _DEPTH_CONFIG.itemsize:
        raise InputError(f"{what} has {data.size} bytes: no compressedDepth header + png; fix the publisher",
                         "bad_depth")
    head = data[:_DEPTH_CONFIG.itemsize].view(_DEPTH_CONFIG)[0]
    q = _imdecode(data[_DEPTH_CONFIG.itemsize:], fmt, what)
    if q.dtype != np.uint16 or q.ndim != 2:
        raise InputError(f"{what}: the png holds {q.dtype} x{1 if q.ndim == 2 else q.shape[2]} channels, not the "
                         "16-bit single-channel image compressedDepth writes", "bad_depth")
    if enc != "32FC1":
        return _millimetres_to_metres(q)
    a, b = float(head["quant_a"]), float(head["quant_b"])
    if not (math.isfinite(a) and math.isfinite(b) and a > 0):
        raise InputError(f"{what}: compressedDepth quantisation parameters ({a}, {b}) are not usable "
                         "(finite, first > 0); the header is corrupt", "bad_depth")
    invalid = q == 0
    with np.errstate(divide="ignore"):
        out = np.float32(a) / (q.astype(np.float32) - np.float32(b))
    out[invalid] = np.nan
    if (out[~invalid] < 0).any() or not np.isfinite(out[~invalid]).all():
        raise InputError(f"{what}: decoded depth has negative or infinite values; the quantisation header does not "
                         "match the png", "bad_depth")
    return out


def numpy_to_image(arr: np.ndarray, encoding: str, header=None):
    """Build a sensor_msgs/Image (little-endian, no padding) from an array in ``encoding``'s layout."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise InputError(f"encoding '{encoding}' is not supported", "bad_encoding")
    base, ch, _ = ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=np.dtype(base).newbyteorder("<"))
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] != ch:
        raise InputError(f"array of shape {arr.shape} does not match encoding {encoding} ({ch} channels)")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * a.shape[2] * a.itemsize)
    msg.data = a.tobytes()
    return msg


# ------------------------------------------------------------------------------------ camera info
def camera_info_uncalibrated(msg) -> bool:
    """True for the CameraInfo of an uncalibrated camera: sensor_msgs/CameraInfo's own convention ("clients may assume
    that K[0] == 0.0 indicates an uncalibrated camera"; camera_info_manager publishes zeros before a calibration is
    loaded, e.g. usb_cam and v4l2_camera without a calibration file). Not bad input: the images are fine, only their
    intrinsics are unknown."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    return k.size == 9 and k[0] == 0.0


def camera_info_to_K(msg, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """3x3 intrinsics (float64) from CameraInfo.k, validated (finite, fx, fy > 0, cx, cy finite).

    ``image_size`` = (width, height) of the image it is used with: a CameraInfo whose non-zero
    width/height differ raises (intrinsics of another resolution).
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise InputError(f"CameraInfo.k has {k.size} values, 9 needed", "bad_camera_info")
    if not np.all(np.isfinite(k)):
        raise InputError("CameraInfo.k contains NaN/inf; publish a calibrated camera_info", "bad_camera_info")
    d = np.asarray(msg.d, dtype=np.float64)
    if d.size and not np.all(np.isfinite(d)):
        raise InputError("CameraInfo.d (distortion) contains NaN/inf", "bad_camera_info")
    p = np.asarray(msg.p, dtype=np.float64)
    if p.size and not np.all(np.isfinite(p)):
        raise InputError("CameraInfo.p (projection) contains NaN/inf", "bad_camera_info")
    K = k.reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(
            f"CameraInfo.k has fx={K[0, 0]}, fy={K[1, 1]}; both must be > 0 (k[0] == 0 marks an uncalibrated camera)",
            "bad_camera_info",
        )
    if image_size is not None and msg.width and msg.height:
        if (int(msg.width), int(msg.height)) != tuple(int(v) for v in image_size):
            raise InputError(
                f"CameraInfo is for {msg.width}x{msg.height} but the image is {image_size[0]}x{image_size[1]}",
                "bad_camera_info",
            )
    return K


def camera_info_binning_roi(msg, K: np.ndarray | None) -> tuple[np.ndarray | None, tuple[int, int]]:
    """(K of the images this CameraInfo describes, their (width, height)) under its ``binning_x/y`` and ``roi``, as
    image_geometry's PinholeCameraModel adjusts them: the principal point moves by the ROI offset, then fx, cx (fy, cy)
    are divided by binning_x (binning_y); the image is the ROI (the full width/height when the ROI is unset) divided by
    the binning. ``K`` is the calibration's (full resolution; None passes through). A ROI outside the calibrated size
    raises ``InputError`` (bad_camera_info)."""
    W, H = int(msg.width), int(msg.height)
    bx, by = max(1, int(getattr(msg, "binning_x", 0) or 0)), max(1, int(getattr(msg, "binning_y", 0) or 0))
    roi = getattr(msg, "roi", None)
    x0, y0, rw, rh = ((int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)) if roi is not None
                      else (0, 0, 0, 0))
    if (rw, rh) == (0, 0):  # unset: the full image (the offsets of an unset ROI are 0 too)
        rw, rh = W - x0, H - y0
    if W and H and (x0 + rw > W or y0 + rh > H):
        raise InputError(f"CameraInfo.roi {rw}x{rh}+{x0}+{y0} lies outside the calibrated {W}x{H} image",
                         "bad_camera_info")
    size = (rw // bx, rh // by) if W and H else (0, 0)
    if K is None or (bx, by, x0, y0) == (1, 1, 0, 0):
        return K, size
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] -= x0
    K[1, 2] -= y0
    K[0, :] /= bx
    K[1, :] /= by
    return K, size


def camera_info_rectified_K(msg) -> np.ndarray | None:
    """Intrinsics of the *rectified* image (image_proc's image_rect*): the left 3x3 of CameraInfo.p, or None when P is
    unset (zeros) or not a camera (fx, fy <= 0). image_geometry projects rectified images with P, not K; they differ
    when the camera has distortion (the rectified image is resampled to a new camera matrix)."""
    p = np.asarray(msg.p, dtype=np.float64).reshape(-1)
    if p.size != 12 or not np.all(np.isfinite(p)):
        return None
    P = p.reshape(3, 4)[:, :3].copy()
    return P if P[0, 0] > 0 and P[1, 1] > 0 else None


def camera_info_distortion(msg) -> tuple[str, np.ndarray]:
    """(distortion_model, D as float64) of a CameraInfo (validated finite by :func:`camera_info_to_K`); '' and an
    empty D for an uncalibrated camera."""
    return str(msg.distortion_model), np.asarray(msg.d, dtype=np.float64).reshape(-1)


def default_K(width: int, height: int, hfov_deg: float | None = None) -> np.ndarray:
    """Pinhole intrinsics for an uncalibrated image, principal point at the centre ((W−1)/2, (H−1)/2), square
    pixels. ``hfov_deg`` None: the package's one default (``recon.camera.default_intrinsics``, fx = fy =
    1.2·max(W, H), ≈ 45° horizontally on 4:3), the K the node and the CLI use when no CameraInfo is given — so a
    replayed image and the same image through ``interactvlm reconstruct`` are placed alike. A number: that horizontal
    field of view (fx = fy = width / (2 tan(hfov/2)))."""
    from interactvlm_ros.recon.camera import default_intrinsics

    return default_intrinsics(height, width, hfov_deg)


def make_camera_info(width: int, height: int, K: np.ndarray | None = None, header=None):
    """sensor_msgs/CameraInfo (plumb_bob, zero distortion) for K (default: :func:`default_K`)."""
    from sensor_msgs.msg import CameraInfo

    K = default_K(width, height) if K is None else np.asarray(K, dtype=np.float64)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [float(v) for v in K.reshape(-1)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = [float(v) for v in P.reshape(-1)]
    return msg


# ---------------------------------------------------------------------------------------- labels
def detections_to_boxes(msg, what: str = "object_detections") -> list[tuple[str, float, tuple[float, ...]]]:
    """vision_msgs/Detection2DArray → [(class_id, score, (x0, y0, x1, y1) pixels)], one per detection, with its
    best-scoring hypothesis ('' and 0.0 without one). The box is ``bbox.center`` ± ``size``/2 (vision_msgs ≥ 4:
    ``center.position.x``; 3.x: ``center.x``; ``theta`` ignored: detectors give axis-aligned boxes). A non-finite
    or negative box raises InputError ``bad_detections``."""
    out = []
    for i, det in enumerate(getattr(msg, "detections", None) or []):
        hyps = []
        for res in getattr(det, "results", None) or []:
            hyp = getattr(res, "hypothesis", res)  # vision_msgs >= 4: results[].hypothesis.{class_id, score}; 3.x: .id
            hyps.append((str(getattr(hyp, "class_id", getattr(hyp, "id", ""))), float(getattr(hyp, "score", 0.0))))
        best = max(hyps, key=lambda h: h[1]) if hyps else ("", 0.0)
        c = det.bbox.center
        p = getattr(c, "position", c)
        cx, cy, sx, sy = float(p.x), float(p.y), float(det.bbox.size_x), float(det.bbox.size_y)
        if not all(math.isfinite(v) for v in (cx, cy, sx, sy)) or sx < 0 or sy < 0:
            raise InputError(f"{what}: detection {i} has bbox centre ({cx}, {cy}) size ({sx}, {sy}); expected "
                             "finite pixels and sizes >= 0", "bad_detections")
        out.append((best[0], best[1], (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)))
    return out


def choose_box(boxes, label: str, class_id: str = "") -> tuple[tuple[float, float, float, float] | None, str]:
    """The box of the object among ``detections_to_boxes``: the highest-scoring detection whose class is
    ``class_id`` when given (a detector with numeric ids: '41' is COCO's cup), else whose class names the label —
    equal ignoring case, or the same object-library category ('mug' for 'cup', 'sports ball' for 'ball'). A box less
    than a pixel wide or high (a detector's placeholder) locates nothing and is passed over.
    → (box, '') or (None, why: the classes seen)."""
    from ..objects import library

    want = class_id.strip().lower()
    lib = library()
    target = None if want else lib.resolve(label)
    best = None
    degenerate = 0
    for cls, score, box in boxes:
        if box[2] - box[0] < 1.0 or box[3] - box[1] < 1.0:
            degenerate += 1
            continue
        c = cls.strip().lower()
        ok = c == want if want else (c == label.strip().lower() or (target is not None and lib.resolve(c) == target))
        if ok and (best is None or score > best[0]):
            best = (score, box)
    if best is not None:
        return best[1], ""
    seen = sorted({c for c, _, _ in boxes})
    return None, (f"no detection of class '{want or label}' (classes: {', '.join(repr(c) for c in seen) or 'none'}"
                  f"{'' if want else '; a detector with numeric ids needs object_detection_class'}"
                  f"{f'; {degenerate} box(es) under a pixel passed over' if degenerate else ''})")


def validate_label(label, what: str = "object_label") -> str:
    """Stripped object label; rejects non-strings, empty, over-long and control characters."""
    if not isinstance(label, str):
        raise InputError(f"{what} must be a string, got {type(label).__name__}", "bad_label")
    s = label.strip()
    if not s:
        raise InputError(f"{what} is empty; give the object's name, e.g. 'cup'", "bad_label")
    # '_', '-', '!!' (and, read NFKC as the text encoder does, '！！', '…'): every frame was bad_input (ContactEstimator
    # refuses it)
    if names_nothing(s):
        raise InputError(f"{what} {s!r} names nothing (only marks such as '_', '-', '!'); give the object's name, "
                         "e.g. 'cup'", "bad_label")
    if len(s) > MAX_LABEL_LENGTH:
        raise InputError(f"{what} is {len(s)} characters long (max {MAX_LABEL_LENGTH})", "bad_label")
    bad = [c for c in s if unicodedata.category(c)[0] == "C"]
    if bad:
        raise InputError(
            f"{what} {s!r} contains control characters {sorted({hex(ord(c)) for c in bad})}; send plain text",
            "bad_label",
        )
    return s


# ------------------------------------------------------------------------------------ PointCloud2
CONTACT_FIELDS = ("x", "y", "z", "contact")
#: ``part`` value of a point whose body part is not known (a body model without part labels)
PART_UNKNOWN = 255
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}  # PointField datatypes


def make_contact_cloud(points: np.ndarray, contact: np.ndarray, header=None, part: np.ndarray | None = None,
                       normals: np.ndarray | None = None):
    """PointCloud2 with float32 fields x, y, z, contact (point_step 16, dense, little-endian).

    points [N,3] (metres, in header.frame_id), contact [N] in [0,1]. N may be 0 (no contact).
    part [N] | None: body-part ids (``bodies.parts.PART_NAMES`` index, ``PART_UNKNOWN`` = unknown); given, the
    cloud gains a uint8 field ``part`` at offset 16 (point_step 20, 3 bytes of padding).
    normals [N,3] | None: surface normals; given (not with ``part``), float32 fields ``normal_x/y/z`` at offsets
    16/20/24 (point_step 28; PCL's PointNormal names) — the free grasp regions' approach directions.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    c = np.asarray(contact, dtype=np.float32).reshape(-1)
    if len(pts) != len(c):
        raise ValueError(f"points ({len(pts)}) and contact ({len(c)}) differ in length")
    if part is not None and normals is not None:
        raise ValueError("a cloud carries part ids or normals, not both")
    step = 16 if part is None and normals is None else (20 if normals is None else 28)
    data = np.zeros((len(pts), step), dtype=np.uint8)
    data[:, :16] = np.concatenate([pts, c[:, None]], 1).astype("<f4").view(np.uint8).reshape(len(pts), 16)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(CONTACT_FIELDS)]
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
        if len(nrm) != len(pts):
            raise ValueError(f"points ({len(pts)}) and normals ({len(nrm)}) differ in length")
        data[:, 16:28] = nrm.astype("<f4").view(np.uint8).reshape(len(pts), 12)
        fields += [PointField(name=f"normal_{a}", offset=16 + 4 * i, datatype=PointField.FLOAT32, count=1)
                   for i, a in enumerate("xyz")]
    if part is not None:
        ids = np.asarray(part).reshape(-1)
        if len(ids) != len(pts):
            raise ValueError(f"points ({len(pts)}) and part ({len(ids)}) differ in length")
        data[:, 16] = np.where((ids >= 0) & (ids < PART_UNKNOWN), ids, PART_UNKNOWN).astype(np.uint8)
        fields.append(PointField(name="part", offset=16, datatype=PointField.UINT8, count=1))
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height = 1
    msg.width = len(pts)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = step
    msg.row_step = step * len(pts)
    msg.is_dense = True
    msg.data = data.tobytes()
    return msg


def cloud_to_numpy(msg) -> dict[str, np.ndarray]:
    """Read the scalar fields of a PointCloud2 into {name: [N]} (N = height * width, rows in order), as
    sensor_msgs_py.point_cloud2.read_points does (that module is not on PyPI): any field order, ``point_step``
    and ``row_step`` (rows may be padded), either byte order; a field with ``count`` > 1 reads as [N, count].
    float32 fields come back as float32, the other PointField types as their own numpy type (``part``: uint8);
    fields of an unknown datatype are left out. Raises ValueError when ``data`` is shorter than the layout says
    or a field does not fit in ``point_step``."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    data = bytes(msg.data)
    n = height * width
    if height <= 1:  # one row: row_step says nothing (publishers leave it 0), as read_points ignores it
        row_step = width * point_step
    if n and (point_step <= 0 or row_step < width * point_step):
        raise ValueError(f"PointCloud2 layout: point_step {point_step}, row_step {row_step} for width {width}")
    if n and len(data) < (height - 1) * row_step + width * point_step:
        raise ValueError(f"PointCloud2 data has {len(data)} bytes, the layout needs "
                         f"{(height - 1) * row_step + width * point_step} ({height}x{width}, row_step {row_step})")
    out = {}
    for f in msg.fields:
        code = _POINTFIELD_DTYPES.get(int(f.datatype))
        if code is None:
            continue
        count = max(int(f.count), 1)
        dt = np.dtype((">" if msg.is_bigendian else "<") + code)
        if n and int(f.offset) + count * dt.itemsize > point_step:
            raise ValueError(f"PointCloud2 field {f.name!r} (offset {f.offset}, {count} x {dt.itemsize} bytes) "
                             f"does not fit in point_step {point_step}")
        if not n:
            out[f.name] = np.zeros((0, count) if count > 1 else 0, dt.newbyteorder("="))
            continue
        field = np.ndarray((height, width, count), dt, buffer=data, offset=int(f.offset),
                           strides=(row_step, point_step, dt.itemsize))
        field = field.reshape(n, count).astype(dt.newbyteorder("="))
        out[f.name] = field if count > 1 else field[:, 0]
    return out
