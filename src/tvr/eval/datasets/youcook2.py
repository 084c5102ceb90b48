"""YouCook2 clip retrieval: every annotated recipe step is one clip (start/end inside the full
video) with its sentence; the papers' test set is the official validation subset.

Official file `youcookii_annotations_trainval.json`: `{"database": {youtube_id: {"duration",
"subset": "training|validation", "recipe_type", "annotations": [{"segment": [s, e], "id",
"sentence"}, ...]}}}`. Videos ship as `raw_videos/<subset>/<recipe_type>/<youtube_id>.<ext>`;
pass `--videos raw_videos` (a flat folder works too).
"""

from __future__ import annotations

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import as_number_pair, get_field, get_text, read_json
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

SUBSETS = {"training": "train", "validation": "test"}  # no captions are public for "testing"


@register
class YouCook2(Benchmark):
    name = "youcook2"
    summary = "YouCook2 clip retrieval: one sentence per recipe step (start/end kept); test = validation"
    splits = ("train", "test")
    annotations_help = "youcookii_annotations_trainval.json"

    def load(self, sources: Sources) -> Converted:
        entries = []
        skipped = 0
        for path in sources.annotations:
            db = get_field(read_json(path), "database", dict, str(path))
            for vid, item in db.items():
                where = f"{path}: database[{vid!r}]"
                subset = get_text(item, "subset", where)
                if subset not in SUBSETS:
                    skipped += 1
                    continue
                recipe = get_field(item, "recipe_type", (str, int), where)
                folder = f"{subset}/{recipe}"
                for i, ann in enumerate(get_field(item, "annotations", list, where)):
                    at = f"{where}.annotations[{i}]"
                    start, end = as_number_pair(get_field(ann, "segment", list, at), at, "segment")
                    if not 0 <= start < end:
                        raise TvrError(f"{at}: field 'segment' must have 0 <= start < end, got {[start, end]}")
                    ident = get_field(ann, "id", (int, str), at)
                    entries.append(ManifestEntry(
                        f"{folder}/{vid}.mp4", get_text(ann, "sentence", at), SUBSETS[subset],
                        id=f"{vid}_{ident}", start=start, end=end, extra={"recipe_type": str(recipe)},
                    ))
        notes = (f"{skipped} videos of subsets without public captions were skipped",) if skipped else ()
        return Converted(tuple(entries), notes)
