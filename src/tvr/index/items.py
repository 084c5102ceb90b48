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
    duration_s REAL
)
"""


@dataclass(frozen=True)
class Item:
    """One gallery item: a video file or a [start, end] clip of one."""

    key: str  # feature-store key: absolute path (+ "#start-end" for clips)
    name: str  # as the user wrote it (manifest spelling, or the path relative to the folder)
    path: str  # absolute path of the file
    start_s: float | None
    end_s: float | None
    duration_s: float | None  # duration of the sampled clip


def write_items(path: Path, items: Sequence[Item]) -> None:
    tmp = temp_path_beside(path)
    try:
        tmp.unlink()  # sqlite wants to create the file itself
        db = sqlite3.connect(tmp)
        try:
            with db:
                db.execute(_SCHEMA)
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r, i.key, i.name, i.path, i.start_s, i.end_s, i.duration_s) for r, i in enumerate(items)],
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
            self._n = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise TvrError(f"{path}: unreadable item table ({exc})") from None

    def __len__(self) -> int:
        return self._n

    def get(self, rows: Sequence[int]) -> list[Item]:
        rows = [int(r) for r in rows]
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        found = {
            r[0]: Item(*r[1:])
            for r in self._db.execute(
                f"SELECT row, key, name, path, start_s, end_s, duration_s FROM items WHERE row IN ({marks})", rows
            )
        }
        missing = [r for r in rows if r not in found]
        if missing:
            raise TvrError(f"{self.path}: no item for gallery row {missing[0]}")
        return [found[r] for r in rows]

    def find(self, ref: str) -> int | None:
        """The row of the item whose name, key or path is `ref` (a path also as given, resolved), or None."""
        candidates = [ref]
        with contextlib.suppress(OSError, ValueError):
            candidates.append(str(Path(ref).expanduser().resolve()))
        for column in ("name", "key", "path"):
            for value in candidates:
                hit = self._db.execute(f"SELECT row FROM items WHERE {column} = ? ORDER BY row LIMIT 1", (value,)).fetchone()
                if hit is not None:
                    return int(hit[0])
        return None

    def all(self) -> list[Item]:
        cur = self._db.execute("SELECT key, name, path, start_s, end_s, duration_s FROM items ORDER BY row")
        return [Item(*r) for r in cur]

    def close(self) -> None:
        self._db.close()
