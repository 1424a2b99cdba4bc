"""Soak: the contact node on a looping source for a while; memory and throughput over time.

    python benchmarks/bench_soak.py [--seconds 240] [--every 30] [--source tests/data/pedestrians_768x576_10fps.avi]
        [--rate 10] [--label ball] [--param reconstruct=true --param reconstruct_cold_start=inline ...]

Starts ``interactvlm-contact-node`` (own ROS domain, localhost, the package's Fast DDS large-image profile for both
processes) and ``interactvlm-replay SOURCE --loop`` at --rate (best effort), subscribes to /diagnostics and the object
pose, and prints one row every --every seconds: node RSS, frames received / processed / dropped, processed Hz over
the window, result and reconstruction counters, object poses received. Ends with the node's exit code on SIGINT.
What to look for: RSS flat after load (no leak), processed Hz near the input rate, exit code 0.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_node import REPO, parse_params, rss_mb  # this folder is on sys.path when the script runs

DOMAIN = 93  # default --domain-id (the test suite's node tests use 89-99: do not run both at once)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--every", type=float, default=30.0)
    ap.add_argument("--source", default=str(REPO / "tests" / "data" / "pedestrians_768x576_10fps.avi"))
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--label", default="ball")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="node parameter override")
    ap.add_argument("--domain-id", type=int, default=DOMAIN, help=f"ROS domain (default {DOMAIN}), localhost only")
    a = ap.parse_args()
    domain = a.domain_id
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1", ROS_DOMAIN_ID=str(domain))
    from interactvlm_ros.ros.dds import with_large_image_profile

    env, dds = with_large_image_profile(dict(os.environ))
    os.environ.update(env)
    from interactvlm_ros.ros.listener import ContactClient, start_node_process, stop_process

    params = {"object_label": a.label, "publish_overlay": False}
    params.update(parse_params(ap, a.param))
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_soak_node.log"
    node = start_node_process(domain, params, log)
    client = ContactClient(domain_id=domain, outputs=("object_pose",))
    replay = None
    try:
        d = client.wait_state("running", 240.0)
        if d.get("state") != "running":
            print(f"node did not start: {d}; log {log}")
            return 1
        replay = subprocess.Popen([sys.executable, "-m", "interactvlm_ros.ros.replay", a.source, "--rate", str(a.rate),
                                   "--loop", "--qos", "sensor_data"], env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"soak: {a.source} at {a.rate:g} Hz, params {params}; {dds}; node log {log}")
        hdr = ("t s", "RSS MB", "received", "processed", "dropped", "Hz (window)", "result ok/no_person",
               "recon ok/pending/late/resets", "poses")
        print(" | ".join(hdr))
        t0 = time.monotonic()
        last_p, last_t = 0, t0
        while True:
            time.sleep(max(0.0, t0 + a.every * (1 + int((time.monotonic() - t0) / a.every)) - time.monotonic()))
            now = time.monotonic()
            g = client.last_diagnostics()
            n = lambda k: int(g.get(k, 0))  # noqa: E731
            p = n("frames_processed")
            recon = "/".join(str(n(f"reconstruction/{k}")) for k in ("ok", "cold_start_pending", "late", "resets"))
            print(" | ".join(str(x) for x in (
                f"{now - t0:.0f}", f"{rss_mb(node.pid):.0f}", n("frames_received"), p, n("frames_dropped"),
                f"{(p - last_p) / (now - last_t):.1f}", f"{n('result/ok')}/{n('result/no_person')}", recon,
                len(client.messages("object_pose")))), flush=True)
            last_p, last_t = p, now
            if now - t0 >= a.seconds - 1e-6:
                break
    finally:
        if replay is not None:
            replay.terminate()
            replay.wait(10)
        client.close()
        code = stop_process(node, timeout=20.0)
    print(f"node exit code on SIGINT: {code}")
    return 0 if code in (0, -2, 130) else 1


if __name__ == "__main__":
    sys.exit(main())
