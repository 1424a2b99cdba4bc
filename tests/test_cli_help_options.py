"""Every ``--option`` that an ``interactvlm`` sub-command's help text names is an option of that sub-command
(``interactvlm export --help`` used to say "int8 needs --calib", an option that never existed)."""
from __future__ import annotations

import argparse
import re

import pytest

from interactvlm_ros.cli.main import COMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_names_only_options_that_exist(command):
    parser = _subparsers()[command]
    options = {s for action in parser._actions for s in action.option_strings}
    texts = [parser.description or ""] + [action.help or "" for action in parser._actions]
    named = {m for text in texts for m in re.findall(r"(?<![\w-])--[A-Za-z][A-Za-z0-9-]*", text)}
    assert named <= options, f"interactvlm {command} --help names {sorted(named - options)}, not options of it"
