"""The manifest: how users describe data (DESIGN §2).

JSONL (or CSV with the same columns), one caption per line; several lines may name the same video.
Required: `video`, `caption`. Optional: `split` (train|val|test), `id`, `start`/`end` seconds (a clip
of a longer video), and any extra fields (e.g. `tags`), which are carried through untouched.
Relative video paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_text
from tvr.errors import TvrError

SPLITS = ("train", "val", "test")
_KNOWN_FIELDS = ("video", "caption", "split", "id", "start", "end")


@dataclass(frozen=True)
class ManifestEntry:
    """One caption of one video (or clip)."""

    video: str  # as written in the manifest (relative to the manifest's folder, or absolute)
    caption: str
    split: str | None = None
    id: str | None = None
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def video_path(self, root: str | Path) -> Path:
        """The video file, resolved against `root` (the manifest's folder)."""
        p = Path(self.video)
        return p if p.is_absolute() else Path(root) / p

    @property
    def video_key(self) -> str:
        """Identifies the video *clip*: two entries with the same key share one gallery item."""
        if self.start is None and self.end is None:
            return self.video
        return f"{self.video}#{_fmt_time(self.start)}-{_fmt_time(self.end)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"video": self.video, "caption": self.caption}
        if self.split is not None:
            out["split"] = self.split
        if self.id is not None:
            out["id"] = self.id
        if self.start is not None:
            out["start"] = self.start
        if self.end is not None:
            out["end"] = self.end
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Manifest:
    """A manifest file's entries and the folder relative paths resolve against."""

    entries: tuple[ManifestEntry, ...]
    root: Path
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def split(self, name: str) -> Manifest:
        return Manifest(tuple(e for e in self.entries if e.split == name), self.root, self.source)

    def splits(self) -> set[str | None]:
        return {e.split for e in self.entries}

    def video_keys(self) -> list[str]:
        """Distinct clips in first-appearance order (the gallery order)."""
        return list(dict.fromkeys(e.video_key for e in self.entries))

    def path_of(self, entry: ManifestEntry) -> Path:
        return entry.video_path(self.root)


def _fmt_time(t: float | None) -> str:
    return "" if t is None else f"{t:g}"


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a JSONL or CSV manifest; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise TvrError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TvrError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    entries = tuple(_entry(path, line_no, row) for line_no, row in rows)
    if not entries:
        raise TvrError(f"{path}: manifest has no entries")
    return Manifest(entries, path.parent.resolve(), path)


def parse_manifest_rows(rows: Iterable[tuple[int, dict[str, Any]]], source: str | Path) -> list[ManifestEntry]:
    """Validate already-parsed rows (line number, dict) into entries."""
    return [_entry(Path(source), n, r) for n, r in rows]


def write_manifest(path: str | Path, entries: Sequence[ManifestEntry]) -> None:
    """Write entries as JSONL (or CSV if the name ends in .csv), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        cols = list(_KNOWN_FIELDS) + sorted({k for e in entries for k in e.extra})
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for e in entries:
            row = e.to_json()
            writer.writerow({k: _csv_cell(row.get(k)) for k in cols})
        atomic_write_text(path, buf.getvalue())
        return
    lines = (json.dumps(e.to_json(), ensure_ascii=False) for e in entries)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TvrError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TvrError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_no, row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise TvrError(f"{path}: empty CSV (no header)")
    for col in ("video", "caption"):
        if col not in reader.fieldnames:
            raise TvrError(f"{path}:1: CSV header lacks the column {col!r}")
    rows = []
    for i, row in enumerate(reader, start=2):
        clean: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        for k in ("start", "end"):
            if k in clean:
                try:
                    clean[k] = float(clean[k])
                except ValueError:
                    raise TvrError(f"{path}:{i}: field {k!r} must be a number, got {clean[k]!r}") from None
        rows.append((i, clean))
    return rows


def _entry(path: Path, line_no: int, row: dict[str, Any]) -> ManifestEntry:
    where = f"{path}:{line_no}"
    video = row.get("video")
    if not isinstance(video, str) or not video.strip():
        raise TvrError(f"{where}: field 'video' is missing or not a non-empty string")
    caption = row.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise TvrError(f"{where}: field 'caption' is missing or not a non-empty string")
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise TvrError(f"{where}: field 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    ident = row.get("id")
    if ident is not None and not isinstance(ident, (str, int)):
        raise TvrError(f"{where}: field 'id' must be a string or integer")
    start, end = _time(where, row, "start"), _time(where, row, "end")
    if start is not None and end is not None and end <= start:
        raise TvrError(f"{where}: 'end' ({end}) must be after 'start' ({start})")
    extra = {k: v for k, v in row.items() if k not in _KNOWN_FIELDS}
    return ManifestEntry(
        video=video, caption=caption.strip(), split=split,
        id=None if ident is None else str(ident), start=start, end=end, extra=extra,
    )


def _time(where: str, row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise TvrError(f"{where}: field {key!r} must be a non-negative number of seconds, got {v!r}")
    return float(v)
