"""Best-effort (sensor_data) camera images between processes with the package's Fast DDS profile
(``ros/fastdds_large_images.xml``): every frame of a closed loop reaches the node.

Without the profile a 640x480 rgb8 frame (0.9 MB) is larger than Fast DDS's 512 KiB shared-memory segment,
goes out as UDP fragments, and a third to a half of the frames were lost on this machine (docs/node.md). The
client runs in its own process: the middleware reads the profile once per process, and this test process has
participants of other tests."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("cv2")

from interactvlm_ros.ros.dds import (  # noqa: E402
    LARGE_IMAGE_PROFILE, PROFILE_ENV, profile_missing, with_large_image_profile)
from interactvlm_ros.ros.listener import ros_env, start_node_process, stop_process  # noqa: E402

DOMAIN = 86
FRAMES = 20

CLIENT = r"""
import json, sys, time
import cv2
from interactvlm_ros.ros.listener import ContactClient
client = ContactClient(domain_id=int(sys.argv[1]), image_reliable=False, outputs=("human_contacts",))
try:
    state = client.wait_state("running", 240.0).get("state")
    client.wait_subscribers(10.0)
    rgb = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
    answered = []
    for i in range(int(sys.argv[3])):
        sec = 9000 + i
        client.publish_image(rgb, stamp=client.stamp(sec, 0), frame_id="cam")
        if client.wait_for(lambda: any(m.header.stamp.sec == sec for m in client.messages("human_contacts")), 5.0):
            answered.append(sec)
    print(json.dumps({"state": state, "answered": len(answered)}))
finally:
    client.close()
"""


def test_profile_selection_respects_the_users_choice():
    env, line = with_large_image_profile({})
    assert env[PROFILE_ENV] == str(LARGE_IMAGE_PROFILE) and LARGE_IMAGE_PROFILE.is_file()
    assert "segment_size" in LARGE_IMAGE_PROFILE.read_text()
    env, line = with_large_image_profile({PROFILE_ENV: "/etc/mine.xml"})
    assert env[PROFILE_ENV] == "/etc/mine.xml" and "kept" in line
    env, line = with_large_image_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert PROFILE_ENV not in env and "not used" in line
    assert profile_missing({}) and not profile_missing({PROFILE_ENV: "/etc/mine.xml"})
    assert not profile_missing({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})


def test_best_effort_images_all_arrive_with_the_profile(tmp_path, test_data):
    mp = pytest.MonkeyPatch()
    mp.setenv(PROFILE_ENV, str(LARGE_IMAGE_PROFILE))  # read by the child processes' middleware only
    log = tmp_path / "node.log"
    proc = start_node_process(DOMAIN, {"object_label": "ball", "image_qos": "sensor_data", "model": "default"}, log)
    try:
        out = subprocess.run([sys.executable, "-c", CLIENT, str(DOMAIN), str(test_data / "person_catching_ball.png"),
                              str(FRAMES)], env=ros_env(DOMAIN), capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["state"] == "running", log.read_text()[-3000:]
        assert res["answered"] == FRAMES, (res, log.read_text()[-2000:])
        assert "without a profile" not in log.read_text()  # the node saw the profile (no hint logged)
    finally:
        stop_process(proc)
        mp.undo()
