"""Official annotation files → a manifest on disk: load, pick a split, resolve videos, write.

This is what `tvr dataset convert` runs; it is also the Python entry point
(`convert(ConvertRequest(...))`). Benchmark modules only parse; everything shared lives here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tvr.errors import TvrError
from tvr.eval.datasets.registry import Converted, Sources, get_benchmark
from tvr.eval.datasets.videos import VideoFinder, manifest_path
from tvr.io.manifest import SPLITS, ManifestEntry, write_manifest

MISSING_EXAMPLES = 5  # how many missing video names a report shows


@dataclass(frozen=True)
class ConvertRequest:
    """One `tvr dataset convert` invocation."""

    dataset: str
    annotations: tuple[Path, ...]
    out: Path
    split_list: Path | None = None
    videos: Path | None = None  # None: keep the conventional relative paths, check nothing
    split: str | None = None  # None: every split the files hold
    keep_missing: bool = False
    force: bool = False  # overwrite an existing `out`


@dataclass(frozen=True)
class ConvertReport:
    """What was written, per split, and which videos were not found."""

    dataset: str
    out: str
    entries: int
    videos: int
    per_split: dict[str, dict[str, int]]
    videos_checked: bool
    missing_videos: int = 0
    missing_examples: tuple[str, ...] = ()
    skipped_entries: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "out": self.out,
            "entries": self.entries,
            "videos": self.videos,
            "per_split": self.per_split,
            "videos_checked": self.videos_checked,
            "missing_videos": self.missing_videos,
            "missing_examples": list(self.missing_examples),
            "skipped_entries": self.skipped_entries,
            "notes": list(self.notes),
        }


def load_entries(
    dataset: str,
    annotations: tuple[Path, ...] | list[Path],
    split_list: Path | None = None,
    split: str | None = None,
) -> Converted:
    """A benchmark's entries with conventional video paths, optionally only one split."""
    bench = get_benchmark(dataset)
    if not annotations:
        raise TvrError(f"dataset {dataset!r} needs --annotations: {bench.annotations_help}")
    for path in annotations:
        if not Path(path).is_file():
            raise TvrError(f"{path}: annotation file not found (or not a file)")
    if split_list is not None:
        if not bench.split_list_help:
            raise TvrError(f"dataset {dataset!r} takes no --split-list")
        if not Path(split_list).is_file():
            raise TvrError(f"{split_list}: split list not found")
    if split is not None and split not in SPLITS:
        raise TvrError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    converted = bench.load(Sources(tuple(Path(p) for p in annotations), split_list))
    if split is None:
        return converted
    kept = tuple(e for e in converted.entries if e.split == split)
    if not kept:
        present = sorted({e.split for e in converted.entries if e.split})
        raise TvrError(
            f"dataset {dataset!r}: the given annotation files hold no {split!r} split "
            f"(they hold: {', '.join(present) or 'nothing'})"
        )
    return Converted(kept, converted.notes, converted.aliases)


def convert(req: ConvertRequest) -> ConvertReport:
    """Load, resolve videos against `req.videos`, write `req.out` atomically, and report."""
    if req.videos is not None and not req.videos.is_dir():
        raise TvrError(f"{req.videos}: video folder not found")
    if req.out.is_dir():
        raise TvrError(f"{req.out}: is a directory; --out names the manifest file to write")
    if req.out.exists() and not req.force:
        raise TvrError(f"{req.out}: already exists (use --force to overwrite it)")
    converted = load_entries(req.dataset, req.annotations, req.split_list, req.split)
    entries = list(converted.entries)
    missing: list[str] = []
    skipped = 0
    if req.videos is not None:
        entries, missing, skipped = _resolve(req, entries, converted.aliases)
    if not entries:
        raise TvrError(
            f"no entries left to write: none of the {len(missing)} videos was found under {req.videos} "
            f"(first: {', '.join(missing[:MISSING_EXAMPLES])}); pass --keep-missing to keep them"
        )
    write_manifest(req.out, entries)
    return ConvertReport(
        dataset=req.dataset,
        out=str(req.out),
        entries=len(entries),
        videos=len({e.video_key for e in entries}),
        per_split=_per_split(entries),
        videos_checked=req.videos is not None,
        missing_videos=len(missing),
        missing_examples=tuple(missing[:MISSING_EXAMPLES]),
        skipped_entries=skipped,
        notes=converted.notes,
    )


def _resolve(
    req: ConvertRequest, entries: list[ManifestEntry], aliases: Mapping[str, tuple[str, ...]]
) -> tuple[list[ManifestEntry], list[str], int]:
    """Entries with real video paths; missing videos (distinct, in order) and entries skipped."""
    assert req.videos is not None
    finder = VideoFinder(req.videos)
    found: dict[str, Path | None] = {}
    out: list[ManifestEntry] = []
    skipped = 0
    for entry in entries:
        if entry.video not in found:
            found[entry.video] = finder.find(entry.video, aliases.get(entry.video, ()))
        path = found[entry.video]
        if path is None:
            if not req.keep_missing:
                skipped += 1
                continue
            path = req.videos / entry.video  # where the conventional layout would put it
        out.append(replace(entry, video=manifest_path(path, req.out)))
    missing = [name for name, path in found.items() if path is None]
    return out, missing, skipped


def _per_split(entries: list[ManifestEntry]) -> dict[str, dict[str, int]]:
    counts = Counter(e.split or "" for e in entries)
    videos: dict[str, set[str]] = {}
    for e in entries:
        videos.setdefault(e.split or "", set()).add(e.video_key)
    return {s: {"entries": counts[s], "videos": len(videos[s])} for s in sorted(counts)}
