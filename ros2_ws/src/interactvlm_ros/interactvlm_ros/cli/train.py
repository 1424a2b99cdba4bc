"""``interactvlm train --config FILE [--data DIR] [--out DIR] [--resume]``: train the default localizer.

Reproduce the shipped checkpoint::

    interactvlm train --config $(python -c "import interactvlm_ros.training as t, pathlib; \
print(pathlib.Path(t.__file__).parent / 'configs/default_model.yaml')") --data /work/data/synth_v1 --out runs/default
"""
from __future__ import annotations

import argparse
import json
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML/JSON training config (see training/configs/default_model.yaml)")
    parser.add_argument("--data", help="synthetic dataset folder (overrides the config's 'data')")
    parser.add_argument("--out", help="output folder (overrides 'out')")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt when it exists")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default from config: 1)")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--init-from", dest="init_from",
                        help="start from this checkpoint's weights where they match (a run's last.pt or a model.pt)")


def run(args) -> int:
    from . import prepare_out
    from ..training.data import DatasetError
    from ..training.train import ConfigError, load_config, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    over = {k: getattr(args, k) for k in ("data", "out", "steps", "threads", "seed", "init_from") if getattr(args, k) is not None}
    try:
        cfg = load_config(args.config, over)
    except ConfigError as exc:
        print(f"interactvlm train: {exc}")
        return 2
    why = prepare_out(cfg["out"])
    if why:
        print(f"interactvlm train: cannot write --out {cfg['out']} ({why})")
        return 2
    try:
        metrics = train(cfg, resume=args.resume)
    except (ConfigError, DatasetError) as exc:  # init_from unusable; dataset folder / split / sample missing or bad
        print(f"interactvlm train: {exc}")
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
