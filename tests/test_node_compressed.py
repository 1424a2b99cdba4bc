"""The node on image_transport's compressed topics over real rclpy / Fast DDS: ``image_transport:=compressed``
(jpeg CompressedImage on ``<image>/compressed``) and ``depth_transport:=compressedDepth`` (png on
``<depth>/compressedDepth``), the topics derived from the *remapped* base names as image_transport does; a corrupt
jpeg or an unsupported depth codec is named, counted and skipped."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("anny")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from interactvlm_ros.ros import conversions as conv  # noqa: E402

DOMAIN = 94
FRAME = "cam_color_optical_frame"
IMAGE = "/cam/color/image_raw"
DEPTH = "/cam/aligned_depth_to_color/image_raw"


@pytest.fixture(scope="module")
def compressed_node(contact_node, tmp_path_factory, test_data):
    log = tmp_path_factory.mktemp("compressed_node") / "node.log"
    params = {"object_label": "ball", "image_qos": "reliable", "model": "default", "reconstruct": True,
              "image_transport": "compressed", "depth_transport": "compressedDepth"}
    with contact_node(DOMAIN, params, log, outputs=("human_contacts",), remaps={"image": IMAGE, "depth": DEPTH},
                      wait_image_subscriber=False) as (proc, client):  # (the raw image topic is not subscribed)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {"image": client.node.create_publisher(CompressedImage, f"{IMAGE}/compressed", qos),
                "depth": client.node.create_publisher(CompressedImage, f"{DEPTH}/compressedDepth", qos)}
        # the node subscribed to <remapped base>/compressed and /compressedDepth
        assert client.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10.0), \
            {k: p.get_subscription_count() for k, p in pubs.items()}
        bgr = cv2.imread(str(test_data / "person_catching_ball.png"), cv2.IMREAD_COLOR)
        yield proc, client, log, pubs, bgr


def _counter(client, key):
    return int(client.last_diagnostics().get(key, 0))


def _jpeg(client, bgr, sec, data=None):
    h, w = bgr.shape[:2]
    m = CompressedImage(format="rgb8; jpeg compressed bgr8", data=data if data is not None else conv.encode_jpeg(bgr))
    m.header.stamp, m.header.frame_id = client.stamp(sec, 0), FRAME
    client.pub_info.publish(conv.make_camera_info(w, h, header=m.header))
    return m


def _depth_png(client, sec, shape, fmt="16UC1; compressedDepth png"):
    ok, png = cv2.imencode(".png", np.full(shape, 2500, np.uint16))  # 2.5 m everywhere
    assert ok
    m = CompressedImage(format=fmt, data=bytes(12) + png.tobytes())  # ConfigHeader (unused for 16UC1) + png
    m.header.stamp, m.header.frame_id = client.stamp(sec, 0), FRAME
    return m


def _cloud_of(client, sec, timeout):
    def of_frame():
        return [m for m in client.messages("human_contacts") if m.header.stamp.sec == sec]

    client.wait_for(lambda: bool(of_frame()), timeout)
    return of_frame()


def test_jpeg_frames_and_png_depth_are_decoded_and_paired(compressed_node):
    proc, client, log, pubs, bgr = compressed_node
    matched = _counter(client, "depth/matched")
    pubs["depth"].publish(_depth_png(client, 5000, bgr.shape[:2]))
    time.sleep(0.3)
    pubs["image"].publish(_jpeg(client, bgr, 5000))
    clouds = _cloud_of(client, 5000, 60.0)
    assert clouds, f"no contact cloud for the jpeg frame / {log.read_text()[-2000:]}"
    c = conv.cloud_to_numpy(clouds[0])
    assert clouds[0].header.frame_id == FRAME
    assert len(c["contact"]) > 0 and np.all(c["contact"] >= 0.5)  # a person catching a ball: contact found
    assert client.wait_for(lambda: _counter(client, "depth/matched") == matched + 1, 10.0), client.last_diagnostics()
    d = client.last_diagnostics()
    assert d["image_transport"] == "compressed" and d["depth_transport"] == "compressedDepth"
    assert not [k for k in d if k.startswith("bad_input/")], d
    assert proc.poll() is None


def test_corrupt_jpeg_is_named_counted_and_skipped(compressed_node):
    proc, client, log, pubs, bgr = compressed_node
    before = _counter(client, "bad_input/bad_compressed")
    good = conv.encode_jpeg(bgr)
    pubs["image"].publish(_jpeg(client, bgr, 5100, data=good[: len(good) // 50]))  # truncated in transit
    assert client.wait_for(lambda: _counter(client, "bad_input/bad_compressed") == before + 1, 20.0), \
        client.last_diagnostics()
    assert "skipped (bad_compressed)" in log.read_text()
    pubs["image"].publish(_jpeg(client, bgr, 5101))  # the next good frame is processed
    assert _cloud_of(client, 5101, 60.0), log.read_text()[-2000:]
    assert not _cloud_of(client, 5100, 0.1)
    assert proc.poll() is None


def test_unsupported_depth_codec_is_named(compressed_node):
    proc, client, log, pubs, bgr = compressed_node
    before = _counter(client, "bad_input/bad_depth")
    pubs["depth"].publish(_depth_png(client, 5200, bgr.shape[:2], fmt="16UC1; compressedDepth rvl"))
    assert client.wait_for(lambda: _counter(client, "bad_input/bad_depth") == before + 1, 20.0), \
        client.last_diagnostics()
    assert "rvl codec is not supported" in log.read_text()
    assert proc.poll() is None
