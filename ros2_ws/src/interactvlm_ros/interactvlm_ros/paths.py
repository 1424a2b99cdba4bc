"""Where interactvlm_ros keeps packaged data and its on-disk caches.

Nothing here downloads anything. Caches live under ``$INTERACTVLM_CACHE_DIR`` (default
``$XDG_CACHE_HOME/interactvlm_ros`` or ``~/.cache/interactvlm_ros``).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


class CacheDirError(OSError):
    """The cache folder cannot be determined or created; the message names ``INTERACTVLM_CACHE_DIR``. An ``OSError``,
    so callers with a cache-less fallback (the asset cache) catch it as they catch a read-only home."""


def cache_dir(*parts: str) -> Path:
    """Return (and create) a cache sub-directory, e.g. ``cache_dir("assets")``.

    Raises ``CacheDirError`` when there is no home to put it in (``HOME`` unset and a user without a passwd entry,
    e.g. ``docker run --user 4242``: ``Path.home()`` raised a bare RuntimeError) or the folder cannot be created
    (read-only home)."""
    root = os.environ.get("INTERACTVLM_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        try:
            base = (Path(xdg) if xdg else Path.home() / ".cache") / "interactvlm_ros"
        except RuntimeError as exc:
            raise CacheDirError(f"no cache folder: {exc} (HOME is not set and this user has no home); set "
                                f"INTERACTVLM_CACHE_DIR (or XDG_CACHE_HOME) to a writable folder") from exc
    path = base.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        raise CacheDirError(exc.errno, f"cache folder {path} cannot be created ({why}); set INTERACTVLM_CACHE_DIR "
                                       f"to a writable folder") from exc
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
