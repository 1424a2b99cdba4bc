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


@pytest.mark.parametrize("case", ["unreadable_image", "empty_folder", "rate"])
def test_demo_refuses_a_bad_source_before_the_model_loads(case, tmp_path, capsys):
    """A source the replay cannot read (or --rate 0) is exit code 2 with one line at once; it used to load the model,
    let the replay fail in the background and end after --seconds with 'markers=0' and no reason."""
    bad = tmp_path / "x.png"
    bad.write_bytes(b"truncated")
    args = {"unreadable_image": ["--source", str(bad)], "empty_folder": ["--source", str(tmp_path)],
            "rate": ["--rate", "0"]}[case]
    if case == "empty_folder":
        bad.unlink()
    assert demo.main([*args, "--seconds", "1", "--domain-id", "91"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: ") and len(err.strip().splitlines()) == 1, err
