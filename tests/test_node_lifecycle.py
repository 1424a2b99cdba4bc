"""The managed (lifecycle) contact node over Fast DDS, driven like a lifecycle manager drives it: the real
``interactvlm-contact-lifecycle-node`` subprocess with the default model, its ``~/change_state`` / ``~/get_state``
services (lifecycle_msgs), images and outputs on their topics."""
from __future__ import annotations

import cv2
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

DOMAIN = 41
NODE = "/interactvlm_contact"


class _Lifecycle:
    """What a lifecycle manager calls (nav2's lifecycle_manager, ``ros2 lifecycle set``)."""

    def __init__(self, client):
        self.client = client
        self.change = client.node.create_client(ChangeState, f"{NODE}/change_state")
        self.get = client.node.create_client(GetState, f"{NODE}/get_state")
        assert self.change.wait_for_service(timeout_sec=30.0) and self.get.wait_for_service(timeout_sec=30.0)

    def _call(self, cli, req, timeout=240.0):
        fut = cli.call_async(req)
        assert self.client.wait_for(fut.done, timeout), f"{cli.srv_name} did not answer in {timeout} s"
        return fut.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, tid: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=tid))).success


@pytest.fixture(scope="module")
def lifecycle_node(tmp_path_factory, test_data):
    from interactvlm_ros.ros.listener import ContactClient, start_node_process, stop_process

    log = tmp_path_factory.mktemp("lifecycle") / "node.log"
    mp = pytest.MonkeyPatch()
    for k, v in (("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"), ("ROS_LOCALHOST_ONLY", "1"),
                 ("ROS_DOMAIN_ID", str(DOMAIN))):
        mp.setenv(k, v)
    proc = start_node_process(DOMAIN, {"object_label": "ball", "image_qos": "reliable", "diagnostics_period": 0.2},
                              log, lifecycle=True)
    client = ContactClient(domain_id=DOMAIN, outputs=("human_contacts", "object_contacts"))
    try:
        yield proc, client, _Lifecycle(client), log
    finally:
        client.close()
        code = stop_process(proc)
        mp.undo()
        assert code == 0, f"lifecycle node exit code {code}: {log.read_text()[-2000:]}"


def _photo(test_data):
    return cv2.cvtColor(cv2.imread(str(test_data / "person_catching_ball.png")), cv2.COLOR_BGR2RGB)


def _send(client, rgb, n: int, seq: list) -> list:
    stamps = []
    for _ in range(n):
        seq[0] += 1
        stamps.append(client.stamp(seq[0], 7))
        client.publish_image(rgb, stamp=stamps[-1])
        client.wait_for(lambda: False, 0.15)
    return stamps


def _outputs_for(client, stamps) -> int:
    want = {(s.sec, s.nanosec) for s in stamps}
    return sum((m.header.stamp.sec, m.header.stamp.nanosec) in want for m in client.messages("human_contacts"))


def test_lifecycle_transitions_gate_loading_and_processing(lifecycle_node, test_data):
    """unconfigured: nothing loaded, nothing subscribed, no diagnostics; configure: model loaded, topics created,
    diagnostics 'inactive', images dropped and counted; activate: contact published; deactivate: dropped again;
    cleanup: topics gone; configure + activate again: it works again (parameters kept, the model loaded anew)."""
    proc, client, lc, log = lifecycle_node
    rgb, seq = _photo(test_data), [5000]
    assert lc.state() == "unconfigured"
    client.wait_for(lambda: False, 1.0)
    assert client.pub_image.get_subscription_count() == 0 and client.count("diagnostics") == 0
    assert "loading model" not in log.read_text()

    assert lc.transition(Transition.TRANSITION_CONFIGURE)  # returns once the model is loaded
    assert lc.state() == "inactive"
    assert client.wait_subscribers(10.0)
    d = client.wait_state("inactive", 10.0)
    assert d.get("state") == "inactive" and d["_level"] == 0, d
    stamps = _send(client, rgb, 3, seq)
    assert client.wait_for(lambda: int(client.last_diagnostics().get("frames_inactive", 0)) >= 3, 10.0)
    assert _outputs_for(client, stamps) == 0

    assert lc.transition(Transition.TRANSITION_ACTIVATE) and lc.state() == "active"
    stamps = _send(client, rgb, 3, seq)
    assert client.wait_for(lambda: _outputs_for(client, stamps) >= 1, 60.0), log.read_text()[-2000:]
    assert client.wait_state("running", 10.0).get("state") == "running"

    assert lc.transition(Transition.TRANSITION_DEACTIVATE) and lc.state() == "inactive"
    client.wait_for(lambda: False, 1.0)  # a frame in flight at the transition may still come out
    inactive_before = int(client.last_diagnostics().get("frames_inactive", 0))
    stamps = _send(client, rgb, 3, seq)
    assert client.wait_for(lambda: int(client.last_diagnostics().get("frames_inactive", 0)) >= inactive_before + 3, 10.0)
    client.wait_for(lambda: False, 2.0)
    assert _outputs_for(client, stamps) == 0

    assert lc.transition(Transition.TRANSITION_CLEANUP) and lc.state() == "unconfigured"
    assert client.wait_for(lambda: client.pub_image.get_subscription_count() == 0, 10.0)
    n_diag = client.count("diagnostics")
    client.wait_for(lambda: False, 1.0)
    assert client.count("diagnostics") == n_diag  # the diagnostics timer went with the configuration

    assert lc.transition(Transition.TRANSITION_CONFIGURE) and lc.transition(Transition.TRANSITION_ACTIVATE)
    assert client.wait_subscribers(10.0)
    stamps = _send(client, rgb, 3, seq)
    assert client.wait_for(lambda: _outputs_for(client, stamps) >= 1, 60.0), log.read_text()[-2000:]
    assert proc.poll() is None
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-3000:]


def test_a_configuration_that_cannot_load_fails_the_transition(tmp_path):
    """A model that cannot be loaded: ``configure`` fails with one line naming it, the node stays unconfigured and
    keeps running (its manager decides), and Ctrl-C still ends it with exit code 0."""
    from interactvlm_ros.ros.listener import ContactClient, start_node_process, stop_process

    log = tmp_path / "node.log"
    proc = start_node_process(DOMAIN + 1, {"model": "/nonexistent/model_dir"}, log, lifecycle=True)
    client = ContactClient(domain_id=DOMAIN + 1, outputs=("human_contacts",))
    try:
        lc = _Lifecycle(client)
        assert not lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == "unconfigured" and proc.poll() is None
        text = log.read_text()
        assert text.count("model could not be loaded") == 1 and "/nonexistent/model_dir" in text, text
        assert "configure failed: the node stays unconfigured" in text and "FATAL" not in text, text
        assert State.PRIMARY_STATE_UNCONFIGURED == 1
    finally:
        client.close()
        code = stop_process(proc)
    assert code == 0, log.read_text()[-2000:]
