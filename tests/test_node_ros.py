"""The contact node over real rclpy / Fast DDS on loopback, with the real default model.

The node runs as a subprocess (``python -m interactvlm_ros.ros.node``, i.e. the console script) on its
own ROS domain; the test process publishes camera input and records the outputs with ContactClient.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from interactvlm_ros.bodies.parts import PART_NAMES  # noqa: E402
from interactvlm_ros.ros import conversions as conv  # noqa: E402
from interactvlm_ros.ros.markers import LABEL_NAMESPACES, NAMESPACES, check_marker_array  # noqa: E402

DOMAIN = 87
LOAD_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def photo(test_data):
    bgr = cv2.imread(str(test_data / "person_catching_ball.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def node(contact_node, tmp_path_factory, photo):
    log = tmp_path_factory.mktemp("node") / "node.log"
    params = {"object_label": "ball", "image_qos": "reliable", "model": "default"}
    with contact_node(DOMAIN, params, log, load_timeout=LOAD_TIMEOUT) as (proc, client):
        yield proc, client, log


_SEQ = [1000]


def _send_and_wait(client, rgb, frame_id="test_cam", timeout=60.0):
    """Publish one good frame with a unique stamp; return {kind: message} of its outputs (or {} on timeout)."""
    _SEQ[0] += 1
    stamp = client.stamp(_SEQ[0], 123456)
    client.publish_image(rgb, stamp=stamp, frame_id=frame_id)

    def outputs():
        got = {}
        for kind in ("markers", "human_contacts", "object_contacts"):
            for m in client.messages(kind):
                h = m.markers[0].header if kind == "markers" else m.header
                if (h.stamp.sec, h.stamp.nanosec) == (stamp.sec, stamp.nanosec):
                    got[kind] = m
        return got

    client.wait_for(lambda: len(outputs()) == 3, timeout)
    return outputs()


def _alive(proc):
    return proc.poll() is None


def test_real_photo_end_to_end(node, photo):
    proc, client, _ = node
    client.clear()
    out = _send_and_wait(client, photo, frame_id="camera_color_optical_frame")
    assert set(out) == {"markers", "human_contacts", "object_contacts"}, out.keys()
    arr = out["markers"]
    assert check_marker_array(arr) == []
    for m in arr.markers:
        assert m.header.frame_id == "camera_color_optical_frame"
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (_SEQ[0], 123456)
    assert arr.markers[0].action == Marker.DELETEALL
    by_ns = {m.ns: m for m in arr.markers[1:]}
    assert set(by_ns) == set(NAMESPACES) | set(LABEL_NAMESPACES)
    assert len(by_ns["human/mesh"].points) >= 3 * 1000  # the body mesh, decimated for RViz
    assert len(by_ns["object/mesh"].points) > 0
    for kind in ("human_contacts", "object_contacts"):
        cloud = out[kind]
        assert cloud.header.frame_id == "camera_color_optical_frame"
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "contact"] + ["part"] * (kind == "human_contacts")
        c = conv.cloud_to_numpy(cloud)
        assert np.all((c["contact"] >= 0.5) & (c["contact"] <= 1.0))  # threshold 0.5 by default
        assert np.all(np.isfinite(c["x"]))
    # which body part each contact point is on: catching a ball, the strongest contact is on a hand
    human = conv.cloud_to_numpy(out["human_contacts"])
    assert human["part"].max() < len(PART_NAMES)
    assert PART_NAMES[int(human["part"][np.argmax(human["contact"])])] in ("left_hand", "right_hand")
    # contact spheres: the display mesh's contact vertices (a subset of the full-resolution cloud)
    assert len(by_ns["human/contacts"].points) <= out["human_contacts"].width
    assert _wait_counter(client, "frames_processed", 1) >= 1
    assert client.last_diagnostics()["model"] == "default"
    parts = client.last_diagnostics()["contact_parts"]  # 'right_hand 0.99, left_hand 0.97, ...'
    assert parts.split(" ", 1)[0] in ("left_hand", "right_hand"), parts
    # RViz text: one label per part in contact (the same parts as the cloud's), and the object's label
    texts = [m.text for m in arr.markers if m.ns == "human/labels"]
    assert {t.rsplit(" ", 1)[0].replace(" ", "_") for t in texts} == {PART_NAMES[int(i)] for i in np.unique(human["part"])}
    assert [m.text for m in arr.markers if m.ns == "object/label"] == ["ball"]
    # the markers came from the visuals thread, which reports itself in /diagnostics
    assert _wait_counter(client, "markers/published", 1) >= 1
    assert float(client.last_diagnostics()["stage_ms/visuals"]) > 0
    assert _alive(proc)


def _bad_image(**fields):
    m = Image()
    m.header.frame_id = "test_cam"
    m.height, m.width, m.encoding, m.is_bigendian, m.step = 4, 4, "rgb8", 0, 12
    m.data = bytes(48)
    for k, v in fields.items():
        setattr(m, k, v)
    return m


BAD_IMAGES = {
    "bad_encoding": dict(encoding="yuv422_not_a_thing"),
    "bad_step": dict(step=5),
    "short_data": dict(height=480, width=640, step=1920, data=bytes(1000)),
    "empty_image": dict(height=0, width=0, step=0, data=b""),
    "image_too_large": dict(height=20000, width=20000, step=60000, data=bytes(64)),
}


def _counter(client, key):
    return int(client.last_diagnostics().get(key, 0))


def _wait_counter(client, key, at_least, timeout=10.0):
    client.wait_for(lambda: _counter(client, key) >= at_least, timeout)
    return _counter(client, key)


@pytest.mark.parametrize("reason", sorted(BAD_IMAGES))
def test_bad_image_skipped_then_good_frame_processed(node, photo, reason):
    proc, client, log = node
    before = _counter(client, f"bad_input/{reason}")
    client.publish_raw(_bad_image(**BAD_IMAGES[reason]))
    assert _wait_counter(client, f"bad_input/{reason}", before + 1) == before + 1
    out = _send_and_wait(client, photo)
    assert set(out) == {"markers", "human_contacts", "object_contacts"}
    assert _alive(proc)
    lines = [ln for ln in log.read_text().splitlines() if f"skipped ({reason})" in ln]
    assert lines, f"no log line for {reason}"
    assert len(lines[-1]) < 400  # one clear line, no traceback


def test_repeated_bad_frames_are_all_counted_and_logged_once(node, photo):
    """A camera sending a broken stream: each frame counted in /diagnostics, at most one log line per reason per
    BAD_INPUT_LOG_PERIOD_S (the first was logged by test_bad_image_skipped_then_good_frame_processed or is this one)."""
    proc, client, log = node

    def lines():
        return sum("skipped (bad_step)" in ln for ln in log.read_text().splitlines())

    before, logged = _counter(client, "bad_input/bad_step"), lines()
    for _ in range(5):
        client.publish_raw(_bad_image(**BAD_IMAGES["bad_step"]))
        time.sleep(0.3)  # each one taken by the perception thread (a newer frame would replace it in the slot)
    assert _wait_counter(client, "bad_input/bad_step", before + 5) == before + 5
    assert lines() - logged <= 1
    assert set(_send_and_wait(client, photo)) == {"markers", "human_contacts", "object_contacts"} and _alive(proc)


def test_uncalibrated_camera_info_is_a_named_fallback(node, photo):
    """CameraInfo with k[0] == 0 (camera_info_manager before a calibration is loaded): not bad input, one fallback
    line, counted as camera_info/uncalibrated; the next calibrated CameraInfo (sent with each frame) is used again."""
    proc, client, log = node
    zeros = conv.make_camera_info(photo.shape[1], photo.shape[0])
    zeros.k, zeros.p = [0.0] * 9, [0.0] * 12
    b_info, seen = _counter(client, "bad_input/bad_camera_info"), _counter(client, "camera_info/uncalibrated")
    for _ in range(4):
        client.pub_info.publish(zeros)
        time.sleep(0.1)
    assert _wait_counter(client, "camera_info/uncalibrated", seen + 1) > seen
    assert _counter(client, "bad_input/bad_camera_info") == b_info
    fallbacks = [v for k, v in client.last_diagnostics().items() if k.startswith("fallback/")]
    assert any("uncalibrated" in v and "default intrinsics" in v for v in fallbacks), fallbacks
    assert sum("uncalibrated" in ln for ln in log.read_text().splitlines()) == 1
    assert set(_send_and_wait(client, photo)) == {"markers", "human_contacts", "object_contacts"} and _alive(proc)


def test_camera_info_of_another_size_is_a_logged_fallback(node, photo):
    """A CameraInfo for another resolution (a driver whose info and image settings differ): its K is not used for
    these images — a named fallback in /diagnostics and one log line; so is the numpy image decoder without
    cv_bridge (the pip install)."""
    proc, client, log = node
    client.pub_info.publish(conv.make_camera_info(320, 240))
    time.sleep(0.3)
    _SEQ[0] += 1
    client.publish_image(photo, stamp=client.stamp(_SEQ[0], 0), frame_id="test_cam", camera_info=False)
    text = f"camera_info is 320x240 but images are {photo.shape[1]}x{photo.shape[0]}: intrinsics ignored"
    assert client.wait_for(lambda: text in client.last_diagnostics().values(), 20.0), client.last_diagnostics()
    assert sum(f"fallback: {text}" in ln for ln in log.read_text().splitlines()) == 1
    if conv.image_converter_name() != "cv_bridge":
        assert "fallback: image conversion: numpy decoder (cv_bridge not importable)" in log.read_text()
    assert set(_send_and_wait(client, photo)) == {"markers", "human_contacts", "object_contacts"} and _alive(proc)


def test_nan_camera_info_and_depth(node, photo):
    proc, client, log = node
    info = conv.make_camera_info(640, 480)
    info.k = [float("nan")] + list(info.k[1:])
    b_info = _counter(client, "bad_input/bad_camera_info")
    client.pub_info.publish(info)
    assert _wait_counter(client, "bad_input/bad_camera_info", b_info + 1) == b_info + 1
    depth = conv.numpy_to_image(np.full((480, 640), np.inf, np.float32), "32FC1")
    b_depth = _counter(client, "bad_input/bad_depth")
    client.pub_depth.publish(depth)
    assert _wait_counter(client, "bad_input/bad_depth", b_depth + 1) == b_depth + 1
    assert "NaN/inf" in log.read_text()
    out = _send_and_wait(client, photo)
    assert len(out) == 3 and _alive(proc)


def test_bad_label_and_mesh_keep_state(node, photo):
    proc, client, log = node
    b_label = _counter(client, "bad_input/bad_label")
    client.pub_label.publish(String(data="ball\x07\x1b[2J"))
    assert _wait_counter(client, "bad_input/bad_label", b_label + 1) == b_label + 1
    b_mesh = _counter(client, "bad_input/bad_mesh")
    client.pub_mesh.publish(String(data="/nonexistent/mesh_that_is_not_there.obj"))
    assert _wait_counter(client, "bad_input/bad_mesh", b_mesh + 1) == b_mesh + 1
    d = client.last_diagnostics()
    assert d["object_label"] == "ball" and d["object_mesh"] == "(library)"
    text = log.read_text()
    assert "control characters" in text and "mesh_that_is_not_there.obj" in text
    out = _send_and_wait(client, photo)
    assert len(out) == 3 and _alive(proc)


def test_run_time_fallbacks_reach_diagnostics_and_the_ros_log(node, photo):
    """A fallback taken while running (an unknown label: the model's generic-object input, the library's stand-in
    mesh) is listed in /diagnostics and logged through the node's ROS logger, as the core's INFO lines are."""
    proc, client, log = node
    client.pub_label.publish(String(data="flux capacitor"))
    try:
        assert client.wait_for(lambda: client.last_diagnostics().get("object_label") == "flux capacitor", 10.0)
        assert len(_send_and_wait(client, photo)) == 3

        def fallbacks():
            return [v for k, v in client.last_diagnostics().items() if k.startswith("fallback/")]

        assert client.wait_for(lambda: any("'flux capacitor' is unlike every trained category" in v
                                           for v in fallbacks()), 10.0), fallbacks()
        lines = log.read_text().splitlines()
        assert any("[WARN]" in x and "[interactvlm_contact]" in x and "[models.default.predictor]" in x
                   and "flux capacitor" in x for x in lines), lines[-20:]
        assert any("[INFO]" in x and "[interactvlm_contact]" in x and "[pipeline] ContactEstimator ready" in x
                   for x in lines)
    finally:
        client.pub_label.publish(String(data="ball"))
        assert client.wait_for(lambda: client.last_diagnostics().get("object_label") == "ball", 10.0)
    assert _alive(proc)


def _param_setter(client):
    """set_param(name, str | bool) -> SetParametersResult, over the node's set_parameters service."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    cli = client.node.create_client(SetParameters, "/interactvlm_contact/set_parameters")
    assert cli.wait_for_service(timeout_sec=10.0)

    def set_param(name, value):
        if isinstance(value, bool):
            v = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        else:
            v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=v)]))
        assert client.wait_for(fut.done, 15.0)
        return fut.result().results[0]
    return set_param


def test_parameters_at_run_time(node, photo, tmp_path):
    proc, client, _ = node
    set_param = _param_setter(client)

    r = set_param("object_label", "bad\x07label")  # (a NUL would be cut by the C layer)
    assert not r.successful and "control characters" in r.reason
    r = set_param("object_mesh", "/no/such/mesh.obj")
    assert not r.successful and "'/no/such/mesh.obj' not found" in r.reason
    junk = tmp_path / "junk.obj"
    junk.write_text("this is not a mesh\n")
    r = set_param("object_mesh", str(junk))  # refused when given, not failing every frame afterwards
    assert not r.successful and "junk.obj" in r.reason and "triangle" in r.reason, r.reason
    r = set_param("model", "/elsewhere")
    assert not r.successful  # read-only: restart to change the model
    r = set_param("frame_id_override", "override_frame")
    assert r.successful
    try:
        out = _send_and_wait(client, photo, frame_id="camera_frame")
        assert out["markers"].markers[0].header.frame_id == "override_frame"
        assert out["human_contacts"].header.frame_id == "override_frame"
    finally:
        assert set_param("frame_id_override", "").successful
    d = client.last_diagnostics()
    assert d["object_label"] == "ball" and d["object_mesh"] == "(library)"
    # a valid label change through the topic is applied
    client.pub_label.publish(String(data="basketball"))
    assert client.wait_for(lambda: client.last_diagnostics().get("object_label") == "basketball", 10.0)
    client.pub_label.publish(String(data="ball"))
    assert client.wait_for(lambda: client.last_diagnostics().get("object_label") == "ball", 10.0)
    assert _alive(proc)


def test_pause_and_resume(node, photo):
    """enabled:=false pauses the node (frames counted as paused, no output, /diagnostics OK "paused"); true resumes."""
    from diagnostic_msgs.msg import DiagnosticStatus

    proc, client, _ = node
    set_param = _param_setter(client)
    assert set_param("enabled", False).successful
    try:
        assert client.wait_for(lambda: client.last_diagnostics().get("state") == "paused", 10.0)
        paused = _counter(client, "frames_paused")
        processed = _counter(client, "frames_processed")
        client.clear()
        for i in range(3):
            _SEQ[0] += 1
            client.publish_image(photo, stamp=client.stamp(_SEQ[0], 0), frame_id="test_cam")
            time.sleep(0.3)  # (the node keeps the newest image only: back-to-back frames would replace each other)
        assert _wait_counter(client, "frames_paused", paused + 3) == paused + 3
        time.sleep(1.0)
        assert client.count("human_contacts") == 0 and _counter(client, "frames_processed") == processed
        msgs = [m for _, m in list(client.received["diagnostics"])[-1:]]
        assert msgs and msgs[0].status[0].level == DiagnosticStatus.OK  # asked for: not a problem
        assert msgs[0].status[0].message == "paused (enabled:=false)"
        assert not set_param("enabled", "yes").successful  # not a bool
    finally:
        assert set_param("enabled", True).successful
    assert client.wait_for(lambda: client.last_diagnostics().get("state") == "running", 10.0)
    out = _send_and_wait(client, photo)
    assert set(out) == {"markers", "human_contacts", "object_contacts"}
    assert _alive(proc)


def test_overlay_published_when_subscribed(node, photo):
    """~/overlay (rgb8) and its image_transport sibling ~/overlay/compressed (jpeg, for a remote RViz): the same
    picture with the frame's header."""
    from sensor_msgs.msg import CompressedImage

    proc, client, _ = node
    jpegs = []
    sub = client.node.create_subscription(CompressedImage, "/interactvlm_contact/overlay/compressed", jpegs.append, 5)
    try:
        client.wait_for(lambda: sub.get_publisher_count() > 0, 5.0)
        time.sleep(0.5)  # the node's side of the match
        client.clear()
        _send_and_wait(client, photo)
        stamp = (_SEQ[0], 123456)
        assert client.wait_for(lambda: client.count("overlay") > 0, 10.0)
        img = client.messages("overlay")[-1]
        assert img.encoding == "rgb8" and img.height == 2 * 256 and img.width == 4 * 256
        arr = conv.image_to_rgb8(img)
        assert arr.std() > 5  # renders, not a blank image
        assert client.wait_for(lambda: any((j.header.stamp.sec, j.header.stamp.nanosec) == stamp for j in jpegs), 10.0)
        jpeg = [j for j in jpegs if (j.header.stamp.sec, j.header.stamp.nanosec) == stamp][0]
        raw = [m for m in client.messages("overlay") if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp][0]
        assert jpeg.format == "rgb8; jpeg compressed bgr8" and len(jpeg.data) < len(raw.data) / 5
        decoded = conv.compressed_to_rgb8(jpeg)
        assert decoded.shape == arr.shape
        assert np.abs(decoded.astype(int) - conv.image_to_rgb8(raw).astype(int)).mean() < 3.0
    finally:
        client.node.destroy_subscription(sub)


def test_diagnostics_counters_consistent(node):
    _, client, _ = node
    assert client.wait_for(lambda: "frames_received" in client.last_diagnostics(), 10.0)
    d = client.last_diagnostics()
    recv, proc_, dropped, bad = (int(d[k]) for k in ("frames_received", "frames_processed", "frames_dropped",
                                                      "frames_bad_input"))
    assert recv >= proc_ + dropped
    assert bad >= len(BAD_IMAGES) + 4
    assert re.match(r"^\d+\.\d$", d["latency_ms_p95"])
    assert d["image_conversion"] in ("cv_bridge", "numpy")
    assert d["marker_encoding"] == "cdr"  # the numpy CDR encoder matched rclpy's at start-up (ros/cdr.py)
    assert not any("markers:" in v for k, v in d.items() if k.startswith("fallback/"))
