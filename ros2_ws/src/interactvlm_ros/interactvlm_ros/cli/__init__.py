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



class ImageReadError(ValueError):
    """An IMAGE argument that cannot be used; the message names the file and the fix (one line, exit 2)."""


def _truncated_jpeg(path: Path) -> bool:
    """True for a JPEG file that ends before its image data does. OpenCV decodes such a file without an error (the
    missing rows grey, or a progressive file's later scans missing) and only libjpeg's "Premature end of JPEG file"
    on stderr tells, so the contact would be estimated on a partial image. PIL's decoder (at 1/8 scale: 1-40 ms on a
    photo) says "truncated"; other formats (png: OpenCV refuses a truncated one) and files PIL cannot check pass.
    A JPEG missing only its 2-byte end marker is refused too (PIL cannot tell it from a cut one)."""
    import warnings

    from PIL import Image

    try:
        with open(path, "rb") as f:
            if f.read(3) != b"\xff\xd8\xff":
                return False
    except OSError:  # unreadable: OpenCV's read says so
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning of a large phone photo
            with Image.open(path) as im:
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
                im.load()
    except OSError as exc:
        return "truncated" in str(exc)
    except Exception:  # noqa: BLE001 - PIL's own limits (DecompressionBombError): OpenCV reads it, not checked
        return False
    return False


def read_image_rgb(path: str | Path):
    """The image file ``path`` as HxWx3 uint8 RGB, read by OpenCV: a phone photo's EXIF orientation is applied; grey,
    RGBA (alpha dropped), 16-bit and palette PNGs and CMYK JPEGs become 8-bit RGB. ``ImageReadError`` (the file and
    the fix) for a missing file, a folder, a file OpenCV cannot read, or a truncated JPEG (decoded by OpenCV with its
    missing rows grey, it gave an "ok" contact for a partial image). Used by ``estimate`` and ``reconstruct``."""
    import cv2

    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"image '{p}' is a folder; give one image file (png/jpg)")
    if not p.is_file():
        raise ImageReadError(f"image '{p}' not found")
    if _truncated_jpeg(p):  # before OpenCV, which would print libjpeg's warning and decode it anyway
        raise ImageReadError(f"'{p}' is a truncated JPEG (the file ends before its image data does: an interrupted "
                             "download or copy?); copy the whole file again")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError(f"'{p}' is not an image OpenCV can read (png/jpg/...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
