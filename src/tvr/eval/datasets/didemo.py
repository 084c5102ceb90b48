"""DiDeMo paragraph retrieval (Collaborative Experts / CLIP4Clip protocol).

Official files `{train,val,test}_data.json`: a list of descriptions, each
`{"video", "description", "times": [[start_seg, end_seg], ...], "annotation_id", ...}` where a
segment is one of the six 5-second chunks (0..5) and `times` holds one pair per annotator.
All descriptions of a video are joined into one query, in **time order**: sorted by the median
annotated start segment, then the median end segment, then the order in the file. The test split
is the 1,004 videos of `ce_test_list.txt` (--split-list); the file itself has 1,037.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import (
    as_number_pair,
    get_field,
    get_text,
    infer_split,
    read_json,
    read_name_list,
)
from tvr.eval.datasets.paragraphs import Sentence, paragraph_entry
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register

SEGMENT_SECONDS = 5.0
SPLIT_PATTERNS = (("train", "train"), ("val", "val"), ("test", "test"))
TEST_VIDEOS = 1004


@register
class Didemo(Benchmark):
    name = "didemo"
    summary = "DiDeMo paragraph retrieval: descriptions of a video joined in time order; test = 1,004 videos"
    splits = ("train", "val", "test")
    annotations_help = "train_data.json / val_data.json / test_data.json (split taken from the file name)"
    split_list_help = "ce_test_list.txt: the 1,004 test videos of the paragraph-retrieval protocol"

    def load(self, sources: Sources) -> Converted:
        notes: list[str] = []
        entries = []
        test_given = False
        for path in sources.annotations:
            split = infer_split(path, SPLIT_PATTERNS)
            videos = _read_descriptions(path)
            order = list(videos)
            if split == "test":
                test_given = True
                if sources.split_list is not None:
                    order = _apply_list(sources.split_list, videos)
                else:
                    notes.append(
                        f"{path.name}: all {len(videos)} test videos kept; the paragraph protocol uses the "
                        f"{TEST_VIDEOS} of ce_test_list.txt (pass it as --split-list)"
                    )
            entries += [
                paragraph_entry(video, split, video, sorted_sentences(videos[video]))
                for video in order
            ]
        if sources.split_list is not None and not test_given:
            raise TvrError(f"{sources.split_list}: the DiDeMo split list selects test videos; pass test_data.json")
        return Converted(tuple(entries), tuple(notes))


def sorted_sentences(items: list[tuple[int, str, list[tuple[float, float]]]]) -> list[Sentence]:
    """Descriptions in time order: (median start segment, median end segment, file position)."""

    def key(item: tuple[int, str, list[tuple[float, float]]]) -> tuple[float, float, int]:
        position, _, times = item
        return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times), position

    out = []
    for item in sorted(items, key=key):
        _, text, times = item
        start_seg, end_seg = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        out.append(Sentence(text, start_seg * SEGMENT_SECONDS, (end_seg + 1) * SEGMENT_SECONDS))
    return out


def _read_descriptions(path: Path) -> dict[str, list[tuple[int, str, list[tuple[float, float]]]]]:
    """video → [(position in file, description, annotator times)] in first-appearance order."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise TvrError(f"{path}: expected a JSON list of descriptions, got {type(doc).__name__}")
    videos: dict[str, list[tuple[int, str, list[tuple[float, float]]]]] = {}
    for i, item in enumerate(doc):
        where = f"{path}: [{i}]"
        video = get_text(item, "video", where)
        text = get_text(item, "description", where)
        raw_times = get_field(item, "times", list, where)
        if not raw_times:
            raise TvrError(f"{where}: field 'times' is empty")
        times = [as_number_pair(t, where, "times") for t in raw_times]
        videos.setdefault(video, []).append((i, text, times))
    if not videos:
        raise TvrError(f"{path}: no descriptions")
    return videos


def _apply_list(split_list: Path, videos: dict[str, list]) -> list[str]:
    names = read_name_list(split_list)
    absent = [n for n in names if n not in videos]
    if absent:
        raise TvrError(
            f"{split_list}: {len(absent)} listed videos have no description in the test annotations "
            f"(first: {', '.join(absent[:5])})"
        )
    return names
