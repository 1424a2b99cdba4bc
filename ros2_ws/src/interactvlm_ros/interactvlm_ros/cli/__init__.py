"""The ``interactvlm`` command. Each sub-command lives in its own module of this package."""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0 (e.g. a length in metres)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number > 0")
    return value


def prepare_out(path: str | Path) -> str:
    """Create the output folder (and its parents) and check a file can be written in it, before any long work.
    Returns "" when it can be used, else the reason (for ``cannot write --out DIR (reason)``)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        return "it exists and is not a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""

