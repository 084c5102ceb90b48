"""VATEX English text-video retrieval with the split the papers use (HGR, Chen et al. 2020):
25,991 training videos, and the official 3,000 validation videos halved into 1,500 val and
1,500 test; all 10 English captions of each video (`enCap`; `chCap` is ignored).

Official files: `vatex_training_v1.0.json`, `vatex_validation_v1.0.json` (also
`vatex_public_test_english_v1.1.json`), each a list of `{"videoID", "enCap": [...], ...}`.
--split-list takes the 1,500 test video ids; listed videos become test, other validation ones val.
"""

from __future__ import annotations

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import get_string_list, get_text, infer_split, read_json, read_name_list
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

SPLIT_PATTERNS = (("training", "train"), ("train", "train"), ("validation", "val"), ("val", "val"), ("test", "test"))
TEST_VIDEOS = 1500


@register
class Vatex(Benchmark):
    name = "vatex"
    summary = "VATEX English: 25,991 train / 1,500 val / 1,500 test (from official validation), 10 captions each"
    splits = ("train", "val", "test")
    annotations_help = "vatex_training_v1.0.json and/or vatex_validation_v1.0.json (split from the file name)"
    split_list_help = "the 1,500 test video ids (HGR split), one a line; they are taken from the validation file"

    def load(self, sources: Sources) -> Converted:
        test_ids = read_name_list(sources.split_list) if sources.split_list is not None else None
        videos: dict[str, tuple[str, list[str]]] = {}
        for path in sources.annotations:
            split = infer_split(path, SPLIT_PATTERNS)
            doc = read_json(path)
            if not isinstance(doc, list):
                raise TvrError(f"{path}: expected a JSON list of videos, got {type(doc).__name__}")
            for i, item in enumerate(doc):
                where = f"{path}: [{i}]"
                vid = get_text(item, "videoID", where)
                captions = [c for c in get_string_list(item, "enCap", where) if c]
                if not captions:
                    raise TvrError(f"{where}: field 'enCap' holds no caption")
                videos.setdefault(vid, (split, captions))
        notes = []
        if test_ids is not None:
            absent = [v for v in test_ids if v not in videos]
            if absent:
                raise TvrError(
                    f"{sources.split_list}: {len(absent)} listed test videos are not in the given annotations "
                    f"(first: {', '.join(absent[:5])}); pass vatex_validation_v1.0.json"
                )
            for vid in test_ids:
                if videos[vid][0] != "val":
                    raise TvrError(
                        f"{sources.split_list}: listed test video {vid!r} comes from the {videos[vid][0]} "
                        "annotations; the test videos must come from vatex_validation_v1.0.json"
                    )
                videos[vid] = ("test", videos[vid][1])
            if len(test_ids) != TEST_VIDEOS:
                notes.append(f"the split list names {len(test_ids)} test videos; the papers' split has {TEST_VIDEOS}")
        elif any(split == "val" for split, _ in videos.values()):
            notes.append("no --split-list: all validation videos are labelled val (the papers test on 1,500 of them)")
        listed = set(test_ids or ())
        order = [v for v in videos if v not in listed] + list(test_ids or ())
        entries = tuple(
            ManifestEntry(f"{vid}.mp4", caption, videos[vid][0], id=f"{vid}#{k}")
            for vid in order
            for k, caption in enumerate(videos[vid][1])
        )
        return Converted(entries, tuple(notes))
