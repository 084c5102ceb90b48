"""Atomic file writes: a reader never sees half a file, and a kill -9 never corrupts the old one.

Write to a temporary file in the same directory, flush + fsync, then `os.replace` onto the name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_file_mode())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def temp_path_beside(path: str | Path) -> Path:
    """A fresh temporary name in `path`'s directory, for libraries that insist on writing by name
    (e.g. safetensors.save_file, faiss.write_index); finish with `commit_temp`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)  # private (0o600) until commit_temp gives it its mode
    return Path(tmp)


def _default_file_mode() -> int:
    """The mode `open()` would give a new file (0o666 less the umask); mkstemp's 0o600 would make
    results unreadable to other users."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The mode `mkdir()` would give a new folder (0o777 less the umask); for folders made by
    `tempfile.mkdtemp` (0o700) that become results."""
    return 0o777 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def commit_temp(tmp: str | Path, path: str | Path) -> None:
    """fsync a finished temporary file and move it onto `path` atomically, with the mode `open()`
    would have given it (a library writing by name may have recreated it 0o600, as safetensors does)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
        os.fchmod(fh.fileno(), _default_file_mode())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
