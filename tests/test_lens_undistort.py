"""``undistort``: images (and their registered depth / object mask) resampled to the pinhole camera K with the
CameraInfo's distortion (interactvlm_ros/lens.py), checked geometrically — dots drawn where OpenCV's *projectPoints* puts 3-D
points through the distorting lens land, after rectification, where the pinhole projection puts them — and through the
node's perception / inference hand-off (the real ContactNode, an estimator double that records what it is given)."""
from __future__ import annotations

import types

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from interactvlm_ros.ros import conversions as conv  # noqa: E402
from interactvlm_ros.lens import Rectifier, RectifyError, has_distortion  # noqa: E402

W, H = 640, 480
K = np.array([[420.0, 0.0, 322.0], [0.0, 418.0, 236.0], [0.0, 0.0, 1.0]])
WEBCAM = ("plumb_bob", np.array([-0.32, 0.11, 0.0012, -0.0009, -0.015]))
FISHEYE = ("equidistant", np.array([0.05, -0.01, 0.002, -0.0005]))


def _points():
    """3-D points spread over the field of view (corners included), 1.5-3 m away."""
    u, v = np.meshgrid(np.linspace(40, W - 40, 9), np.linspace(40, H - 40, 7))
    z = np.linspace(1.5, 3.0, u.size)
    x = (u.reshape(-1) - K[0, 2]) / K[0, 0] * z
    y = (v.reshape(-1) - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], 1)


def _project(X, model, D):
    if model == "equidistant":
        pts, _ = cv2.fisheye.projectPoints(X.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    else:
        pts, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, D)
    return pts.reshape(-1, 2)


def _dots(centres):
    img = np.zeros((H, W, 3), np.uint8)
    for x, y in centres:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return img


def _centroids(img):
    n, _, stats, cents = cv2.connectedComponentsWithStats((img[:, :, 0] > 60).astype(np.uint8))
    return cents[1:][stats[1:, cv2.CC_STAT_AREA] > 10]


@pytest.mark.parametrize("model, D", [WEBCAM, FISHEYE], ids=["plumb_bob", "equidistant"])
def test_dots_through_the_lens_land_on_the_pinhole_projection(model, D):
    X = _points()
    distorted = _project(X, model, D)
    pinhole = _project(X, "plumb_bob", np.zeros(5))
    assert np.abs(distorted - pinhole).max() > 5.0  # the lens moves the outer dots visibly
    inside = np.all((distorted > 8) & (distorted < [W - 8, H - 8]), axis=1)
    out = Rectifier().apply(_dots(distorted[inside]), K, model, D)
    found = _centroids(out)
    # every pinhole position has a dot within half a pixel after rectification
    d = np.linalg.norm(found[None] - pinhole[inside][:, None], axis=2).min(1)
    assert len(found) == inside.sum() and d.max() < 0.5, d.max()


def test_depth_and_masks_nearest_no_blending_and_outside_is_no_return():
    r = Rectifier()
    depth = np.where(np.arange(W)[None, :] < W // 2, 1.0, 3.0).astype(np.float32) * np.ones((H, 1), np.float32)
    out = r.apply(depth, K, *WEBCAM, nearest=True)
    vals = set(np.unique(out[np.isfinite(out)]).tolist())
    assert vals == {1.0, 3.0}  # no 2.0 from blending across the edge
    # pincushion (k1 > 0): the rectified corners come from outside the image: no return (NaN), not 0 m
    pin = r.apply(depth, K, "plumb_bob", [0.3, 0.0, 0.0, 0.0, 0.0], nearest=True)
    assert np.isnan(pin[0, 0]) and np.isnan(pin[H - 1, W - 1]) and pin[H // 2, W // 4] == 1.0
    mask = np.zeros((H, W), bool)
    mask[200:280, 300:340] = True
    m = r.apply(mask, K, *WEBCAM, nearest=True)
    assert m.dtype == bool and 0.9 < m.sum() / mask.sum() < 1.1


def test_unsupported_distortions_are_named():
    with pytest.raises(RectifyError, match="'weird' is not supported"):
        Rectifier().apply(np.zeros((H, W), np.uint8), K, "weird", [0.1])
    with pytest.raises(RectifyError, match="3 coefficients"):
        Rectifier().apply(np.zeros((H, W), np.uint8), K, "plumb_bob", [0.1, 0.0, 0.0])
    assert not has_distortion([0, 0, 0, 0, 0]) and not has_distortion([]) and has_distortion([0, 0.01])
    assert not has_distortion(np.zeros(5), "plumb_bob")


def test_an_ideal_fisheye_with_zero_coefficients_is_still_undistorted():
    """equidistant with k1..k4 = 0 images r = f·θ, not the pinhole's f·tan θ: the corner dots are ~40 px off and
    must be moved (the node skipped any D of zeros)."""
    zero = ("equidistant", np.zeros(4))
    assert has_distortion(zero[1], zero[0])
    X = _points()
    distorted = _project(X, *zero)
    pinhole = _project(X, "plumb_bob", np.zeros(5))
    assert np.abs(distorted - pinhole).max() > 20.0
    out = Rectifier().apply(_dots(distorted), K, *zero)
    found = _centroids(out)
    d = np.linalg.norm(found[None] - pinhole[:, None], axis=2).min(1)
    assert len(found) == len(X) and d.max() < 0.5, d.max()


def test_an_ideal_fisheye_without_coefficients_is_undistorted_as_zeros():
    """A CameraInfo with distortion_model equidistant and an empty d: has_distortion says it must be undone (a fisheye
    whatever its D), but the rectifier refused 0 coefficients, so the node named a fallback and used the image as it
    is. No coefficients are the ideal fisheye: undone as k1..k4 = 0."""
    assert has_distortion([], "equidistant")
    img = _dots(_project(_points(), "equidistant", np.zeros(4)))
    r = Rectifier()
    assert np.array_equal(r.apply(img, K, "equidistant", []), r.apply(img, K, "equidistant", np.zeros(4)))


def test_a_fisheye_with_more_than_four_coefficients():
    """equidistant has k1..k4: extra coefficients that are not zero (a D of another model under the wrong
    distortion_model) were cut off silently; a driver's zero padding is still undone as k1..k4."""
    D = np.array([0.05, -0.01, 0.002, 0.0])
    img = _dots(_project(_points(), "equidistant", D))
    r = Rectifier()
    assert np.array_equal(r.apply(img, K, "equidistant", np.r_[D, 0.0]), r.apply(img, K, "equidistant", D))
    with pytest.raises(RectifyError, match="after k4 not zero"):
        Rectifier().apply(img, K, "equidistant", np.r_[D, 0.1])


# ---------------------------------------------------------------------------------------------- the node's hand-off
class EstimatorDouble:
    reconstruct = True

    def __init__(self):
        self.observed, self.depths, self.Ks = [], [], []

    def observe(self, rgb):
        self.observed.append(rgb)
        return None

    def estimate(self, rgb, label, depth=None, K=None, **kw):
        self.depths.append(depth)
        self.Ks.append(K)
        raise StopIteration  # the rest of the frame is not this test's business


@pytest.fixture
def make_node():
    made = []
    ctx = Context()
    rclpy.init(context=ctx, domain_id=98)

    def make(undistort):
        from interactvlm_ros.ros.node import ContactNode

        n = ContactNode(estimator=EstimatorDouble(), context=ctx,
                        parameter_overrides=[Parameter("undistort", value=undistort),
                                             Parameter("camera_info_wait", value=0.0)])
        made.append(n)
        return n
    yield make
    for n in made:
        n.destroy_node()
    rclpy.try_shutdown(context=ctx)


P_RECT = np.array([[380.0, 0.0, 318.0], [0.0, 380.0, 241.0], [0.0, 0.0, 1.0]])  # image_proc's rectified camera


def _camera_info(model, D):
    info = conv.make_camera_info(W, H, K)
    info.distortion_model, info.d = model, [float(v) for v in D]
    P = np.zeros((3, 4))
    P[:, :3] = P_RECT
    info.p = P.reshape(-1).tolist()
    return info


def test_node_undistorts_the_image_and_its_depth(make_node):
    node = make_node(undistort=True)
    node._on_camera_info(_camera_info(*WEBCAM))
    X = _points()
    img = _dots(_project(X, *WEBCAM))
    msg = conv.numpy_to_image(img, "rgb8", Header(frame_id="cam"))
    msg.header.stamp.sec = 5
    item = node._perceive(msg, 0.0)
    expected = Rectifier().apply(img, K, *WEBCAM)
    np.testing.assert_array_equal(node.estimator.observed[0], expected)
    assert node.stats.info["undistorted"] == "plumb_bob (5 coefficients)"
    depth = np.where(np.arange(W)[None, :] < 200, 1.0, 2.5).astype(np.float32) * np.ones((H, 1), np.float32)
    node._depths.put(5 * 10**9, depth)  # paired with the image by stamp
    with pytest.raises(StopIteration):
        node._infer(*item)
    (d,) = node.estimator.depths
    np.testing.assert_array_equal(d, Rectifier().apply(depth, K, *WEBCAM, nearest=True))
    assert not np.array_equal(d, depth) and set(np.unique(d).tolist()) == {1.0, 2.5}
    np.testing.assert_array_equal(node.estimator.Ks[0], K)  # undistorted to K itself
    # an ideal fisheye (equidistant, D = 0) is no pinhole either: its image is undistorted too
    node._on_camera_info(_camera_info("equidistant", np.zeros(4)))
    fish = _dots(_project(X, "equidistant", np.zeros(4)))
    node._perceive(conv.numpy_to_image(fish, "rgb8", Header(frame_id="cam")), 0.0)
    np.testing.assert_array_equal(node.estimator.observed[-1], Rectifier().apply(fish, K, "equidistant", np.zeros(4)))
    assert node.stats.info["undistorted"] == "equidistant (4 coefficients)"


def test_node_leaves_images_alone_when_off_and_says_so_once(make_node, monkeypatch):
    node = make_node(undistort=False)
    lines = []
    monkeypatch.setattr(node, "get_logger", lambda: types.SimpleNamespace(info=lines.append, warning=lines.append))
    for _ in range(2):
        node._on_camera_info(_camera_info(*WEBCAM))
    img = _dots(_project(_points(), *WEBCAM))
    node._perceive(conv.numpy_to_image(img, "rgb8", Header(frame_id="cam")), 0.0)
    np.testing.assert_array_equal(node.estimator.observed[0], img)
    assert len([ln for ln in lines if "undistort:=true" in ln]) == 1  # the hint, once
    # taken as a rectified image (image_rect*): fitted with P's camera, as image_geometry projects rectified images
    with pytest.raises(StopIteration):
        node._infer(*node._perceive(conv.numpy_to_image(img, "rgb8", Header(frame_id="cam")), 0.0))
    np.testing.assert_array_equal(node.estimator.Ks[-1], P_RECT)
    node._on_camera_info(_camera_info("plumb_bob", np.zeros(5)))  # no distortion: K (P is K's twin then)
    with pytest.raises(StopIteration):
        node._infer(*node._perceive(conv.numpy_to_image(img, "rgb8", Header(frame_id="cam")), 0.0))
    np.testing.assert_array_equal(node.estimator.Ks[-1], K)
    node._on_camera_info(_camera_info(*WEBCAM))
    # switched on at run time: the next frame is undistorted
    assert node.set_parameters([Parameter("undistort", value=True)])[0].successful
    node._perceive(conv.numpy_to_image(img, "rgb8", Header(frame_id="cam")), 0.0)
    assert not np.array_equal(node.estimator.observed[-1], img)


# ------------------------------------------------------------------------------------- the reconstruct CLI's --D
def test_reconstruct_cli_undistorts_with_D(test_data, tmp_path, capsys):
    pytest.importorskip("anny")
    pytest.importorskip("mediapipe")
    import json

    from interactvlm_ros.cli.main import main

    photo = str(test_data / "person_catching_ball.png")
    base = ["reconstruct", photo, "--object", "ball", "--contacts", "hands"]
    assert main([*base, "--D=-0.2,0.05,0,0", "--out", str(tmp_path / "noK")]) == 2
    assert "--D needs --K" in capsys.readouterr().err
    assert main([*base, "--K", "600,600,319.5,239.5", "--D=-0.2,x", "--out", str(tmp_path / "bad")]) == 2
    assert "expected comma-separated numbers" in capsys.readouterr().err
    out = tmp_path / "ok"
    rc = main([*base, "--K", "600,600,319.5,239.5", "--D=-0.2,0.05,0,0", "--out", str(out)])
    res = json.loads((out / "result.json").read_text())
    assert rc == 0 and res["status"] == "ok", res["message"]
    assert res["undistorted"] == {"model": "plumb_bob", "D": [-0.2, 0.05, 0.0, 0.0]}
    np.testing.assert_allclose(np.array(res["K"]), [[600, 0, 319.5], [0, 600, 239.5], [0, 0, 1]])
    # the overlay is drawn on the undistorted photo: away from the fitted meshes it equals the rectified image
    img = cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)
    rect = Rectifier().apply(img, np.array([[600, 0, 319.5], [0, 600, 239.5], [0, 0, 1.0]]), "plumb_bob",
                             np.array([-0.2, 0.05, 0, 0]))
    ov = cv2.cvtColor(cv2.imread(str(out / "overlay.png")), cv2.COLOR_BGR2RGB)
    same = np.all(ov == rect, axis=2)
    assert same.mean() > 0.5 and not np.all(img == rect)
