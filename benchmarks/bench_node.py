"""Benchmark of the contact node end to end (receive -> publish) over real ROS 2 transport.

    python benchmarks/bench_node.py [--model default] [--seconds 20] [--rates 0,15,30] [--size 640x480]

Starts ``interactvlm-contact-node`` as a subprocess (own ROS domain, localhost), publishes a real photo
(tests/data/person_catching_ball.png, resized to --size) and measures, per input rate:
  - latency: time from publishing a frame to receiving its human contact PointCloud2 (same stamp) in this
    process. The clouds are published first, then the MarkerArray (subscribed here, so the node builds it);
    the overlay is not subscribed (so not computed, as on a robot where nobody watches it); the markers are
    received as serialized bytes (the node builds, serializes and sends them; this client does not turn them
    into Python objects, as RViz, a C++ consumer, does not either; --python-markers deserializes them here);
    rate 0 = closed loop (next frame sent when the previous result arrived: pure latency, no contention);
  - node p50/p95: the node's own receive -> publish latency of the clouds (its /diagnostics, last 200
    frames) — the issue's definition; the client-side latency above adds both transports;
  - output rate: processed frames per second; dropped: frames the node replaced in its newest-frame slot;
  - markers: rate and p95 latency of the MarkerArray (built by the node's visuals thread; newest result only);
  - node RSS at the end; stage timings (ms) from /diagnostics; CPU use (100 % = one core) of the node and of
    this benchmark process (publishing images, receiving outputs) — both share the machine's cores.
Prints one table. Targets (docs/node.md): >= 15 Hz sustained, p95 <= 100 ms at 640x480.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rate(client, msg, info, rate: float, seconds: float, node_pid: int):
    d0 = client.last_diagnostics()  # before clear(): clear() also drops the recorded diagnostics
    client.clear()
    sent: dict[tuple[int, int], float] = {}
    base = 1_000_000 * (1 + int(rate))  # unique stamps per run (int32 seconds)
    t0 = time.monotonic()
    c_node0, c_self0 = cpu_s(node_pid), cpu_s(os.getpid())
    n = 0
    recv0 = int(d0.get("frames_received", 0))
    while time.monotonic() - t0 < seconds:
        n += 1
        stamp = client.stamp(base + n, 0)
        msg.header.stamp = info.header.stamp = stamp
        sent[(stamp.sec, 0)] = time.monotonic()
        client.pub_info.publish(info)
        client.pub_image.publish(msg)
        if rate > 0:
            time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        else:
            client.wait_for(lambda: any(m.header.stamp.sec == stamp.sec for m in client.messages("human_contacts")[-3:]),
                            2.0)
    elapsed = time.monotonic() - t0
    node_cpu, self_cpu = (cpu_s(node_pid) - c_node0) / elapsed, (cpu_s(os.getpid()) - c_self0) / elapsed
    time.sleep(1.5)
    lat = []
    for t_rx, m in list(client.received["human_contacts"]):
        key = (m.header.stamp.sec, 0)
        if key in sent:
            lat.append(t_rx - sent[key])
    mlat = []  # markers: stamp of the first marker (DELETEALL, the input header), read from the raw CDR bytes
    for t_rx, m in list(client.received["markers"]):
        sec = int.from_bytes(m[8:12], "little", signed=True) if isinstance(m, bytes) else m.markers[0].header.stamp.sec
        if (sec, 0) in sent:
            mlat.append(t_rx - sent[(sec, 0)])
    d = client.last_diagnostics()
    lat = np.array(lat) * 1e3
    mlat = np.array(mlat) * 1e3
    dropped = int(d.get("frames_dropped", 0)) - int(d0.get("frames_dropped", 0))
    stages = {k.split("/", 1)[1]: (float(v), float(d.get("stage_ms_p95/" + k.split("/", 1)[1], "nan")))
              for k, v in d.items() if k.startswith("stage_ms/")}
    return {
        "rate_in": rate, "sent": n, "processed": len(lat), "out_hz": len(lat) / elapsed,
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "max": float(lat.max()) if lat.size else float("nan"), "dropped": dropped, "stages": stages,
        "received": int(d.get("frames_received", 0)) - recv0,
        "node_cpu": 100 * node_cpu, "client_cpu": 100 * self_cpu,
        # the node's own receive -> publish latency (last 200 processed frames: this run's when it made >= 200)
        "node_p50": float(d.get("latency_ms_p50", "nan")), "node_p95": float(d.get("latency_ms_p95", "nan")),
        "markers_hz": len(mlat) / elapsed, "markers_p95": float(np.percentile(mlat, 95)) if mlat.size else float("nan"),
    }


def parse_params(ap, pairs: list[str]) -> dict:
    """``--param NAME=VALUE`` overrides (values read as YAML: true, 5, 0.5) -> dict; an argparse error otherwise."""
    import yaml

    params = {}
    for kv in pairs:
        name, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--param {kv!r}: use NAME=VALUE, e.g. --param reconstruct=true")
        params[name] = yaml.safe_load(value)
    return params


def _ms(x: float) -> str:
    """A latency cell: '-' when there was nothing to measure (no output received, no marker subscriber), not 'nan'."""
    return "-" if x != x else f"{x:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--assets", default="")
    ap.add_argument("--label", default="ball")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="0,15,30", help="input rates in Hz (0 = closed loop)")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--domain-id", type=int, default=91)
    ap.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data", help="image QoS (node + publisher)")
    ap.add_argument("--dds-profile", choices=("large-images", "none"), default="large-images",
                    help="large-images: the package's Fast DDS shared-memory profile for the node and this client unless "
                         "FASTDDS_DEFAULT_PROFILES_FILE is set (without it best-effort frames are lost in transport, "
                         "docs/node.md); none: the middleware's defaults")
    ap.add_argument("--no-markers", action="store_true",
                    help="do not subscribe to ~/markers (a planner-only consumer: the node then skips building them)")
    ap.add_argument("--python-markers", action="store_true",
                    help="deserialize the markers in this Python client (adds ~20-40 ms of client CPU per frame on the same cores)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra node parameter (YAML value), e.g. --param hand_model=lite --param perception_mode=photo")
    args = ap.parse_args(argv)
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1")
    dds = "middleware defaults"
    if args.dds_profile == "large-images":  # before this process's first participant: the middleware reads it once
        from interactvlm_ros.ros.dds import with_large_image_profile

        env, dds = with_large_image_profile(dict(os.environ))
        os.environ.update(env)  # (adds the profile variable at most)
    import cv2

    from interactvlm_ros.ros import conversions as conv
    from interactvlm_ros.ros.listener import ContactClient, start_node_process, stop_process

    w, h = (int(x) for x in args.size.split("x"))
    bgr = cv2.imread(str(REPO / "tests" / "data" / "person_catching_ball.png"), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    params = {"model": args.model, "object_label": args.label, "image_qos": args.qos}
    if args.assets:
        params["assets"] = args.assets
    params.update(parse_params(ap, args.param))
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_node_{os.getpid()}.log"
    proc = start_node_process(args.domain_id, params, log)
    client = ContactClient(domain_id=args.domain_id, image_reliable=args.qos == "reliable", outputs=("human_contacts", "object_contacts") + (() if args.no_markers else ("markers",)),
                           raw=() if args.python_markers else ("markers",))
    rows = []
    try:
        t = time.monotonic()
        d = client.wait_state("running", 300.0)
        if d.get("state") != "running":
            print(f"node did not start ({d}); log: {log}", file=sys.stderr)
            return 1
        load_s = time.monotonic() - t
        client.wait_subscribers(10.0)
        msg = conv.numpy_to_image(rgb, "rgb8")
        msg.header.frame_id = "bench_cam"
        info = conv.make_camera_info(w, h, header=msg.header)
        for _ in range(50):  # warm-up
            client.publish_image(rgb)
            if client.wait_for(lambda: client.count("human_contacts") >= 3, 0.5):
                break
        time.sleep(1.5)  # a fresh /diagnostics (1 Hz) after the warm-up: the first run's counters start from it
        for r in (float(x) for x in args.rates.split(",")):
            rows.append(run_rate(client, msg, info, r, args.seconds, proc.pid))
        rss = rss_mb(proc.pid)
    finally:
        client.close()
        stop_process(proc)
    extra = "".join(f", {kv}" for kv in args.param) + (", no marker subscriber" if args.no_markers else
                                                       ", markers deserialized in Python" if args.python_markers else "")
    print(f"\nnode benchmark: model={d.get('model')} backend={d.get('backend')} image {w}x{h} ({args.qos}{extra}), "
          f"{os.cpu_count()} CPUs, load+start {load_s:.1f} s, node RSS {rss:.0f} MB\n{dds}")
    print(f"{'input Hz':>9} {'sent':>5} {'received':>8} {'processed':>9} {'out Hz':>7} {'dropped':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'max ms':>7} {'node p50/p95':>12} {'markers Hz':>10} {'markers p95':>11} {'node CPU %':>10} {'bench CPU %':>11}")
    for r in rows:
        rin = "closed" if r["rate_in"] == 0 else f"{r['rate_in']:.0f}"
        print(f"{rin:>9} {r['sent']:>5} {r['received']:>8} {r['processed']:>9} {r['out_hz']:>7.1f} {r['dropped']:>7} "
              f"{_ms(r['p50']):>7} {_ms(r['p95']):>7} {_ms(r['max']):>7} {_ms(r['node_p50']):>6}/{_ms(r['node_p95']):<5} "
              f"{r['markers_hz']:>10.1f} {_ms(r['markers_p95']):>11} {r['node_cpu']:>10.0f} {r['client_cpu']:>11.0f}")
    for r in rows:  # the node's own per-stage medians / p95 (last 200 runs, so mostly this rate's frames)
        rin = "closed loop" if r["rate_in"] == 0 else f"{r['rate_in']:.0f} Hz"
        print(f"stage ms p50/p95 at {rin}: " + ", ".join(f"{k}={a:.0f}/{b:.0f}" for k, (a, b) in r["stages"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
