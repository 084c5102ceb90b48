"""Find the video files in a folder tree, in a stable order, so runs over a folder are reproducible."""

from __future__ import annotations

import os
from pathlib import Path

from tvr.errors import TvrError

# Extensions FFmpeg (PyAV) decodes that people use for video; compared case-insensitively.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".m2v",
        ".ts", ".mts", ".m2ts", ".wmv", ".asf", ".flv", ".3gp", ".3g2", ".ogv", ".mxf", ".vob",
    }
)


def is_video_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def find_videos(folder: str | os.PathLike[str]) -> list[Path]:
    """Video files under `folder` (recursive), sorted by path; hidden files and folders are skipped."""
    root = Path(folder)
    if not root.exists():
        raise TvrError(f"folder not found: {root}")
    if not root.is_dir():
        raise TvrError(f"not a folder: {root}")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and is_video_path(name):
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path)
    return sorted(found, key=lambda p: p.as_posix())
