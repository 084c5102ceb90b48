"""LSMDC (Large Scale Movie Description Challenge) movie retrieval.

Official files (tab-separated, no header): `LSMDC16_annos_training.csv`, `LSMDC16_annos_val.csv`,
`LSMDC16_annos_test.csv` and the 1,000-clip retrieval test set the papers use,
`LSMDC16_challenge_1000_publictect.csv` (the name's typo is official). Columns: clip name,
start/end aligned, start/end extracted (`HH.MM.SS.mmm` in the movie), sentence.
Clips ship pre-cut as `<movie>/<clip>.avi`, so the manifest's start/end stay empty (they would
be seconds inside the file); the movie times go to `movie_start`/`movie_end` (extracted span) and
`aligned_start`/`aligned_end`.
"""

from __future__ import annotations

import re
from pathlib import Path

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import infer_split, read_name_list, read_text
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

SPLIT_PATTERNS = (("publictect", "test"), ("training", "train"), ("train", "train"), ("val", "val"), ("test", "test"))
TEST_CLIPS = 1000
COLUMNS = ("clip", "start_aligned", "end_aligned", "start_extracted", "end_extracted", "sentence")
_TIME = re.compile(r"^(\d+)\.(\d{1,2})\.(\d{1,2})\.(\d{1,3})$")


@register
class Lsmdc(Benchmark):
    name = "lsmdc"
    summary = "LSMDC movie retrieval: one sentence a clip; test = the 1,000-clip challenge set"
    splits = ("train", "val", "test")
    annotations_help = (
        "LSMDC16_annos_training.csv / LSMDC16_annos_val.csv / LSMDC16_challenge_1000_publictect.csv "
        "(tab-separated; split taken from the file name)"
    )
    split_list_help = "optional: clip names to keep (one a line), applied to every split"

    def load(self, sources: Sources) -> Converted:
        keep = set(read_name_list(sources.split_list)) if sources.split_list is not None else None
        entries: list[ManifestEntry] = []
        notes = []
        for path in sources.annotations:
            split = infer_split(path, SPLIT_PATTERNS)
            rows = [e for e in _read(path, split) if keep is None or e.id in keep]
            if split == "test" and len(rows) != TEST_CLIPS:
                notes.append(
                    f"{path.name}: {len(rows)} test clips; the papers' test set is the {TEST_CLIPS} clips of "
                    "LSMDC16_challenge_1000_publictect.csv"
                )
            entries += rows
        if keep is not None and not entries:
            raise TvrError(f"{sources.split_list}: none of the listed clips is in the annotations")
        return Converted(tuple(entries), tuple(notes))


def clip_video(clip: str) -> str:
    """`1004_Juno_00.00.32.849-00.00.35.458` → `1004_Juno/1004_Juno_00.00.32.849-00.00.35.458.avi`."""
    movie = clip.rsplit("_", 1)[0] if "_" in clip else clip
    return f"{movie}/{clip}.avi"


def parse_time(text: str, where: str, column: str) -> float:
    """`HH.MM.SS.mmm` → seconds."""
    m = _TIME.match(text.strip())
    if m is None:
        raise TvrError(f"{where}: column {column!r} must be a time HH.MM.SS.mmm, got {text!r}")
    hours, minutes, seconds, frac = m.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(frac) / 10 ** len(frac)


def _read(path: Path, split: str) -> list[ManifestEntry]:
    entries = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        cols = line.split("\t")
        if len(cols) < len(COLUMNS):
            raise TvrError(
                f"{where}: expected {len(COLUMNS)} tab-separated columns ({', '.join(COLUMNS)}), "
                f"got {len(cols)}; missing column {COLUMNS[len(cols)]!r}"
            )
        clip = cols[0].strip()
        sentence = " ".join(c.strip() for c in cols[5:] if c.strip())
        if not clip:
            raise TvrError(f"{where}: column 'clip' is empty")
        if not sentence:
            raise TvrError(f"{where}: column 'sentence' is empty")
        times = {name: parse_time(cols[i], where, name) for i, name in enumerate(COLUMNS[1:5], start=1)}
        entries.append(ManifestEntry(
            clip_video(clip), sentence, split, id=clip,
            extra={
                "movie_start": times["start_extracted"], "movie_end": times["end_extracted"],
                "aligned_start": times["start_aligned"], "aligned_end": times["end_aligned"],
            },
        ))
    if not entries:
        raise TvrError(f"{path}: no annotation lines")
    return entries
