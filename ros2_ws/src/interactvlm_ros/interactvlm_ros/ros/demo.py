"""Demo: the contact node on recorded footage, printing what it publishes.

    python -m interactvlm_ros.ros.demo                       # tests/data photo, default model, 20 s
    python -m interactvlm_ros.ros.demo --source clip.mp4 --label cup --seconds 30 --rate 10
    python -m interactvlm_ros.ros.demo --reconstruct --seconds 40   # + object pose, grip poses, free grasp regions
    python -m interactvlm_ros.ros.demo --model /models/interactvlm-3d-hcontact-damon --assets /data/hcontact_vitruvian

Starts ``interactvlm-contact-node`` as a subprocess (its log goes to stderr), waits until its
/diagnostics say the model is loaded, starts ``interactvlm-replay`` as a subprocess, and prints one line
per message the node publishes (type, stamp, frame, sizes). Stops after ``--seconds`` and prints a
summary; exit code 0 when markers and both contact clouds (with ``--reconstruct`` also object poses) were received,
1 otherwise (also when the replay ends early); 2, before anything starts, for a source OpenCV cannot read.
Runs on localhost only, on its own ROS domain ``--domain-id`` (default 42 — not ``$ROS_DOMAIN_ID``: on a robot's
computer the replayed photo on ``image`` must not reach the robot's nodes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ..paths import PACKAGE_DIR


def default_source() -> Path | None:
    """tests/data footage of a source checkout: the ball-catching photo (a person in contact with an object;
    the walking pedestrians of the video touch nothing), else the video."""
    for root in (Path.cwd(), *PACKAGE_DIR.parents):
        d = root / "tests" / "data"
        for name in ("person_catching_ball.png", "pedestrians_768x576_10fps.avi"):
            if (d / name).is_file():
                return d / name
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interactvlm_ros.ros.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=None, help="video / image folder / image (default: tests/data footage)")
    ap.add_argument("--label", default="ball", help="object label (default ball)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--assets", default="", help="official human assets folder (official checkpoints)")
    ap.add_argument("--seconds", type=float, default=20.0, help="run time after the model is loaded")
    ap.add_argument("--rate", type=float, default=10.0, help="replay rate, Hz")
    ap.add_argument("--load-timeout", type=float, default=300.0, help="seconds to wait for the model to load")
    ap.add_argument("--domain-id", type=int, default=42,
                    help="ROS domain of the node, replay and listener (default 42, whatever ROS_DOMAIN_ID says: the "
                         "replayed image must not reach a robot's nodes on its domain)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    ap.add_argument("--reconstruct", action="store_true",
                    help="reconstruct:=true: also object pose, grip poses and free grasp regions (the first fit is cold: "
                         "seconds on a CPU, run beside the contact stream; give --seconds 40 or more)")
    ap.add_argument("--qos", choices=("reliable", "sensor_data"), default="reliable",
                    help="image QoS (reliable: no frames lost between processes on one host; sensor_data: best effort, "
                         "run with the package's Fast DDS shared-memory profile unless one is set; see docs/node.md)")
    args = ap.parse_args(argv)
    src = Path(args.source) if args.source else default_source()
    if src is None or not src.exists():
        print(f"demo: source {src or '(none)'} not found; pass --source VIDEO_OR_IMAGES", file=sys.stderr)
        return 2
    if not args.rate > 0 or not args.seconds > 0:
        print("demo: --rate and --seconds must be > 0", file=sys.stderr)
        return 2
    from .replay import FrameSource

    try:  # what the replay will read, checked before the model loads (that takes a while)
        FrameSource(src).next()
    except (FileNotFoundError, ValueError) as exc:
        print(f"demo: --source: {exc}; pass a video, an image folder or an image OpenCV reads", file=sys.stderr)
        return 2

    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")
    if args.qos == "sensor_data":  # best effort: large frames need shared memory (ros/fastdds_large_images.xml)
        from .dds import PROFILE_ENV, with_large_image_profile

        env, line = with_large_image_profile(env)
        print(f"demo: {line}", flush=True)
        if PROFILE_ENV in env:
            os.environ[PROFILE_ENV] = env[PROFILE_ENV]  # this process's participant too (before rclpy starts)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")})
    from .listener import ContactClient, die_with_parent, stop_process

    printer = None if args.quiet else (lambda line: print(line, flush=True))
    # --quiet: the markers are counted as received bytes — deserializing ~24k points per MarkerArray in Python at 10 Hz
    # takes a core from the node on a 2-core machine (measured: the first cold fit then took > 30 s instead of 18 s)
    client = ContactClient(domain_id=args.domain_id, printer=printer, raw=("markers",) if args.quiet else ())
    node_cmd = [sys.executable, "-m", "interactvlm_ros.ros.node", "--ros-args",
                "-p", f"model:={args.model}", "-p", f"backend:={args.backend}", "-p", f"object_label:={args.label}",
                "-p", f"image_qos:={args.qos}"]
    if args.assets:
        node_cmd += ["-p", f"assets:={args.assets}"]
    if args.reconstruct:
        node_cmd += ["-p", "reconstruct:=true"]
    print(f"demo: starting node: {' '.join(node_cmd)}", flush=True)
    node = subprocess.Popen(node_cmd, env=env, preexec_fn=die_with_parent)
    replay = None
    t_run = None
    replay_failed = False
    try:
        t0 = time.monotonic()
        diag = {}
        while time.monotonic() - t0 < args.load_timeout:
            diag = client.last_diagnostics()
            if diag.get("state") in ("running", "error") or node.poll() is not None:
                break
            time.sleep(0.2)
        if diag.get("state") != "running":
            print(f"demo: node not running after {time.monotonic() - t0:.0f} s: state={diag.get('state')} "
                  f"{diag.get('last_error', '')} (exit code {node.poll()})", file=sys.stderr)
            return 1
        print(f"demo: node running (model {diag.get('model')}, backend {diag.get('backend')}); replaying {src}", flush=True)
        replay_cmd = [sys.executable, "-m", "interactvlm_ros.ros.replay", str(src), "--rate", str(args.rate), "--loop",
                      "--qos", args.qos]
        replay = subprocess.Popen(replay_cmd, env=env, preexec_fn=die_with_parent)
        t_run = time.monotonic()
        while time.monotonic() - t_run < args.seconds and node.poll() is None and replay.poll() is None:
            time.sleep(0.2)
        if replay.poll() is not None:  # it loops until stopped: an exit is a bad --source or --rate (its line above)
            print(f"demo: interactvlm-replay ended with exit code {replay.returncode} after "
                  f"{time.monotonic() - t_run:.1f} s; see its message above", file=sys.stderr)
            replay_failed = True
    finally:
        try:
            stop_process(replay)
            time.sleep(0.5)
            d = client.last_diagnostics()
            kinds = ("markers", "human_contacts", "object_contacts", "overlay")
            kinds += ("object_pose", "human_grip_poses", "free_grasp_regions") * args.reconstruct + ("diagnostics",)
            counts = {k: client.count(k) for k in kinds}
        finally:
            stop_process(node)
            client.close()
    print("demo summary: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"demo node diagnostics: received={d.get('frames_received')} processed={d.get('frames_processed')} "
          f"dropped={d.get('frames_dropped')} bad_input={d.get('frames_bad_input')} "
          f"latency p50={d.get('latency_ms_p50')} ms p95={d.get('latency_ms_p95')} ms rate={d.get('output_rate_hz')} Hz")
    # what the frames were: contact found (ok) or nobody (no_person), and how the person was found (perception)
    seen = {k: v for k, v in d.items() if k.startswith(("result/", "perception/")) or k == "contact_parts"}
    if seen:
        print("demo results: " + " ".join(f"{k}={v}" for k, v in seen.items()))
    if args.reconstruct:
        print("demo reconstruction: " + " ".join(f"{k}={v}" for k, v in d.items() if k.startswith("reconstruction/"))
              + f" stage_ms/reconstruct={d.get('stage_ms/reconstruct')}")
    ok = counts["markers"] > 0 and counts["human_contacts"] > 0 and counts["object_contacts"] > 0
    ok = ok and (not args.reconstruct or counts["object_pose"] > 0) and not replay_failed
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
