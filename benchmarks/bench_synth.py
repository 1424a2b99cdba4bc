"""Synthetic generator throughput and perception time per frame.

    python benchmarks/bench_synth.py [--n 6] [--frames 5]

Prints a table: generator samples/s (one process) and mediapipe pose / hands / segmentation / total ms
per frame on tests/data/person_catching_ball.png, plus the text encoder time per new label.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6, help="generator samples")
    ap.add_argument("--frames", type=int, default=5, help="perception frames")
    ap.add_argument("--image-size", default="320x240")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    rows = []
    from PIL import Image

    from interactvlm_ros.perception.human import HumanPerception
    from interactvlm_ros.perception.text import TextEncoder
    from interactvlm_ros.synth.generator import Generator, GeneratorConfig

    W, H = (int(x) for x in args.image_size.split("x"))
    t = time.perf_counter()
    gen = Generator(GeneratorConfig(image_size=(W, H)))
    rows.append(("generator init (Anny load + template maps)", f"{time.perf_counter() - t:.2f} s"))
    gen.sample(0)
    t = time.perf_counter()
    for s in range(1, args.n + 1):
        gen.sample(s)
    dt = time.perf_counter() - t
    rows.append((f"generator {W}x{H}, 1 process", f"{args.n / dt:.2f} samples/s ({1e3 * dt / args.n:.0f} ms/sample)"))

    img = np.array(Image.open(REPO / "tests" / "data" / "person_catching_ball.png").convert("RGB"))
    for mode, static in (("static", True), ("video", False)):
        with HumanPerception(static_image_mode=static) as hp:
            hp.observe(img)
            acc: dict[str, list[float]] = {}
            for _ in range(args.frames):
                for k, v in hp.observe(img).timings.items():
                    acc.setdefault(k, []).append(v)
        for k in ("pose_ms", "hands_ms", "segmentation_ms", "total_ms"):
            if k in acc:
                rows.append((f"perception {mode} 640x480 {k[:-3]}", f"{np.median(acc[k]):.1f} ms"))
    enc = TextEncoder()
    enc.encode(["warm up"])
    t = time.perf_counter()
    labels = [f"object number {i}" for i in range(20)]
    enc.encode(labels)
    rows.append(("text encoder, new label", f"{1e3 * (time.perf_counter() - t) / len(labels):.1f} ms"))
    t = time.perf_counter()
    enc.encode(labels)
    rows.append(("text encoder, cached label", f"{1e6 * (time.perf_counter() - t) / len(labels):.1f} µs"))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}} | value")
    print("-" * w + "-|------")
    for a, b in rows:
        print(f"{a:<{w}} | {b}")


if __name__ == "__main__":
    main()
