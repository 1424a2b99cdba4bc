"""``interactvlm`` entry point: dispatches to one module per sub-command.

A sub-command module ``interactvlm_ros.cli.<name>`` defines ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when that sub-command runs, so a missing optional
dependency of one command never breaks the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> one-line help. Order is the order shown in --help.
COMMANDS = {
    "render": "render a body/object from the official views; write PNG renders + lifting maps",
    "localize": "run an official-format MV-Loc checkpoint on one image; write masks + lifted contact",
    "export": "export an MV-Loc checkpoint to ONNX graphs (and TensorRT engines where available)",
    "estimate": "one-shot contact estimation on an image with the pipeline the node uses",
    "reconstruct": "human + object meshes in the camera frame from an image (optional depth)",
    "synth": "generate synthetic human-object interaction samples with ground-truth contact",
    "train": "train the embedded default localizer",
    "eval": "evaluate a localizer on a synthetic split (DAMON-style metrics)",
}


def build_parser(load_modules: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interactvlm", description="InteractVLM 3D contact estimation for robots")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load_modules and (only is None or only == name):
            mod = importlib.import_module(f"interactvlm_ros.cli.{name}")
            mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        build_parser(load_modules=False).parse_args(argv or ["--help"])
        return 2
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    mod = importlib.import_module(f"interactvlm_ros.cli.{command}")
    return int(mod.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
