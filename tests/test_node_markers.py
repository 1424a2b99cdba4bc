"""MarkerArray construction and RViz validity, without a ROS transport."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("visualization_msgs.msg")
trimesh = pytest.importorskip("trimesh")
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from interactvlm_ros.pipeline import ContactResult  # noqa: E402
from interactvlm_ros.ros import markers as mk  # noqa: E402


def _result(subdiv=3):
    body = trimesh.creation.icosphere(subdivisions=subdiv, radius=0.5)
    obj = trimesh.creation.box(extents=(1.0, 0.5, 0.25))
    hv = np.asarray(body.vertices, np.float32)
    # contact = 1 on the +x half of the sphere, 0 elsewhere
    hc = (hv[:, 0] > 0.2).astype(np.float32)
    ov = np.asarray(obj.vertices, np.float32)
    oc = np.linspace(0, 1, len(ov)).astype(np.float32)
    return ContactResult(status="ok", human_contact=hc, object_contact=oc, human_vertices=hv,
                         human_faces=np.asarray(body.faces), object_vertices=ov, object_faces=np.asarray(obj.faces))


def _header():
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = 1234, 5678
    return h


def test_marker_array_valid_and_complete():
    res = _result()
    arr = mk.MarkerBuilder(max_faces=0, threshold=0.5).build(res, _header())
    assert mk.check_marker_array(arr) == []
    assert arr.markers[0].action == Marker.DELETEALL
    by_ns = {m.ns: m for m in arr.markers[1:]}
    assert set(by_ns) == set(mk.NAMESPACES)
    for m in arr.markers:
        assert m.header.frame_id == "cam_optical"
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1234, 5678)
    mesh = by_ns["human/mesh"]
    assert mesh.type == Marker.TRIANGLE_LIST
    assert len(mesh.points) == 3 * len(res.human_faces) == len(mesh.colors)
    # the +x vertices are red, the others grey
    pts = np.array([[p.x, p.y, p.z] for p in mesh.points])
    cols = np.array([[c.r, c.g, c.b] for c in mesh.colors])
    red = pts[:, 0] > 0.25
    np.testing.assert_allclose(cols[red], np.tile(mk.RED, (red.sum(), 1)), atol=1e-6)
    grey = pts[:, 0] < 0.15
    np.testing.assert_allclose(cols[grey], np.tile(mk.GREY, (grey.sum(), 1)), atol=1e-6)
    contacts = by_ns["human/contacts"]
    assert contacts.type == Marker.SPHERE_LIST
    assert len(contacts.points) == int((res.human_contact >= 0.5).sum())
    assert len(by_ns["object/contacts"].points) == int((res.object_contact >= 0.5).sum())


def test_placement_in_optical_frame():
    res = _result()
    human = mk.camera_vertices(res, "human")
    obj = mk.camera_vertices(res, "object")
    np.testing.assert_allclose(human.mean(0), mk.HUMAN_OFFSET + 0 * human[0], atol=1e-2)
    # canonical +y (up) maps to optical -y (up in the image), canonical +z (facing) towards the camera
    top = np.argmax(res.human_vertices[:, 1])
    assert human[top, 1] < mk.HUMAN_OFFSET[1] - 0.4
    ext = obj.max(0) - obj.min(0)
    assert ext.max() == pytest.approx(mk.OBJECT_SIZE, rel=1e-5)
    assert obj.mean(0)[0] > human.max(0)[0]  # object to the right of the body


def test_display_mesh_decimated_and_cached():
    res = _result(subdiv=5)  # 20480 faces
    b = mk.MarkerBuilder(max_faces=2000)
    arr = b.build(res, _header())
    mesh = next(m for m in arr.markers if m.ns == "human/mesh")
    assert len(mesh.points) % 3 == 0 and len(mesh.points) <= 3 * 2000
    assert len(mesh.points) >= 3 * 1000
    assert mk.check_marker_array(arr) == []
    arr2 = b.build(res, _header())
    mesh2 = next(m for m in arr2.markers if m.ns == "human/mesh")
    assert len(mesh2.points) == len(mesh.points)
    assert len(b._display) == 2  # human + object, each cached once across frames


def test_a_mesh_copied_into_every_result_is_hashed_once(monkeypatch):
    """Each ContactResult owns a copy of the template (so a caller moving one cannot move the others): the builder's
    identity shortcut never hits, and the mesh was content-hashed on every frame (≈ 2 ms per call for the 13.7k-vertex
    body, several calls per frame). Copies of a mesh seen before are now matched by value; a changed mesh is new."""
    calls = []
    real = mk._mesh_key
    monkeypatch.setattr(mk, "_mesh_key", lambda v, f, m: calls.append(len(v)) or real(v, f, m))
    b = mk.MarkerBuilder(max_faces=2000)
    res = _result(subdiv=3)
    for _ in range(3):  # three frames, each with its own copies
        r = _result(subdiv=3)
        r.human_vertices, r.object_vertices = res.human_vertices.copy(), res.object_vertices.copy()
        b.build(r, _header())
    assert sorted(calls) == sorted([len(res.human_vertices), len(res.object_vertices)]), calls
    moved = _result(subdiv=3)
    moved.human_vertices = moved.human_vertices + np.float32(0.01)
    b.build(moved, _header())
    assert len(calls) == 3 and len(b._display) == 3  # the moved body: a new display mesh


def test_non_ok_result_only_clears():
    arr = mk.MarkerBuilder().build(ContactResult(status="no_person"), _header())
    assert len(arr.markers) == 1 and arr.markers[0].action == Marker.DELETEALL


def test_reconstruction_vertices_used():
    res = _result()
    shifted = res.human_vertices + np.array([0.1, 0.2, 3.0], np.float32)

    class Rec:
        status = "ok"
        human_vertices_cam = shifted
        object_vertices_cam = None

    res.reconstruction = Rec()
    np.testing.assert_allclose(mk.camera_vertices(res, "human"), shifted)
    pts, c = mk.contact_points(res, "human", 0.5)
    np.testing.assert_allclose(pts, shifted[res.human_contact >= 0.5])
    assert np.all(c >= 0.5)


def test_contact_points_carry_body_parts():
    from interactvlm_ros.bodies.parts import PART_ID, PART_NAMES

    res = _result()
    res.part_ids = (np.arange(len(res.human_contact)) % 18).astype(np.int64)
    res.part_names = list(PART_NAMES)
    pts, c, part = mk.contact_points(res, "human", 0.5, with_parts=True)
    sel = np.nonzero(res.human_contact >= 0.5)[0]
    np.testing.assert_array_equal(part, res.part_ids[sel])
    np.testing.assert_allclose(pts, mk.camera_vertices(res, "human")[sel])
    # a body model naming its parts in another order (or one the vocabulary lacks): ids of the shared vocabulary
    res.part_ids = (np.arange(len(res.human_contact)) % 3).astype(np.int64)
    res.part_names = ["right_hand", "tail", "head"]
    part = mk.contact_points(res, "human", 0.5, with_parts=True)[2]
    np.testing.assert_array_equal(part, np.array([PART_ID["right_hand"], -1, PART_ID["head"]])[res.part_ids[sel]])
    # no part ids (or the object side): -1 per point, the same points
    res.part_ids = None
    assert np.all(mk.contact_points(res, "human", 0.5, with_parts=True)[2] == -1)
    opts, oc, opart = mk.contact_points(res, "object", 0.5, with_parts=True)
    assert len(opart) == len(opts) == int((res.object_contact >= 0.5).sum()) and np.all(opart == -1)


def test_part_summary_highest_first():
    res = _result()
    n = len(res.human_contact)
    res.part_ids = np.zeros(n, np.int64)
    res.part_ids[: n // 2] = 2
    res.part_names = ["head", "neck", "left_hand"]
    res.human_contact = np.zeros(n, np.float32)
    res.human_contact[0], res.human_contact[-1] = 0.9, 0.3
    summary = res.part_summary()
    assert list(summary) == ["left_hand", "head"]  # 'neck' has no vertex
    assert summary["left_hand"] == {"max": pytest.approx(0.9), "mean": pytest.approx(0.9 / (n // 2)), "vertices": n // 2}
    from interactvlm_ros.ros.node import _parts_in_contact

    assert _parts_in_contact(res, 0.5) == "left_hand 0.90"
    assert _parts_in_contact(res, 0.2) == "left_hand 0.90, head 0.30"
    assert _parts_in_contact(res, 0.95) == "none"


def _labelled_result(known=True):
    from interactvlm_ros.bodies.parts import PART_ID, PART_NAMES

    res = _result()
    hv = res.human_vertices
    res.part_ids = np.where(hv[:, 0] > 0.2, PART_ID["right_hand"], PART_ID["head"]).astype(np.int64)
    res.part_names = list(PART_NAMES)
    res.human_contact = np.where(hv[:, 0] > 0.2, 0.97, 0.0).astype(np.float32)
    res.human_contact[np.argmin(hv[:, 0])] = 0.61  # one head vertex in contact
    res.object_label, res.label_known = "mug", known
    return res


def test_text_labels_name_the_parts_in_contact_and_the_object():
    from interactvlm_ros.bodies.parts import PART_ID

    res = _labelled_result()
    arr = mk.MarkerBuilder(max_faces=0, threshold=0.5).build(res, _header())
    assert mk.check_marker_array(arr) == []
    assert {m.ns for m in arr.markers[1:]} == set(mk.NAMESPACES) | set(mk.LABEL_NAMESPACES)
    labels = {m.id: m for m in arr.markers if m.ns == "human/labels"}
    assert set(labels) == {PART_ID["right_hand"], PART_ID["head"]}
    hand, head = labels[PART_ID["right_hand"]], labels[PART_ID["head"]]
    assert (hand.type, hand.text, head.text) == (Marker.TEXT_VIEW_FACING, "right hand 0.97", "head 0.61")
    assert hand.scale.z == pytest.approx(mk.LABEL_HEIGHT) and hand.color.a == 1.0
    # at the centre of the hand's contact vertices in the camera frame, 8 cm nearer the camera
    cam = mk.camera_vertices(res, "human")
    centre = cam[res.human_contact > 0.9].mean(0)
    pos = np.array([hand.pose.position.x, hand.pose.position.y, hand.pose.position.z])
    np.testing.assert_allclose(pos, centre * (1 - mk.LABEL_TOWARDS_CAMERA / np.linalg.norm(centre)), atol=1e-5)
    assert np.linalg.norm(centre) - np.linalg.norm(pos) == pytest.approx(mk.LABEL_TOWARDS_CAMERA, abs=1e-5)
    # the object's label, centred above the object (optical y points down)
    (obj,) = [m for m in arr.markers if m.ns == "object/label"]
    ocam = mk.camera_vertices(res, "object")
    assert obj.text == "mug" and obj.pose.position.y < ocam[:, 1].min()
    assert obj.pose.position.x == pytest.approx((ocam[:, 0].min() + ocam[:, 0].max()) / 2, abs=1e-5)
    # a label the model did not recognise says so; a part below the threshold gets no label; no label, no marker
    res = _labelled_result(known=False)
    res.human_contact[np.argmin(res.human_vertices[:, 0])] = 0.4
    arr = mk.MarkerBuilder(max_faces=0, threshold=0.5).build(res, _header())
    assert [m.text for m in arr.markers if m.ns == "object/label"] == ["mug (unknown label)"]
    assert [m.text for m in arr.markers if m.ns == "human/labels"] == ["right hand 0.97"]
    res.object_label, res.part_ids = "", None
    arr = mk.MarkerBuilder(max_faces=0, threshold=0.5).build(res, _header())
    assert {m.ns for m in arr.markers[1:]} == set(mk.NAMESPACES)


def test_checker_catches_invalid_markers():
    arr = mk.MarkerBuilder(max_faces=0).build(_result(subdiv=1), _header())
    m = next(x for x in arr.markers if x.ns == "human/mesh")
    m.points = m.points[:-1]
    m.pose.orientation.w = 0.0
    m.colors[0].a = 0.0
    probs = " | ".join(mk.check_marker_array(arr))
    assert "multiple of 3" in probs and "unit quaternion" in probs and "colours for" in probs
    arr.markers = arr.markers[1:]
    assert any("DELETEALL" in p for p in mk.check_marker_array(arr))
    arr = mk.MarkerBuilder(max_faces=0).build(_labelled_result(), _header())
    label = next(x for x in arr.markers if x.ns == "object/label")
    label.text, label.scale.z, label.pose.position.x = "", 0.0, float("nan")
    probs = " | ".join(mk.check_marker_array(arr))
    assert "without text" in probs and "scale.z" in probs and "non-finite text position" in probs


def test_diagnostics_report_counters_latency_and_reduced_rate_hand_search():
    pytest.importorskip("diagnostic_msgs.msg")
    from interactvlm_ros.ros.diagnostics import NodeStats, diagnostic_values, to_diagnostic_array

    st = NodeStats()
    st.state = "running"
    for _ in range(3):
        st.inc("received")
    st.inc("dropped")
    st.bad("bad_encoding", "image encoding 'yuv422' not supported", frame=True)
    st.bad("bad_camera_info", "camera_info K has NaN")  # not an image frame: not in frames_bad_input
    st.inc("hand_frame_search_ran")
    for _ in range(4):
        st.inc("hand_frame_search_skipped")
    st.inc_all(["person_zoom_search_ran", "person_found_zoom"])  # found only in a zoomed crop, then followed
    st.inc("person_found_roi", 3)
    st.processed("ok", 0.040, {"perception": 30.0})
    st.inc("markers_published")
    st.inc("markers_skipped", 2)
    st.stage("visuals", 12.5)  # visuals thread: kept when the next frame's stages replace the others
    st.processed("no_person", 0.060, {"perception": 31.0})
    st.inc_all(["reconstruction_ok", "reconstruction_warm"])  # one frame's counters, seen together
    st.inc_all(["reconstruction_ok"])
    kv = diagnostic_values(to_diagnostic_array(st.snapshot(), "interactvlm_contact", "test"))
    assert kv["frames_received"] == "3" and kv["frames_dropped"] == "1" and kv["frames_processed"] == "2"
    assert kv["bad_input/bad_encoding"] == "1" and kv["bad_input/bad_camera_info"] == "1"
    assert kv["frames_bad_input"] == "1" and "K has NaN" in kv["last_error"]
    assert kv["result/ok"] == "1" and kv["result/no_person"] == "1"
    assert kv["perception/hand_frame_search_ran"] == "1" and kv["perception/hand_frame_search_skipped"] == "4"
    assert kv["perception/person_zoom_search_ran"] == "1" and kv["perception/person_found_zoom"] == "1"
    assert kv["perception/person_found_roi"] == "3" and "perception/person_zoom_search_skipped" not in kv
    assert float(kv["latency_ms_p50"]) == pytest.approx(50.0) and kv["stage_ms/perception"] == "30.5"  # median
    assert kv["stage_ms_p95/perception"] == "30.9"  # numpy's linear percentile of (30, 31)
    assert kv["markers/published"] == "1" and kv["markers/skipped"] == "2" and kv["stage_ms/visuals"] == "12.5"
    assert kv["reconstruction/ok"] == "2" and kv["reconstruction/warm"] == "1"
    assert "perception/hand_frame_search_ran" not in diagnostic_values(to_diagnostic_array(NodeStats().snapshot(), "interactvlm_contact", "test"))


def test_output_rate_falls_when_outputs_stop(monkeypatch):
    """output_rate_hz (outputs over the last 5 s) kept showing the old rate for up to 5 s after the stream stopped:
    it divided by the outputs' own span. A steady 10 Hz reads 10; 2 s after the last output it reads less."""
    from interactvlm_ros.ros import diagnostics

    clock = [100.0]
    monkeypatch.setattr(diagnostics.time, "monotonic", lambda: clock[0])
    st = diagnostics.NodeStats()
    for _ in range(30):
        st.processed("ok", 0.05)
        clock[0] += 0.1
    assert st.snapshot()["output_rate_hz"] == pytest.approx(10.0, rel=0.01)
    clock[0] += 2.0
    assert st.snapshot()["output_rate_hz"] < 6.5
    clock[0] += 10.0
    assert st.snapshot()["output_rate_hz"] == 0.0


def test_diagnostics_keep_a_bounded_list_of_the_nodes_fallbacks():
    """Fallback texts that name a label (detections with none of the class, one per label a planner sends) are kept
    to the latest FALLBACKS_KEPT, the dropped ones counted; a repeated text is listed once."""
    pytest.importorskip("diagnostic_msgs.msg")
    from interactvlm_ros.ros.diagnostics import NodeStats, diagnostic_values, to_diagnostic_array

    st = NodeStats()
    n = NodeStats.FALLBACKS_KEPT + 10
    for i in range(n):
        st.fallback(f"object_detections: none of class 'thing{i}'")
        st.fallback(f"object_detections: none of class 'thing{i}'")
    kv = diagnostic_values(to_diagnostic_array(st.snapshot(), "interactvlm_contact", "test"))
    listed = [v for k, v in kv.items() if k.startswith("fallback/")]
    assert len(listed) == NodeStats.FALLBACKS_KEPT and listed[-1].endswith(f"'thing{n - 1}'")
    assert listed[0].endswith("'thing10'") and kv["fallbacks_dropped"] == "10"


def test_a_fallback_dropped_from_the_list_is_not_new_again():
    """The node logs a fallback the first time it is taken (NodeStats.fallback returns True then). A recurring one
    pushed out of the bounded list by label fallbacks is listed again when taken again, but not logged again."""
    from interactvlm_ros.ros.diagnostics import NodeStats

    st = NodeStats()
    assert st.fallback("images have an empty header.frame_id") is True
    for i in range(NodeStats.FALLBACKS_KEPT + 8):
        assert st.fallback(f"object_detections: none of class 'thing{i}'") is True
    assert "images have an empty header.frame_id" not in st.snapshot()["fallbacks"]
    assert st.fallback("images have an empty header.frame_id") is False
    assert st.snapshot()["fallbacks"][-1] == "images have an empty header.frame_id"


# ---- CDR bytes written from numpy (what the node publishes) ------------------------------------------
def _recon_result():
    res = _result(subdiv=4)

    class _Rec:  # a reconstruction: camera-frame vertices that change every frame
        status = "ok"
        human_vertices_cam = res.human_vertices + np.float32([0.1, -0.2, 2.0])
        object_vertices_cam = res.object_vertices * 0.3 + np.float32([0.4, 0.0, 1.8])

    res.reconstruction = _Rec()
    return res


@pytest.mark.parametrize("make", [_result, _recon_result, _labelled_result, lambda: ContactResult(status="no_person")])
def test_raw_markers_equal_message_markers(make):
    from rclpy.serialization import deserialize_message, serialize_message
    from visualization_msgs.msg import MarkerArray

    res = make()
    b = mk.MarkerBuilder(max_faces=500, threshold=0.5)
    msg = b.build(res, _header())
    raw = b.build_raw(res, _header())
    back = deserialize_message(raw, MarkerArray)
    assert back == msg  # every field, every point and colour
    assert len(raw) == len(serialize_message(msg))
    assert mk.check_marker_array(back) == []
    if res.status == "ok":
        mesh = next(m for m in back.markers if m.ns == "human/mesh")
        assert len(mesh.points) == len(mesh.colors) > 0 and len(mesh.points) % 3 == 0
        assert back.markers[1].header.stamp.nanosec == 5678 and back.markers[1].header.frame_id == "cam_optical"


def test_cdr_self_check_passes_and_catches_a_wrong_layout(monkeypatch):
    from interactvlm_ros.ros import cdr

    assert cdr.self_check() is None
    # a wrong layout (e.g. a ROS distro whose Marker has different fields) must be caught, not published
    real = cdr._Writer.string
    monkeypatch.setattr(cdr._Writer, "string", lambda self, s: real(self, s + "x") if s == "human/mesh" else real(self, s))
    assert "differs" in cdr.self_check() or "bytes" in cdr.self_check()
    monkeypatch.setattr(cdr._Writer, "string", real)
    # a field missing (Marker before mesh_file existed): the empty strings are not written
    monkeypatch.setattr(cdr._Writer, "string", lambda self, s: real(self, s) if s else None)
    assert "bytes" in cdr.self_check()
    monkeypatch.setattr(cdr._Writer, "string", real)
    monkeypatch.setattr(cdr, "ENCAPSULATION_LE", b"\x00\x00\x00\x00")  # big-endian header, little-endian data
    assert "byte 1 " in cdr.self_check()


def test_diagnostics_mirror_the_estimators_bounded_fallbacks():
    """/diagnostics lists the node's own fallbacks and the estimator's as it lists them now: the estimator keeps only
    the latest per-label fallbacks (pipeline.Fallbacks), so a node fed many labels does not grow its diagnostics."""
    pytest.importorskip("diagnostic_msgs.msg")
    from interactvlm_ros.pipeline import Fallbacks
    from interactvlm_ros.ros.diagnostics import NodeStats, diagnostic_values, to_diagnostic_array

    st, core = NodeStats(), Fallbacks()
    st.fallback("tf: not broadcast")
    for i in range(40):
        core.note(f"object label 'thing {i}' unknown to the library", label=True)
        st.mirror_fallbacks(core)
    fbs = st.snapshot()["fallbacks"]
    assert fbs[0] == "tf: not broadcast" and len(fbs) == 1 + Fallbacks.LABEL_KEPT + 1
    assert "thing 39" in fbs[-2] and fbs[-1].startswith("… 32 earlier label fallbacks")
    kv = diagnostic_values(to_diagnostic_array(st.snapshot(), "interactvlm_contact", "test"))
    assert len([k for k in kv if k.startswith("fallback/")]) == len(fbs)


def test_checker_catches_what_rviz_rejects():
    """RViz drops a marker whose pose/scale/color is not finite (MarkerCommon::processMessage) and errors on a
    TRIANGLE_LIST without points ("TriMesh marker ... has no points"): the checker names both."""
    arr = mk.MarkerBuilder(max_faces=0).build(_result(subdiv=1), _header())
    mesh = next(x for x in arr.markers if x.ns == "human/mesh")
    mesh.points, mesh.colors = [], []
    contacts = next(x for x in arr.markers if x.ns == "human/contacts")
    contacts.color.r = float("nan")
    obj = next(x for x in arr.markers if x.ns == "object/mesh")
    obj.scale.z, obj.pose.position.x = float("nan"), float("inf")
    obj.colors[0].g = float("nan")
    probs = " | ".join(mk.check_marker_array(arr))
    assert "human/mesh/0: TRIANGLE_LIST without points" in probs
    assert "human/contacts/0: non-finite color" in probs
    assert "object/mesh/0: non-finite pose" in probs and "object/mesh/0: non-finite scale" in probs
    assert "object/mesh/0: non-finite colours" in probs
    ok = mk.MarkerBuilder(max_faces=0).build(_labelled_result(), _header())
    assert mk.check_marker_array(ok) == []


def test_part_ids_outside_the_vocabulary_are_unknown():
    """A part id past ``PART_NAMES`` (part_names None or the shared list) names no part: 255 in the cloud, no label
    (it raised IndexError in part_labels, and went into the cloud's ``part`` field as a number naming nothing)."""
    from interactvlm_ros.ros import conversions as conv

    res = _result(subdiv=1)
    res.human_contact = np.ones(len(res.human_vertices), np.float32)
    ids = np.full(len(res.human_vertices), mk.PART_ID["back"], np.int64)
    ids[:5] = len(mk.PART_NAMES) + 22
    for names in (None, list(mk.PART_NAMES)):
        res.part_ids, res.part_names = ids, names
        pts, c, parts = mk.contact_points(res, "human", 0.5, with_parts=True)
        assert sorted(set(parts.tolist())) == [-1, mk.PART_ID["back"]]
        cloud = conv.cloud_to_numpy(conv.make_contact_cloud(pts, c, part=parts))
        assert sorted(set(cloud["part"].tolist())) == [mk.PART_ID["back"], conv.PART_UNKNOWN]
        labels = mk.MarkerBuilder(max_faces=0).part_labels(res)
        assert [(m.id, m.text) for m in labels] == [(mk.PART_ID["back"], "back 1.00")]


def test_cdr_string_with_an_embedded_nul_matches_rclpy():
    """rclpy serializes a string as a C string (it ends at an embedded NUL); the raw encoder wrote every byte, so
    the two encodings differed in length and a C++ reader (RViz) got a different text than the message path's."""
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message
    from interactvlm_ros.ros import cdr

    specs = [cdr.MarkerSpec(action=3),
             cdr.MarkerSpec("object/label", 9, 0, (0.0, 0.0, 0.04), (1.0, 1.0, 1.0, 1.0), text="cup\x00 tail")]
    for frame in ("cam", "cam\x00era"):
        w = cdr._write_marker_array(specs, 1, 2, frame)
        ours = np.frombuffer(w.payload(), np.uint8)
        ref = np.frombuffer(bytes(serialize_message(cdr.to_message(specs, Header(stamp=Time(sec=1, nanosec=2),
                                                                                 frame_id=frame)))), np.uint8).copy()
        assert len(ours) == len(ref)
        for off, n in w.padding:  # rclpy leaves alignment padding uninitialised
            k = len(cdr.ENCAPSULATION_LE) + off
            ref[k:k + n] = ours[k:k + n]
        assert ours.tobytes() == ref.tobytes()
