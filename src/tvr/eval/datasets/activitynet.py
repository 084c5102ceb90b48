"""ActivityNet Captions paragraph retrieval (CE / CLIP4Clip / MMT protocol): all sentences of a
video joined into one query; evaluated on `val_1` (4,917 videos), which this manifest calls test.

Official files `train.json`, `val_1.json`, `val_2.json`: `{video_id: {"duration": s,
"timestamps": [[start, end], ...], "sentences": [...]}}`. Sentences are joined in file order,
which the release lists by time; each sentence's [start, end] is kept in `sentence_times`.
"""

from __future__ import annotations

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import (
    as_number_pair,
    get_field,
    get_number,
    get_string_list,
    infer_split,
    read_json,
)
from tvr.eval.datasets.paragraphs import Sentence, paragraph_entry
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register

# val_1 is the papers' test set; val_2 is kept as val (unused by the seed papers).
SPLIT_PATTERNS = (("val_1", "test"), ("val1", "test"), ("val_2", "val"), ("val2", "val"), ("train", "train"))
TEST_VIDEOS = 4917


@register
class ActivityNet(Benchmark):
    name = "activitynet"
    summary = "ActivityNet Captions paragraph retrieval: sentences joined in order; test = val_1 (4,917 videos)"
    splits = ("train", "val", "test")
    annotations_help = "train.json / val_1.json (test) / val_2.json (val), split taken from the file name"

    def load(self, sources: Sources) -> Converted:
        entries = []
        aliases: dict[str, tuple[str, ...]] = {}
        notes = []
        for path in sources.annotations:
            split = infer_split(path, SPLIT_PATTERNS)
            doc = read_json(path)
            if not isinstance(doc, dict):
                raise TvrError(f"{path}: expected a JSON object mapping video ids to annotations")
            for video_id, item in doc.items():
                where = f"{path}: [{video_id!r}]"
                duration = get_number(item, "duration", where)
                texts = get_string_list(item, "sentences", where)
                stamps = get_field(item, "timestamps", list, where)
                if len(stamps) != len(texts):
                    raise TvrError(
                        f"{where}: field 'timestamps' has {len(stamps)} entries but 'sentences' has {len(texts)}"
                    )
                sentences = [Sentence(t, *as_number_pair(s, where, "timestamps")) for t, s in zip(texts, stamps)]
                sentences = [s for s in sentences if s.text]
                if not sentences:
                    raise TvrError(f"{where}: field 'sentences' holds no text")
                video = f"{video_id}.mp4"
                if video_id.startswith("v_"):
                    aliases[video] = (video_id[2:],)  # youtube-dl names files by the bare id
                entries.append(paragraph_entry(video, split, video_id, sentences, duration=duration))
            n = len(doc)
            if split == "test" and n != TEST_VIDEOS:
                notes.append(f"{path.name}: {n} videos; the val_1 protocol has {TEST_VIDEOS}")
        return Converted(tuple(entries), tuple(notes), aliases)
