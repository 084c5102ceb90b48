"""MSVD (Microsoft Research Video Description Corpus), English captions.

Official files: `AllVideoDescriptions.txt` (`#` header lines, then `<clip> <caption>` a line, clip
= `<youtube id>_<start>_<end>`) and `youtube_mapping.txt` (`<clip> vid<N>`, given as --split-list).
Split by the mapping's number: vid1–1200 train, 1201–1300 val, 1301–1970 test; all captions of
every video. Videos ship as `YouTubeClips/<clip>.avi`; `vid<N>.*` files are found too.
"""

from __future__ import annotations

import re
from pathlib import Path

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import read_lines
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

SPLIT_BOUNDS = (("train", 1, 1200), ("val", 1201, 1300), ("test", 1301, 1970))
_VID = re.compile(r"^vid(\d+)$")


@register
class Msvd(Benchmark):
    name = "msvd"
    summary = "MSVD: 1,200 / 100 / 670 videos, all English captions each"
    splits = ("train", "val", "test")
    annotations_help = "AllVideoDescriptions.txt"
    split_list_help = "youtube_mapping.txt (clip → vidN; N decides the split) — required"

    def load(self, sources: Sources) -> Converted:
        if sources.split_list is None:
            raise TvrError("msvd needs --split-list youtube_mapping.txt (its vidN numbers define the split)")
        if len(sources.annotations) != 1:
            raise TvrError(f"msvd takes one --annotations file (AllVideoDescriptions.txt), got {len(sources.annotations)}")
        numbers = read_mapping(sources.split_list)
        captions = read_descriptions(sources.annotations[0])
        unmapped = [c for c in captions if c not in numbers]
        notes = []
        if unmapped:
            notes.append(f"{len(unmapped)} described clips are not in the mapping and are left out, e.g. {unmapped[0]}")
        silent = [c for c in numbers if c not in captions]
        if silent:
            notes.append(f"{len(silent)} mapped clips have no description, e.g. {silent[0]}")
        entries = []
        for clip in sorted((c for c in captions if c in numbers), key=numbers.__getitem__):
            n = numbers[clip]
            split = next((s for s, lo, hi in SPLIT_BOUNDS if lo <= n <= hi), None)
            if split is None:
                raise TvrError(f"{sources.split_list}: clip {clip!r} maps to vid{n}, outside vid1..vid1970")
            entries += [ManifestEntry(f"{clip}.avi", c, split, id=f"vid{n}#{k}") for k, c in enumerate(captions[clip])]
        aliases = {f"{clip}.avi": (f"vid{numbers[clip]}",) for clip in captions if clip in numbers}
        return Converted(tuple(entries), tuple(notes), aliases)


def read_mapping(path: Path) -> dict[str, int]:
    """clip name → N of its `vidN` id."""
    numbers: dict[str, int] = {}
    for line_no, line in read_lines(path):
        parts = line.split()
        where = f"{path}:{line_no}"
        if len(parts) != 2:
            raise TvrError(f"{where}: expected '<clip> vid<N>', got {line!r}")
        m = _VID.match(parts[1])
        if m is None:
            raise TvrError(f"{where}: field 'vid' must look like vid<N>, got {parts[1]!r}")
        if parts[0] in numbers:
            raise TvrError(f"{where}: clip {parts[0]!r} is mapped twice")
        numbers[parts[0]] = int(m.group(1))
    if not numbers:
        raise TvrError(f"{path}: empty mapping")
    return numbers


def read_descriptions(path: Path) -> dict[str, list[str]]:
    """clip name → its captions in file order."""
    captions: dict[str, list[str]] = {}
    for line_no, line in read_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise TvrError(f"{path}:{line_no}: field 'caption' is missing after clip {parts[0]!r}")
        captions.setdefault(parts[0], []).append(parts[1].strip())
    if not captions:
        raise TvrError(f"{path}: no descriptions")
    return captions
