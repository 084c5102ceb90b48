"""Finding a benchmark's videos in a local folder whatever container they were saved in.

Benchmarks name videos by a conventional relative path (`video7020.mp4`, `1004_Juno/<clip>.avi`),
but downloads differ: another extension (`.webm`, `.mkv`), a flat folder instead of sub-folders,
or YouTube ids without ActivityNet's `v_` prefix. The folder is scanned once and looked up by name
with the extension stripped, so one lookup is a dict access, not a dozen `stat` calls.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

# Preference order when one name exists in several containers.
VIDEO_EXTENSIONS = (
    ".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
    ".3gp", ".3g2", ".mts", ".ogv", ".gif",
)


def strip_video_ext(name: str) -> str:
    """`name` without a known video extension (any case) or a bare trailing dot (DiDeMo has
    names like `…_5762149bfc.`). Other dots are kept: LSMDC clip names contain timestamps."""
    lower = name.lower()
    for ext in VIDEO_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name[:-1] if name.endswith(".") else name


class VideoFinder:
    """An index of every file under `root`, keyed by relative path and base name, with and
    without the video extension."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_key: dict[str, list[str]] = defaultdict(list)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                rel = fname if rel_dir == "." else f"{rel_dir}/{fname}"
                for key in {rel, fname, strip_video_ext(rel), strip_video_ext(fname)}:
                    self._by_key[key].append(rel)

    def find(self, video: str, aliases: Iterable[str] = ()) -> Path | None:
        """The file for conventional path `video` (or one of its alias base names), or None."""
        base = PurePosixPath(video).name
        wanted_ext = video[len(strip_video_ext(video)):].lower()
        keys = [video, strip_video_ext(video), base, strip_video_ext(base)]
        keys += [k for a in aliases for k in (a, strip_video_ext(a))]
        for key in keys:
            hits = self._by_key.get(key)
            if hits:
                return self.root / min(hits, key=lambda rel: _preference(rel, wanted_ext))
        return None


def _preference(rel: str, wanted_ext: str) -> tuple[int, int, str]:
    ext = rel[len(strip_video_ext(rel)):].lower()
    rank = VIDEO_EXTENSIONS.index(ext) if ext in VIDEO_EXTENSIONS else len(VIDEO_EXTENSIONS)
    return (0 if ext == wanted_ext else 1, rank, rel)


def manifest_path(video_file: Path, manifest: Path) -> str:
    """How the manifest names a video file: relative to the manifest's folder when the file lies
    below it (the manifest and videos move together), otherwise absolute."""
    video_file = video_file.absolute()
    folder = manifest.absolute().parent
    try:
        return video_file.relative_to(folder).as_posix()
    except ValueError:
        return str(video_file)
