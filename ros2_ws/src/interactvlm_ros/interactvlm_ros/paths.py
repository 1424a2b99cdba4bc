"""Where interactvlm_ros keeps packaged data and its on-disk caches.

Nothing here downloads anything. Caches live under ``$INTERACTVLM_CACHE_DIR`` (default
``$XDG_CACHE_HOME/interactvlm_ros`` or ``~/.cache/interactvlm_ros``).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir(*parts: str) -> Path:
    """Return (and create) a cache sub-directory, e.g. ``cache_dir("assets")``."""
    root = os.environ.get("INTERACTVLM_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "interactvlm_ros"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_data(*parts: str) -> Path:
    """Path of a file shipped inside the installed package."""
    return PACKAGE_DIR.joinpath(*parts)


def remove_stale(out: str | Path, names, written) -> None:
    """Delete the files of ``names`` in folder ``out`` that this run did not write (``written``: paths or names): an
    earlier run's meshes must not sit beside a new failure status (``interactvlm estimate`` / ``reconstruct``)."""
    keep = {Path(str(w)).name for w in written}
    for name in names:
        p = Path(out) / name
        if name not in keep and p.is_file():
            p.unlink()
