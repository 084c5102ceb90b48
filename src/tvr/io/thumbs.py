"""JPEG thumbnails of a video at chosen times, for search results and the web page.

A thumbnail keeps the frame's aspect ratio (after rotation); its long side is `size` pixels.
Files are named `<video stem>_<milliseconds, 9 digits>ms.jpg` and written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tvr.atomic import atomic_write_bytes
from tvr.io.video import frames_at

THUMB_SIZE = 320  # long side in pixels
JPEG_QUALITY = 85


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def thumbnail_name(path: str | os.PathLike[str], time_s: float) -> str:
    """The file name `save_thumbnails` uses for the frame at `time_s`."""
    return f"{Path(path).stem}_{max(0, int(round(time_s * 1000))):09d}ms.jpg"


def thumbnail_jpeg(path: str | os.PathLike[str], time_s: float, size: int = THUMB_SIZE, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of the frame on screen at `time_s` (seconds from the start of the file)."""
    frames, _ = frames_at(path, [float(time_s)], size=size, mode="fit")
    return _jpeg(frames[0], quality)


def save_thumbnails(
    path: str | os.PathLike[str],
    times_s: Sequence[float],
    out_dir: str | os.PathLike[str],
    size: int = THUMB_SIZE,
    quality: int = JPEG_QUALITY,
) -> list[Path]:
    """Write one JPEG per time into `out_dir` (one decode pass for all); returns the paths in order."""
    if not times_s:
        return []
    frames, _ = frames_at(path, [float(t) for t in times_s], size=size, mode="fit")
    out = Path(out_dir)
    written: list[Path] = []
    for t, rgb in zip(times_s, frames):
        target = out / thumbnail_name(path, float(t))
        atomic_write_bytes(target, _jpeg(rgb, quality))
        written.append(target)
    return written
