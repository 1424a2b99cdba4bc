"""``interactvlm eval --split NAME [--data DIR] [--model default|DIR]``: DAMON-style metrics on a synthetic split."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

DEFAULT_DATA = "/work/data/synth_v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", required=True, help="split name from the dataset's meta.json (e.g. test, test_unseen_category)")
    parser.add_argument("--data", default=None, help=f"synthetic dataset folder (default: $INTERACTVLM_SYNTH_DATA or {DEFAULT_DATA})")
    parser.add_argument("--model", default="default", help="'default' (shipped weights) or a folder with model.pt")
    parser.add_argument("--cues", default="deploy", choices=("deploy", "full"),
                        help="deploy = pose+hands+label (plain RGB camera); full = + object box + depth")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--out", default=None, help="folder for metrics_<split>.json (--cues full: metrics_<split>_full.json; default: print only)")


def run(args) -> int:
    import os

    from . import prepare_out
    from ..evaluation.evaluate import evaluate, format_table
    from ..models.default.predictor import DefaultModelError
    from ..training.data import DatasetError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = args.data or os.environ.get("INTERACTVLM_SYNTH_DATA") or DEFAULT_DATA
    if not Path(data).is_dir():
        print(f"interactvlm eval: dataset folder '{data}' not found; pass --data DIR (make one with `interactvlm synth`)")
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"interactvlm eval: --limit {args.limit}: expected a number of samples >= 1")
        return 2
    why = "" if args.out is None else prepare_out(args.out)  # before the evaluation, not after it
    if why:
        print(f"interactvlm eval: cannot write --out {args.out} ({why})")
        return 2
    try:
        res = evaluate(data, args.split, args.model, args.cues, args.limit, out=args.out)
    except (DatasetError, DefaultModelError) as exc:  # dataset / split / sample; --model folder without a model.pt
        print(f"interactvlm eval: {exc}")
        return 2
    print(format_table(res))
    print(json.dumps(res["overall"], indent=2))
    return 0
