"""The object pose on /tf (``publish_tf``, ``object_frame_id``): the node broadcasts image frame -> object frame with
tf2_ros's TransformBroadcaster where tf2_ros is importable (a ROS install, the Docker image), and names the fallback
where it is not (the pip install: tf2_ros and tf2_msgs are not on PyPI). Here tf2_ros is a double with the real
class's constructor and ``sendTransform``; the node is the real ContactNode (rclpy, its own context) with an estimator
double, and the reconstruction it publishes is handed to ``_publish_reconstruction`` as the worker does."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from interactvlm_ros.ros.node import PARAMETERS, ContactNode  # noqa: E402


class BroadcasterDouble:
    """tf2_ros.TransformBroadcaster(node, qos=...) / .sendTransform(transform | [transforms])."""

    instances: list = []

    def __init__(self, node, qos=None):
        self.node, self.sent = node, []
        BroadcasterDouble.instances.append(self)

    def sendTransform(self, transform):  # noqa: N802 (tf2_ros's name)
        self.sent += transform if isinstance(transform, list) else [transform]


@pytest.fixture
def ctx():
    c = Context()
    rclpy.init(context=c, domain_id=96)
    yield c
    rclpy.try_shutdown(context=c)


def _node(ctx, monkeypatch, tf2: bool, **params):
    monkeypatch.setitem(sys.modules, "tf2_ros",
                        types.SimpleNamespace(TransformBroadcaster=BroadcasterDouble) if tf2 else None)  # None: ImportError
    BroadcasterDouble.instances = []
    overrides = [Parameter(k, value=v) for k, v in {"reconstruct": True, **params}.items()]
    return ContactNode(estimator=types.SimpleNamespace(reconstruct=True), context=ctx, parameter_overrides=overrides)


def _rec(T, status="ok"):
    return types.SimpleNamespace(status=status, metrics={}, object_pose=T, human_grip_poses=None, free_grasp_points=None)


def _header(sec):
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec = sec
    return h


def _tf_fallbacks(node):  # (the image-conversion fallback — no cv_bridge here — is always there)
    return [f for f in node.stats.snapshot()["fallbacks"] if f.startswith("tf:")]


def test_defaults():
    assert PARAMETERS["publish_tf"][0] is True and PARAMETERS["object_frame_id"][0] == "interactvlm_object"


def test_object_pose_is_broadcast_as_a_transform_of_the_image_frame(ctx, monkeypatch):
    node = _node(ctx, monkeypatch, tf2=True)
    try:
        (br,) = BroadcasterDouble.instances
        assert br.node is node
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("xyz", [10, -20, 35], degrees=True).as_matrix()
        T[:3, 3] = [0.12, -0.3, 1.7]
        node._publish_reconstruction(_rec(T), _header(42))
        (t,) = br.sent
        assert t.header.frame_id == "camera_color_optical_frame" and t.header.stamp.sec == 42
        assert t.child_frame_id == "interactvlm_object"
        tr, q = t.transform.translation, t.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], T[:3, 3])
        np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), T[:3, :3], atol=1e-9)
        # renamed at run time; a failed fit sends nothing
        assert node.set_parameters([Parameter("object_frame_id", value="cup")])[0].successful
        node._publish_reconstruction(_rec(T), _header(43))
        node._publish_reconstruction(_rec(None, status="object_not_visible"), _header(44))
        assert [(t.child_frame_id, t.header.stamp.sec) for t in br.sent] == [("interactvlm_object", 42), ("cup", 43)]
        assert not node.set_parameters([Parameter("object_frame_id", value=" ")])[0].successful
        snap = node.stats.snapshot()
        assert snap["counters"]["reconstruction_tf_published"] == 2 and _tf_fallbacks(node) == []
        assert snap["info"]["object_frame_id"] == "cup"  # /diagnostics shows the frame in force (was the start-up one)
    finally:
        node.destroy_node()


def test_without_tf2_ros_the_fallback_is_named_and_the_pose_still_published(ctx, monkeypatch):
    node = _node(ctx, monkeypatch, tf2=False)
    try:
        assert node._tf is None and BroadcasterDouble.instances == []
        (fb,) = _tf_fallbacks(node)
        assert "not broadcast on /tf" in fb and "tf2_ros" in fb and "~/object_pose" in fb
        node._publish_reconstruction(_rec(np.eye(4)), _header(1))  # PoseStamped as before, no error
        assert "reconstruction_tf_published" not in node.stats.snapshot()["counters"]
    finally:
        node.destroy_node()


@pytest.mark.parametrize("params", [{"publish_tf": False}, {"reconstruct": False}])
def test_no_broadcaster_and_no_fallback_when_not_asked(ctx, monkeypatch, params):
    node = _node(ctx, monkeypatch, tf2=True, **params)
    try:
        assert node._tf is None and BroadcasterDouble.instances == []
        assert _tf_fallbacks(node) == []
    finally:
        node.destroy_node()
