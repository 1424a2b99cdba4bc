"""The demo (README's main command) with ``--reconstruct``: node + replay subprocesses over Fast DDS on the real photo;
object poses, grip poses and free grasp regions reach the client, the first (cold) fit published late."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("anny")

from interactvlm_ros.ros import demo  # noqa: E402


def test_demo_with_reconstruction(test_data, capsys):
    code = demo.main(["--source", str(test_data / "person_catching_ball.png"), "--label", "ball", "--reconstruct",
                      "--seconds", "30", "--quiet", "--domain-id", "91"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    summary = dict(re.findall(r"(\w+)=(\d+)", out.split("demo summary: ")[1].splitlines()[0]))
    for kind in ("object_pose", "human_grip_poses", "free_grasp_regions"):
        assert int(summary[kind]) > 0, summary
    recon = dict(re.findall(r"reconstruction/(\w+)=(\d+)", out.split("demo reconstruction: ")[1].splitlines()[0]))
    assert int(recon["late"]) >= 1 and int(recon["ok"]) >= 2 and int(recon["warm"]) >= 1, recon
    # contact went on while the cold fit ran: frames answered without poses (cold_start_pending)
    assert int(recon["cold_start_pending"]) >= 1 and int(summary["human_contacts"]) > int(summary["object_pose"]), recon
