"""``interactvlm synth``: generate synthetic human–object interaction samples with GT contact.

    interactvlm synth --n 2000 --seed 0 --out /data/synth_v1 --workers 2
    interactvlm synth --n 200 --seed 0 --out DIR --split val   # only the seeds of the val range

Format: docs/synthetic_data.md (meta.json + samples/{seed:06d}.npz + objects/<id>.npz).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: expected WxH, e.g. 320x240") from exc
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: at least 32x32")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of samples (seeds seed..seed+n-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", required=True, help="dataset folder (created; existing samples are kept → resumable)")
    p.add_argument("--split", choices=["all", "train", "val", "test"], default="all",
                   help="generate only the seed range of one split (ranges: 80/10/10 %% of --n)")
    p.add_argument("--image-size", type=_size, default=(320, 240), help="camera image WxH (default 320x240)")
    p.add_argument("--contact-threshold", type=float, default=0.02, help="GT contact distance in metres (default 0.02)")
    p.add_argument("--mask-res", type=int, default=128, help="GT view-mask resolution R (default 128)")
    p.add_argument("--workers", type=int, default=1, help="processes (1 or 2; at most one extra process)")


def _bad(args) -> str:
    """The first unusable option, as one line ("" when all can be used)."""
    if args.n < 1:
        return "--n must be ≥ 1"
    if args.seed < 0:
        return f"--seed {args.seed}: seeds are ≥ 0"
    if not (0.0 < args.contact_threshold < 0.2):
        return f"--contact-threshold {args.contact_threshold}: expected metres in (0, 0.2), e.g. 0.02"
    if not (16 <= args.mask_res <= 1024):
        return f"--mask-res {args.mask_res}: expected 16..1024"
    if args.workers not in (1, 2):
        return f"--workers {args.workers}: expected 1 or 2"
    return ""


def run(args) -> int:
    from interactvlm_ros.synth.generator import DatasetOptionsError, GeneratorConfig, split_ranges, write_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from . import prepare_out

    why = _bad(args)
    if not why and args.split != "all":
        a, b = split_ranges(args.seed, args.n)[args.split]
        if b <= a:  # it generated nothing and exited 0
            why = (f"--split {args.split}: the {args.split} seed range of --n {args.n} is empty (80/10/10 % of --n, "
                   f"rounded); use a larger --n")
    why = why or (f"cannot write --out {args.out} ({reason})" if (reason := prepare_out(args.out)) else "")
    if why:
        print(f"interactvlm synth: {why}", file=sys.stderr)
        return 2
    cfg = GeneratorConfig(image_size=args.image_size, contact_threshold=args.contact_threshold, mask_res=args.mask_res)
    seed, n = args.seed, args.n
    ranges = split_ranges(args.seed, args.n)
    if args.split != "all":
        a, b = ranges[args.split]
        seed, n = a, b - a
    try:
        meta = write_dataset(args.out, n=n, seed=seed, config=cfg, workers=args.workers, ranges=ranges)
    except DatasetOptionsError as exc:
        print(f"interactvlm synth: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "counts": meta["counts"], "seconds": meta["seconds"]}))
    return 0
