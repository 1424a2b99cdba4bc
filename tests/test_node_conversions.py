"""Image / CameraInfo / depth / label / PointCloud2 conversions, without a ROS transport."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import sensor_msgs.msg  # noqa: F401  (the ROS wheels are part of the test install)

from interactvlm_ros.ros import conversions as conv

RNG = np.random.default_rng(0)


def _msg(arr: np.ndarray, enc: str, pad: int = 0, big: bool = False, **over):
    """Hand-encode ``arr`` as a sensor_msgs/Image-like object (independent of numpy_to_image)."""
    a = arr if arr.ndim == 3 else arr[:, :, None]
    h, w, c = a.shape
    dt = a.dtype.newbyteorder(">" if big else "<")
    rows = [np.ascontiguousarray(a[r].astype(dt)).tobytes() + b"\xee" * pad for r in range(h)]
    fields = dict(height=h, width=w, encoding=enc, is_bigendian=int(big), step=w * c * a.itemsize + pad,
                  data=b"".join(rows))
    fields.update(over)
    return SimpleNamespace(**fields)


CASES = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}


def _random(dtype, ch, h=5, w=7):
    if dtype == np.float32:
        a = RNG.uniform(0.1, 10.0, size=(h, w, ch)).astype(np.float32)
    else:
        a = RNG.integers(0, np.iinfo(dtype).max, size=(h, w, ch), endpoint=True).astype(dtype)
    return a[:, :, 0] if ch == 1 else a


@pytest.mark.parametrize("encoding", sorted(CASES))
@pytest.mark.parametrize("pad", [0, 3, 64])
@pytest.mark.parametrize("big", [False, True])
def test_every_encoding_roundtrips_with_padding_and_endianness(encoding, pad, big):
    dtype, ch = CASES[encoding]
    arr = _random(dtype, ch)
    out, enc = conv.image_to_numpy(_msg(arr, encoding, pad=pad, big=big))
    assert enc == encoding
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


class _CvBridgeLike:
    """cv_bridge's imgmsg_to_cv2 (Humble/Jazzy core.py), which views the data as (height, step / pixel size, channels)
    with default strides, then trims the width: exact without row padding, skewed with padding that is not a multiple
    of the pixel size."""

    def __init__(self):
        self.calls = 0

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        import sys

        self.calls += 1
        base, ch, _ = conv.ENCODINGS[msg.encoding]
        dt = np.dtype(base)
        im = np.ndarray(shape=(msg.height, int(msg.step / dt.itemsize / ch), ch), dtype=dt, buffer=msg.data)
        im = np.ascontiguousarray(im[: msg.height, : msg.width, :])
        if msg.is_bigendian == (sys.byteorder == "little"):
            im = im.byteswap().view(im.dtype.newbyteorder())
        return im[:, :, 0] if ch == 1 else im


@pytest.mark.parametrize("pad", [0, 1, 64])
def test_padded_rows_never_reach_cv_bridge(monkeypatch, pad):
    """With cv_bridge importable (a ROS install), unpadded images go through it and padded ones through the numpy
    decoder: cv_bridge's own view skews rows padded by a non-multiple of the pixel size (pad 1 here)."""
    bridge = _CvBridgeLike()
    monkeypatch.setattr(conv, "_BRIDGE", bridge)
    arr = _random(np.uint8, 3, h=4, w=5)
    out, _ = conv.image_to_numpy(_msg(arr, "rgb8", pad=pad))
    np.testing.assert_array_equal(out, arr)
    assert bridge.calls == (pad == 0)
    if pad == 1:  # what cv_bridge itself makes of it
        assert not np.array_equal(bridge.imgmsg_to_cv2(_msg(arr, "rgb8", pad=pad)), arr)


def test_rgb8_conversion_channel_orders():
    rgb = _random(np.uint8, 3)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2),
    }
    for enc, arr in cases.items():
        np.testing.assert_array_equal(conv.image_to_rgb8(_msg(arr, enc, pad=5)), rgb, err_msg=enc)
    mono = _random(np.uint8, 1)
    out = conv.image_to_rgb8(_msg(mono, "mono8"))
    assert out.shape == mono.shape + (3,)
    np.testing.assert_array_equal(out[:, :, 1], mono)
    m16 = np.array([[0, 255, 256, 65535]], np.uint16)
    np.testing.assert_array_equal(conv.image_to_rgb8(_msg(m16, "mono16", big=True))[:, :, 0], [[0, 0, 1, 255]])


def test_object_mask_nonzero_is_object_and_only_8_bit_single_channel():
    m = np.array([[0, 1, 255], [0, 0, 7]], np.uint8)
    for enc in ("mono8", "8UC1"):
        np.testing.assert_array_equal(conv.mask_to_bool(_msg(m, enc, pad=3)), m != 0)
    with pytest.raises(conv.InputError, match="mono8 or 8UC1") as ei:
        conv.mask_to_bool(_msg(np.zeros((2, 3), np.uint16), "16UC1"))
    assert ei.value.reason == "bad_object_mask"


def test_depth_units_and_invalid_values():
    mm = np.array([[0, 1000, 2500]], np.uint16)
    d = conv.depth_to_metres(_msg(mm, "16UC1", big=True))
    assert math.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(2.5)
    m = np.array([[0.5, 1.5]], np.float32)
    np.testing.assert_allclose(conv.depth_to_metres(_msg(m, "32FC1", pad=4)), m)
    for bad in (np.nan, np.inf, -np.inf):
        arr = np.array([[1.0, bad]], np.float32)
        with pytest.raises(conv.InputError, match="NaN/inf") as ei:
            conv.depth_to_metres(_msg(arr, "32FC1"))
        assert ei.value.reason == "bad_depth"
        ok = conv.depth_to_metres(_msg(arr, "32FC1"), allow_nonfinite=True)
        assert ok[0, 0] == 1.0
    with pytest.raises(conv.InputError, match="negative"):
        conv.depth_to_metres(_msg(np.array([[-1.0]], np.float32), "32FC1"))
    with pytest.raises(conv.InputError, match="16UC1"):
        conv.depth_to_metres(_msg(_random(np.uint8, 3), "rgb8"))


@pytest.mark.parametrize(
    "over, reason, words",
    [
        (dict(encoding="nv21"), "bad_encoding", "encoding 'nv21'"),
        (dict(encoding=""), "bad_encoding", "encoding ''"),
        (dict(step=10), "bad_step", "step=10"),
        (dict(data=b"\0" * 50), "short_data", "data has 50 bytes"),
        (dict(height=0, width=0, step=0, data=b""), "empty_image", "0x0"),
        (dict(height=20000, width=20000, step=60000, data=b"\0" * 100), "image_too_large", "20000x20000"),
        (dict(height=4000, width=4000, step=12000, data=b"\0" * 100), "short_data", "truncated"),
    ],
)
def test_bad_images_raise_named_errors(over, reason, words):
    msg = _msg(_random(np.uint8, 3, h=6, w=8), "rgb8", **over)
    with pytest.raises(conv.InputError) as ei:
        conv.image_to_rgb8(msg)
    assert ei.value.reason == reason
    assert words in str(ei.value)


def test_float_image_rejected_on_colour_topic():
    with pytest.raises(conv.InputError, match="depth"):
        conv.image_to_rgb8(_msg(_random(np.float32, 1), "32FC1"))


def test_numpy_to_image_and_back():
    rgb = _random(np.uint8, 3, h=4, w=6)
    msg = conv.numpy_to_image(rgb, "rgb8")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (4, 6, 18, "rgb8")
    np.testing.assert_array_equal(conv.image_to_rgb8(msg), rgb)
    d = _random(np.uint16, 1)
    np.testing.assert_array_equal(conv.image_to_numpy(conv.numpy_to_image(d, "16UC1"))[0], d)
    with pytest.raises(conv.InputError):
        conv.numpy_to_image(rgb, "mono8")


def _info(k, width=640, height=480, d=(0.0,) * 5):
    p = list(np.hstack([np.asarray(k, float).reshape(3, 3), np.zeros((3, 1))]).reshape(-1))
    return SimpleNamespace(k=list(k), d=list(d), p=p, width=width, height=height)


def test_camera_info_validation():
    # one default K in the package: replay publishes the K the node and the CLI use without CameraInfo
    from interactvlm_ros.recon.camera import default_intrinsics

    K = conv.default_K(640, 480)
    np.testing.assert_array_equal(K, default_intrinsics(480, 640))
    assert K[0, 0] == K[1, 1] == pytest.approx(1.2 * 640)
    assert (K[0, 2], K[1, 2]) == (319.5, 239.5)
    # and the replay tool stays light: the default K does not pull the fitting code (torch) in with it
    probe = ("import sys; from interactvlm_ros.ros import conversions as c, replay; c.make_camera_info(640, 480); "
             "print(sorted(m for m in ('torch', 'interactvlm_ros.recon.reconstructor') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    K60 = conv.default_K(640, 480, hfov_deg=60.0)  # replay --hfov 60
    assert K60[0, 0] == K60[1, 1] == pytest.approx(640 / (2 * math.tan(math.radians(30))))
    assert (K60[0, 2], K60[1, 2]) == (319.5, 239.5)
    np.testing.assert_allclose(conv.camera_info_to_K(_info(K.reshape(-1))), K)
    for bad in (np.nan, np.inf):
        k = K.reshape(-1).copy()
        k[0] = bad
        with pytest.raises(conv.InputError, match="NaN/inf") as ei:
            conv.camera_info_to_K(_info(k))
        assert ei.value.reason == "bad_camera_info"
    with pytest.raises(conv.InputError, match="distortion"):
        conv.camera_info_to_K(_info(K.reshape(-1), d=(0.0, np.nan, 0, 0, 0)))
    with pytest.raises(conv.InputError, match="fx"):
        conv.camera_info_to_K(_info(np.zeros(9)))
    with pytest.raises(conv.InputError, match="640x480"):
        conv.camera_info_to_K(_info(K.reshape(-1)), image_size=(320, 240))
    msg = conv.make_camera_info(320, 240)
    np.testing.assert_allclose(conv.camera_info_to_K(msg, image_size=(320, 240)), conv.default_K(320, 240))


# "_" / "!!" / " - ": only marks — the parameter was taken and every frame answered bad_input ("names nothing")
@pytest.mark.parametrize("label", ["", "   ", "cup\x00", "ball\nthrow", "a\x1b[31m", "x" * 500, 5, "_", "!!", " - ",
                                   "！！", "…"])  # NFKC (as the text encoder reads it): marks too
def test_bad_labels(label):
    with pytest.raises(conv.InputError) as ei:
        conv.validate_label(label)
    assert ei.value.reason == "bad_label"


def test_good_labels_kept():
    assert conv.validate_label("  coffee mug ") == "coffee mug"
    assert conv.validate_label("tasse à café") == "tasse à café"
    assert conv.validate_label("⚽") == "⚽" and conv.validate_label("r2-d2!") == "r2-d2!"  # not only marks


def test_contact_cloud_layout_and_roundtrip():
    pts = RNG.normal(size=(11, 3)).astype(np.float32)
    c = RNG.uniform(size=11).astype(np.float32)
    msg = conv.make_contact_cloud(pts, c)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "contact"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    assert (msg.point_step, msg.row_step, msg.width, msg.height) == (16, 176, 11, 1)
    assert len(msg.data) == 176
    back = conv.cloud_to_numpy(msg)
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1), pts)
    np.testing.assert_array_equal(back["contact"], c)
    empty = conv.make_contact_cloud(np.zeros((0, 3)), np.zeros(0))
    assert empty.width == 0 and len(empty.data) == 0
    with pytest.raises(ValueError):
        conv.make_contact_cloud(pts, c[:3])
    # the free grasp regions carry their surface normals (PCL PointNormal names), the approach axes of a gripper
    nrm = RNG.normal(size=(11, 3)).astype(np.float32)
    msg = conv.make_contact_cloud(pts, np.zeros(11, np.float32), normals=nrm)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "contact", "normal_x", "normal_y", "normal_z"]
    assert [f.offset for f in msg.fields][4:] == [16, 20, 24] and msg.point_step == 28 and len(msg.data) == 28 * 11
    back = conv.cloud_to_numpy(msg)
    np.testing.assert_array_equal(np.stack([back["normal_x"], back["normal_y"], back["normal_z"]], 1), nrm)
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1), pts)
    with pytest.raises(ValueError):
        conv.make_contact_cloud(pts, c, normals=nrm[:3])


def test_cloud_reader_padded_rows_counts_and_byte_order():
    """Clouds from other publishers: rows padded past width*point_step (row_step), a field with count 3, big-endian
    data. Every value is read from its own row; a cloud shorter than its layout is refused, not read short."""
    from sensor_msgs.msg import PointCloud2, PointField

    h, w, step, row_step = 2, 3, 16, 64  # 16 bytes of padding after each row of 48
    xyz = RNG.normal(size=(h, w, 3)).astype(">f4")
    ids = np.arange(h * w, dtype=">u2").reshape(h, w)
    buf = bytearray(h * row_step)
    for r in range(h):
        for c in range(w):
            o = r * row_step + c * step
            buf[o:o + 12] = xyz[r, c].tobytes()
            buf[o + 12:o + 14] = ids[r, c:c + 1].tobytes()
            buf[o + 14:o + 16] = b"\xff\xff"
        buf[r * row_step + w * step:(r + 1) * row_step] = b"\xee" * (row_step - w * step)
    msg = PointCloud2(height=h, width=w, point_step=step, row_step=row_step, is_bigendian=True, data=bytes(buf),
                      fields=[PointField(name="xyz", offset=0, datatype=PointField.FLOAT32, count=3),
                              PointField(name="id", offset=12, datatype=PointField.UINT16, count=1)])
    back = conv.cloud_to_numpy(msg)
    assert back["xyz"].shape == (6, 3) and back["xyz"].dtype == np.float32
    np.testing.assert_array_equal(back["xyz"], xyz.reshape(6, 3).astype(np.float32))
    np.testing.assert_array_equal(back["id"], np.arange(6))
    msg.data = bytes(buf[:-row_step])
    with pytest.raises(ValueError, match="bytes"):
        conv.cloud_to_numpy(msg)
    one_row = conv.make_contact_cloud(np.ones((3, 3)), np.full(3, 0.5))
    one_row.row_step = 0  # publishers leave it 0 for one row; read_points ignores it
    np.testing.assert_array_equal(conv.cloud_to_numpy(one_row)["contact"], np.full(3, 0.5, np.float32))
    msg.data = bytes(buf)
    msg.fields[1].offset = 15  # 2 bytes from 15 run past point_step 16
    with pytest.raises(ValueError, match="point_step"):
        conv.cloud_to_numpy(msg)


def test_contact_cloud_part_field():
    """The human cloud's uint8 ``part`` (offset 16, point_step 20); ids outside 0..254 read as PART_UNKNOWN."""
    pts = RNG.normal(size=(5, 3)).astype(np.float32)
    c = RNG.uniform(size=5).astype(np.float32)
    msg = conv.make_contact_cloud(pts, c, part=np.array([10, 11, -1, 0, 300]))
    assert [(f.name, f.offset, f.datatype) for f in msg.fields][-1] == ("part", 16, 2)  # PointField.UINT8
    assert (msg.point_step, msg.row_step, len(msg.data)) == (20, 100, 100)
    back = conv.cloud_to_numpy(msg)
    assert back["part"].dtype == np.uint8
    np.testing.assert_array_equal(back["part"], [10, 11, conv.PART_UNKNOWN, 0, conv.PART_UNKNOWN])
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1), pts)
    np.testing.assert_array_equal(back["contact"], c)
    # the bytes as any PointCloud2 reader sees them: a structured dtype from fields/offsets/point_step
    dt = np.dtype({"names": [f.name for f in msg.fields], "formats": ["<f4"] * 4 + ["u1"],
                   "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    rec = np.frombuffer(bytes(msg.data), dt)
    np.testing.assert_array_equal(rec["part"], back["part"])
    np.testing.assert_array_equal(rec["z"], pts[:, 2])
    assert conv.make_contact_cloud(np.zeros((0, 3)), np.zeros(0), part=np.zeros(0)).point_step == 20
    with pytest.raises(ValueError, match="part"):
        conv.make_contact_cloud(pts, c, part=np.zeros(3))


def test_converter_is_named():
    assert conv.image_converter_name() in ("cv_bridge", "numpy")


# ------------------------------------------------------------------ compressed transports (image_transport plugins)
needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None,
                               reason="OpenCV decodes them; not installed (the default-model install has it)")


def _compressed(fmt: str, data: bytes):
    return SimpleNamespace(format=fmt, data=data)


def _png(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@needs_cv2
@pytest.mark.parametrize("fmt, order", [
    ("rgb8; png compressed bgr8", "bgr"),  # image_transport: colour goes out in OpenCV's BGR order
    ("bgr8; png compressed bgr8", "bgr"),
    ("png", "bgr"),  # the older plugin: no encoding signalled
    ("rgb8; png compressed rgb8", "rgb"),  # buffer encoded in RGB order
])
def test_compressed_colour_png_decodes_exactly(fmt, order):
    rgb = RNG.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    stored = rgb[:, :, ::-1] if order == "bgr" else rgb  # what the publisher handed to imencode
    out = conv.compressed_to_rgb8(_compressed(fmt, _png(np.ascontiguousarray(stored))))
    assert out.dtype == np.uint8 and out.shape == (9, 11, 3)
    np.testing.assert_array_equal(out, rgb)


@needs_cv2
def test_compressed_mono_alpha_16bit_and_jpeg():
    grey = RNG.integers(0, 256, size=(6, 5), dtype=np.uint8)
    np.testing.assert_array_equal(conv.compressed_to_rgb8(_compressed("mono8; png compressed ", _png(grey))),
                                  np.repeat(grey[:, :, None], 3, axis=2))
    bgra = RNG.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(conv.compressed_to_rgb8(_compressed("bgra8; png compressed bgra8", _png(bgra))),
                                  bgra[:, :, 2::-1])
    g16 = RNG.integers(0, 65536, size=(6, 5), dtype=np.uint16)
    np.testing.assert_array_equal(conv.compressed_to_rgb8(_compressed("mono16; png compressed ", _png(g16)))[:, :, 0],
                                  (g16 >> 8).astype(np.uint8))
    # jpeg (lossy): a smooth image comes back within a few grey levels, channels in the right order
    yy, xx = np.mgrid[0:64, 0:80]
    rgb = np.stack([xx * 3, yy * 3, np.full_like(xx, 40)], axis=2).astype(np.uint8)
    data = conv.encode_jpeg(rgb[:, :, ::-1], 95)
    out = conv.compressed_to_rgb8(_compressed("rgb8; jpeg compressed bgr8", data))
    assert np.abs(out.astype(int) - rgb).mean() < 2.0


@needs_cv2
@pytest.mark.parametrize("fmt, data, reason, words", [
    ("jpeg", b"", "bad_compressed", "no data"),
    ("rgb8; jpeg compressed bgr8", b"\xff\xd8\xff\xe0 not really a jpeg", "bad_compressed", "truncated or corrupt"),
    ("16UC1; compressedDepth png", b"\x00" * 40, "bad_encoding", "compressed depth image on the colour image topic"),
])
def test_bad_compressed_images_name_the_problem(fmt, data, reason, words):
    with pytest.raises(conv.InputError, match=words) as ei:
        conv.compressed_to_rgb8(_compressed(fmt, data))
    assert ei.value.reason == reason


def _depth_header(a: float = 0.0, b: float = 0.0) -> bytes:
    # compressed_depth_image_transport's ConfigHeader: int32 format (INV_DEPTH = 0), float32 depthParam[2]
    return np.array([0], "<i4").tobytes() + np.array([a, b], "<f4").tobytes()


@needs_cv2
def test_compressed_depth_16uc1_millimetres():
    mm = RNG.integers(0, 6000, size=(7, 9)).astype(np.uint16)
    mm[0, 0] = 0
    for fmt in ("16UC1; compressedDepth png", "16UC1; compressedDepth", "16UC1"):  # current and older plugins
        out = conv.compressed_depth_to_metres(_compressed(fmt, _depth_header() + _png(mm)))
        assert out.dtype == np.float32 and out.shape == mm.shape
        assert np.isnan(out[mm == 0]).all()
        np.testing.assert_allclose(out[mm > 0], mm[mm > 0] * 1e-3, rtol=1e-6)


@needs_cv2
def test_compressed_depth_32fc1_inverse_depth_quantisation():
    """The plugin's 32FC1 coding (its defaults depth_quantization 100, depth_max 10 m), encoded here as its publisher
    does: q = uint16(A / d + B), A = z0 (z0 + 1), B = 1 - A / depth_max; 0 for NaN and d >= depth_max."""
    z0, dmax = 100.0, 10.0
    A = np.float32(z0 * (z0 + 1.0))
    B = np.float32(1.0 - A / dmax)
    d = RNG.uniform(0.3, 9.5, size=(8, 10)).astype(np.float32)
    d[1, 1], d[2, 2] = np.nan, 12.0
    with np.errstate(invalid="ignore"):
        q = np.where(d < dmax, A / d + B, 0).astype(np.uint16)
    out = conv.compressed_depth_to_metres(_compressed("32FC1; compressedDepth png", _depth_header(A, B) + _png(q)))
    ok = d < dmax
    assert np.isnan(out[~ok]).all() and np.isfinite(out[ok]).all()
    # one quantisation step of inverse depth is d² / A: the truncation's error bound
    assert np.all(np.abs(out[ok] - d[ok]) <= d[ok] ** 2 / A + 1e-6)


@needs_cv2
@pytest.mark.parametrize("fmt, data, words", [
    ("16UC1; compressedDepth rvl", _depth_header() + b"\x00" * 16, "rvl codec is not supported"),
    ("rgb8; jpeg compressed bgr8", _depth_header() + b"\x00" * 16, "not a compressedDepth image"),
    ("8UC3; compressedDepth png", _depth_header() + b"\x00" * 16, "depth must be 16UC1"),
    ("16UC1; compressedDepth png", b"\x00" * 12, "no compressedDepth header"),
    ("16UC1; compressedDepth png", _depth_header() + b"\x89PNG broken", "truncated or corrupt"),
])
def test_bad_compressed_depth_names_the_problem(fmt, data, words):
    with pytest.raises(conv.InputError, match=words):
        conv.compressed_depth_to_metres(_compressed(fmt, data))


@needs_cv2
def test_compressed_depth_rejects_8bit_png_and_bad_quantisation():
    with pytest.raises(conv.InputError, match="not the 16-bit single-channel") as ei:
        conv.compressed_depth_to_metres(_compressed("16UC1; compressedDepth png",
                                                    _depth_header() + _png(np.zeros((4, 4), np.uint8))))
    assert ei.value.reason == "bad_depth"
    q = _png(np.full((4, 4), 500, np.uint16))
    with pytest.raises(conv.InputError, match="quantisation parameters"):
        conv.compressed_depth_to_metres(_compressed("32FC1; compressedDepth png", _depth_header(float("nan"), 1.0) + q))


def test_transport_topics_follow_image_transport_naming():
    assert conv.transport_topic("/camera/color/image_raw", "compressed") == "/camera/color/image_raw/compressed"
    assert conv.transport_topic("/robot/depth/", "compressedDepth") == "/robot/depth/compressedDepth"
    assert conv.transport_topic("/camera/image_raw", "raw") == "/camera/image_raw"


def test_listener_line_names_the_body_parts_of_the_human_cloud():
    from interactvlm_ros.bodies.parts import PART_ID
    from interactvlm_ros.ros.listener import describe

    part = np.array([PART_ID["right_hand"]] * 3 + [PART_ID["left_hand"]] * 2 + [PART_ID["right_forearm"]])
    human = conv.make_contact_cloud(np.zeros((6, 3)), np.full(6, 0.9), part=part)
    assert describe("human_contacts", human).endswith("6 points, contact max 0.90 on right_hand, left_hand, right_forearm")
    obj = conv.make_contact_cloud(np.zeros((2, 3)), np.full(2, 0.7))
    assert describe("object_contacts", obj).endswith("2 points, contact max 0.70")


def _detection(cls, score, cx, cy, sx, sy, v4=True):
    """vision_msgs/Detection2D as the installed message has it (>= 4: center.position, results[].hypothesis; 3.x:
    center.x, results[].id) — the attributes detections_to_boxes reads, nothing else."""
    centre = SimpleNamespace(position=SimpleNamespace(x=cx, y=cy), theta=0.0) if v4 else SimpleNamespace(x=cx, y=cy, theta=0.0)
    res = SimpleNamespace(hypothesis=SimpleNamespace(class_id=cls, score=score)) if v4 else SimpleNamespace(id=cls, score=score)
    return SimpleNamespace(bbox=SimpleNamespace(center=centre, size_x=sx, size_y=sy), results=[res])


@pytest.mark.parametrize("v4", [True, False])
def test_detections_to_boxes_both_vision_msgs_layouts(v4):
    msg = SimpleNamespace(detections=[_detection("person", 0.9, 100, 200, 80, 300, v4),
                                      _detection("cup", 0.7, 320.5, 240, 40, 60, v4)])
    boxes = conv.detections_to_boxes(msg)
    assert boxes == [("person", 0.9, (60.0, 50.0, 140.0, 350.0)), ("cup", 0.7, (300.5, 210.0, 340.5, 270.0))]
    two = _detection("cup", 0.2, 10, 10, 4, 4, v4)
    two.results.append(SimpleNamespace(hypothesis=SimpleNamespace(class_id="mug", score=0.6)) if v4
                       else SimpleNamespace(id="mug", score=0.6))
    assert conv.detections_to_boxes(SimpleNamespace(detections=[two]))[0][:2] == ("mug", 0.6)  # best hypothesis
    assert conv.detections_to_boxes(SimpleNamespace(detections=[])) == []
    with pytest.raises(conv.InputError, match="detection 0") as ei:
        conv.detections_to_boxes(SimpleNamespace(detections=[_detection("cup", 0.5, math.nan, 1, 2, 2, v4)]))
    assert ei.value.reason == "bad_detections"
    with pytest.raises(conv.InputError, match="sizes >= 0"):
        conv.detections_to_boxes(SimpleNamespace(detections=[_detection("cup", 0.5, 1, 1, -2, 2, v4)]))


def test_choose_box_by_label_synonym_or_class_id():
    boxes = [("person", 0.95, (0, 0, 9, 9)), ("mug", 0.5, (1, 1, 5, 5)), ("Cup", 0.8, (2, 2, 6, 6)),
             ("41", 0.9, (3, 3, 7, 7))]
    assert conv.choose_box(boxes, "cup") == ((2, 2, 6, 6), "")  # 'Cup' and 'mug' name it; the higher score wins
    assert conv.choose_box(boxes, "mug") == ((2, 2, 6, 6), "")  # same library category
    assert conv.choose_box(boxes, "cup", class_id="41") == ((3, 3, 7, 7), "")  # COCO's numeric id
    box, why = conv.choose_box(boxes, "ball")
    assert box is None and "'ball'" in why and "'mug'" in why and "object_detection_class" in why
    box, why = conv.choose_box(boxes, "cup", class_id="47")
    assert box is None and "'47'" in why
    # a zero-size box (a detector's placeholder) locates nothing: the next best one, or none with the reason
    assert conv.choose_box([("cup", 0.99, (4, 4, 4, 4))] + boxes, "cup") == ((2, 2, 6, 6), "")
    box, why = conv.choose_box([("cup", 0.99, (4, 4, 4.5, 9))], "cup")
    assert box is None and "1 box(es) under a pixel" in why


def test_binned_and_roi_camera_info_gives_the_intrinsics_of_the_images_sent():
    """image_geometry's adjustment: ROI offset moves the principal point, then binning divides fx, cx (fy, cy); the
    image size is the ROI over the binning. Without binning/ROI, K and the size are the calibration's."""
    from sensor_msgs.msg import CameraInfo, RegionOfInterest

    K = np.array([[900.0, 0, 640.0], [0, 910.0, 360.0], [0, 0, 1]])
    info = CameraInfo(width=1280, height=720, k=K.reshape(-1).tolist())
    same, size = conv.camera_info_binning_roi(info, conv.camera_info_to_K(info))
    np.testing.assert_array_equal(same, K)
    assert size == (1280, 720)
    info.binning_x, info.binning_y = 2, 2
    Kb, size = conv.camera_info_binning_roi(info, conv.camera_info_to_K(info))
    np.testing.assert_allclose(Kb, [[450.0, 0, 320.0], [0, 455.0, 180.0], [0, 0, 1]])
    assert size == (640, 360)
    info.roi = RegionOfInterest(x_offset=100, y_offset=40, width=800, height=600)
    Kr, size = conv.camera_info_binning_roi(info, conv.camera_info_to_K(info))
    np.testing.assert_allclose(Kr, [[450.0, 0, 270.0], [0, 455.0, 160.0], [0, 0, 1]])
    assert size == (400, 300)
    # a point projects to the same place: full-resolution pixel u -> (u - x_offset) / binning
    X = np.array([0.3, -0.2, 2.0])
    full, binned = K @ X, Kr @ X
    np.testing.assert_allclose(((full[:2] / full[2]) - [100, 40]) / 2, binned[:2] / binned[2])
    info.roi = RegionOfInterest(x_offset=600, y_offset=0, width=800, height=600)
    with pytest.raises(conv.InputError, match="outside the calibrated 1280x720"):
        conv.camera_info_binning_roi(info, K)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer mosaic of ``rgb``: ``pattern`` names the colours at (0,0), (0,1), (1,0), (1,1)."""
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for (dy, dx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(c)]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_images_are_demosaiced(pattern, bits):
    """A raw colour camera (FLIR/Spinnaker, machine-vision drivers) publishes its Bayer mosaic: it was refused as
    bad_encoding; now demosaiced as cv_bridge does (OpenCV names the pattern by its second row: rggb is BayerBG)."""
    colour = np.array([200, 90, 30], np.uint8)
    raw = _mosaic(np.broadcast_to(colour, (8, 10, 3)).copy(), pattern)
    if bits == 16:
        raw = raw.astype(np.uint16) << 8
    out = conv.image_to_rgb8(_msg(raw, f"bayer_{pattern}{bits}", pad=4))
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(0), colour, atol=2)
    with pytest.raises(conv.InputError, match="odd size"):
        conv.image_to_rgb8(_msg(raw[:, :9], f"bayer_{pattern}{bits}"))


@pytest.mark.parametrize("encoding, order", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"),
                                             ("yuyv", "YUYV")])
def test_yuv422_images_are_converted(encoding, order):
    """usb_cam's raw yuyv / uyvy (ROS yuv422 is UYVY, yuv422_yuy2 YUYV): refused before; converted by OpenCV (BT.601
    video range): Y 120, U 100, V 160 is RGB ≈ (172, 106, 65)."""
    y, u, v = 120, 100, 160
    quad = {"UYVY": [u, y, v, y], "YUYV": [y, u, y, v]}[order]
    raw = np.tile(np.array(quad, np.uint8).reshape(1, 2, 2), (6, 4, 1))  # 6 rows of 8 pixels, 2 bytes each
    out = conv.image_to_rgb8(_msg(raw, encoding))
    assert out.shape == (6, 8, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [172, 106, 65], atol=3)
    with pytest.raises(conv.InputError, match="odd width"):
        conv.image_to_rgb8(_msg(raw[:, :3], encoding))


class _CvBridgeGetCvType(_CvBridgeLike):
    """cv_bridge's getCvType (Humble/Jazzy cv_bridge.cpp): of the YUV 4:2:2 names it knows yuv422 and yuv422_yuy2 only;
    any other encoding raises CvBridgeError (a TypeError) from imgmsg_to_cv2."""

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        if msg.encoding in ("uyvy", "yuyv"):
            raise TypeError(f"Unrecognized image encoding [{msg.encoding}]")
        return super().imgmsg_to_cv2(msg, desired_encoding)


@pytest.mark.parametrize("encoding, quad", [("uyvy", [100, 120, 160, 120]), ("yuyv", [120, 100, 120, 160])])
def test_uyvy_yuyv_never_reach_cv_bridge(monkeypatch, encoding, quad):
    """With cv_bridge importable (a ROS install), 'uyvy' / 'yuyv' went to it and every frame raised CvBridgeError (not
    an InputError: an internal error per frame); they take the numpy decoder, as yuv422 gives the same colour."""
    monkeypatch.setattr(conv, "_BRIDGE", _CvBridgeGetCvType())
    raw = np.tile(np.array(quad, np.uint8).reshape(1, 2, 2), (6, 4, 1))
    out = conv.image_to_rgb8(_msg(raw, encoding))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [172, 106, 65], atol=3)


def test_replay_plays_a_numbered_folder_in_number_order(tmp_path):
    """ffmpeg's ``%d.png`` frames are not zero-padded: a plain name sort played 1, 10, 11, 2, ... (jumps in time)."""
    import cv2

    from interactvlm_ros.ros.replay import FrameSource

    order = [1, 2, 9, 10, 11, 100]
    for i in order:
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 4, 3), i, np.uint8))
        cv2.imwrite(str(tmp_path / f"frame_{i}.jpg"), np.full((4, 4, 3), i, np.uint8))
    src = FrameSource(tmp_path)
    names = [p.name for p in src._files]
    assert names == [f"{i}.png" for i in order] + [f"frame_{i}.jpg" for i in order]
    assert [int(src.next()[0, 0, 0]) for _ in order] == order


@pytest.mark.parametrize("args, words", [(["--max-frames", "-1"], "--max-frames -1"), (["--rate", "nan"], "--rate")])
def test_replay_refuses_a_negative_max_frames_and_a_nan_rate(args, words, tmp_path, capsys):
    """Refused before ROS starts (exit code 2, one line), instead of one frame (-1) / frames as fast as read (nan)."""
    import cv2

    from interactvlm_ros.ros.replay import main

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    assert main([str(tmp_path / "a.png"), *args]) == 2
    assert words in capsys.readouterr().err


def test_listener_survives_a_message_it_cannot_describe():
    """A malformed output message (a cloud shorter than its layout) is recorded and named in one line; it used to
    raise out of the callback and end the client's spin thread, silently: nothing was received afterwards."""
    import collections
    import threading

    from interactvlm_ros.ros.listener import ContactClient

    client = ContactClient.__new__(ContactClient)  # the recorder only: no rclpy context, no DDS
    lines = []
    client.printer, client._lock = lines.append, threading.Lock()
    client.received = {"human_contacts": collections.deque()}
    bad = conv.make_contact_cloud(np.zeros((4, 3)), np.full(4, 0.9))
    bad.data = bytes(bad.data)[:10]
    cb = client._recorder("human_contacts")
    cb(bad)
    cb(conv.make_contact_cloud(np.zeros((2, 3)), np.full(2, 0.7)))
    assert len(client.received["human_contacts"]) == 2
    assert lines[0].startswith("[human_contacts] unreadable PointCloud2: ValueError: PointCloud2 data has 10 bytes")
    assert lines[1].endswith("2 points, contact max 0.70")
