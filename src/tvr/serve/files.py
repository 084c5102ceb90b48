"""Opening an indexed video for the server so that only the file that was indexed can come out.

Between indexing and a request, the file at an indexed path may have been replaced, for example by
a symlink to `/etc/passwd`. A file is served only when the object opened now is the one indexed:
opened without following a symlink in its last component, a regular file, and with the device,
inode, size and modification time recorded at index time (`Item.file_identity`). A swapped parent
folder leads elsewhere and fails the same check. For an index written before identities were
recorded, the file must be a regular file whose real path is exactly the recorded one.

The check is made on the open descriptor, and the response reads through that same descriptor
(`/proc/self/fd/N` re-opens the open file, not the path), so a swap after the check changes
nothing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tvr.index.items import Item

_FD_DIR = Path("/proc/self/fd")


class NotServable(Exception):
    """The indexed file is gone or is no longer the file that was indexed (the reason is for the log)."""


@dataclass
class OpenedVideo:
    """An indexed video opened and checked; `path` reads exactly the checked file while open."""

    fd: int
    path: str
    size: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_indexed(item: Item) -> OpenedVideo:
    """Open `item`'s file after the checks in the module docstring; NotServable when they fail."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(item.path, flags)
    except FileNotFoundError:
        raise NotServable(f"{item.path}: no longer on disk") from None
    except OSError as exc:  # ELOOP: the indexed path is now a symlink
        raise NotServable(f"{item.path}: cannot be opened without following links ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotServable(f"{item.path}: not a regular file any more")
        if item.file_identity is not None:
            now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if now != tuple(item.file_identity):
                raise NotServable(f"{item.path}: not the file that was indexed (device/inode/size/mtime "
                                  f"{now} != {tuple(item.file_identity)}); re-run tvr index")
        elif os.path.realpath(item.path) != item.path:
            raise NotServable(f"{item.path}: its real path is now {os.path.realpath(item.path)}")
    except BaseException:
        os.close(fd)
        raise
    path = str(_FD_DIR / str(fd)) if _FD_DIR.is_dir() else item.path
    return OpenedVideo(fd, path, st.st_size)
