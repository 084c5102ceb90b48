"""Per-item metadata of an index (SQLite): which video or clip each gallery row is.

Row r of the FAISS index and of the stored gallery is item r here. SQLite keeps lookups of a few
hits cheap even for millions of items; the file is written under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tvr.atomic import commit_temp, temp_path_beside
from tvr.errors import TvrError

_SCHEMA = """
CREATE TABLE items (
    row INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    start_s REAL,
    end_s REAL,
    duration_s REAL,
    file_dev INTEGER,
    file_ino INTEGER,
    file_size INTEGER,
    file_mtime_ns INTEGER
)
"""
_COLUMNS = "key, name, path, start_s, end_s, duration_s"
_IDENTITY = "file_dev, file_ino, file_size, file_mtime_ns"


class ItemStorageError(TvrError):
    """items.sqlite cannot be read (damaged, changed underneath, or missing a row the index names)."""


@dataclass(frozen=True)
class Item:
    """One gallery item: a video file or a [start, end] clip of one."""

    key: str  # feature-store key: absolute path (+ "#start-end" for clips)
    name: str  # as the user wrote it (manifest spelling, or the path relative to the folder)
    path: str  # absolute path of the file
    start_s: float | None
    end_s: float | None
    duration_s: float | None  # duration of the sampled clip
    # (device, inode, size, mtime ns) of the file when it was indexed: the server serves a file only
    # while it is still this one (None: an index written before tvr recorded it)
    file_identity: tuple[int, int, int, int] | None = None


def file_identity(path: str | Path) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime ns) of `path` itself (a symlink is not followed)."""
    st = Path(path).lstat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def write_items(path: Path, items: Sequence[Item]) -> None:
    tmp = temp_path_beside(path)
    try:
        tmp.unlink()  # sqlite wants to create the file itself
        db = sqlite3.connect(tmp)
        try:
            with db:
                db.execute(_SCHEMA)
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(r, i.key, i.name, i.path, i.start_s, i.end_s, i.duration_s, *(i.file_identity or (None,) * 4))
                     for r, i in enumerate(items)],
                )
        finally:
            db.close()
        commit_temp(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ItemTable:
    """Read-only access to items.sqlite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            # read through to the file (the OS caches it): a file damaged while the index is open shows
            # at the next lookup instead of being hidden by SQLite's own page cache
            self._db.execute("PRAGMA cache_size = 0")
            self._n = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(items)")}
        except sqlite3.DatabaseError as exc:
            raise ItemStorageError(f"{path}: unreadable item table ({exc})") from None
        self._select = _COLUMNS + (f", {_IDENTITY}" if "file_ino" in columns else "")

    def __len__(self) -> int:
        return self._n

    def get(self, rows: Sequence[int]) -> list[Item]:
        rows = [int(r) for r in rows]
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        try:
            found = {
                r[0]: _item(r[1:])
                for r in self._db.execute(f"SELECT row, {self._select} FROM items WHERE row IN ({marks})", rows)
            }
        except sqlite3.DatabaseError as exc:
            raise ItemStorageError(f"{self.path}: unreadable item table ({exc})") from None
        missing = [r for r in rows if r not in found]
        if missing:
            raise ItemStorageError(f"{self.path}: no item for gallery row {missing[0]}")
        return [found[r] for r in rows]

    def find(self, ref: str) -> int | None:
        """The row of the item whose name, key or path is `ref` (a path also as given, resolved), or None."""
        candidates = [ref]
        with contextlib.suppress(OSError, ValueError):
            candidates.append(str(Path(ref).expanduser().resolve()))
        try:
            for column in ("name", "key", "path"):
                for value in candidates:
                    query = f"SELECT row FROM items WHERE {column} = ? ORDER BY row LIMIT 1"
                    hit = self._db.execute(query, (value,)).fetchone()
                    if hit is not None:
                        return int(hit[0])
        except sqlite3.DatabaseError as exc:
            raise ItemStorageError(f"{self.path}: unreadable item table ({exc})") from None
        return None

    def check(self) -> None:
        """SQLite's own consistency check of the whole table; ItemStorageError naming the first problem."""
        try:
            result = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise ItemStorageError(f"{self.path}: unreadable item table ({exc})") from None
        if result != "ok":
            raise ItemStorageError(f"{self.path}: damaged item table ({result})")

    def all(self) -> list[Item]:
        try:
            return [_item(r) for r in self._db.execute(f"SELECT {self._select} FROM items ORDER BY row")]
        except sqlite3.DatabaseError as exc:
            raise ItemStorageError(f"{self.path}: unreadable item table ({exc})") from None

    def close(self) -> None:
        self._db.close()


def _item(values: Sequence) -> Item:
    identity = tuple(values[6:10]) if len(values) >= 10 and values[7] is not None else None
    return Item(*values[:6], file_identity=identity)  # type: ignore[arg-type]
