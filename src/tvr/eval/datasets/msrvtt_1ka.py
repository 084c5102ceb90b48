"""MSR-VTT 1k-A (JSFusion split): 1,000 test videos with one caption each, 9,000 training videos
with all 20 captions each.

Test: `MSRVTT_JSFUSION_test.csv` (columns key,vid_key,video_id,sentence). Training: the MSR-VTT
JSON(s) restricted to the 9k list (`MSRVTT_train.9k.csv` via --split-list); without the list, the
training split is every JSON video that is not in the 1k-A test CSV (that is how the 9k list was
made: the 10,000 videos minus the 1,000 test videos).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import read_csv, read_name_list
from tvr.eval.datasets.msrvtt_json import read_msrvtt_json, video_file
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

TEST_VIDEOS = 1000
TRAIN_VIDEOS = 9000


@register
class Msrvtt1kA(Benchmark):
    name = "msrvtt-1ka"
    summary = "MSR-VTT 1k-A: 1,000 test pairs (one caption a video), 9k training videos x 20 captions"
    splits = ("train", "test")
    annotations_help = (
        "MSRVTT_JSFUSION_test.csv (test) and/or the MSR-VTT JSON(s) train_val_videodatainfo.json + "
        "test_videodatainfo.json or MSRVTT_data.json (train)"
    )
    split_list_help = "MSRVTT_train.9k.csv: the 9,000 training video ids (optional when the 1k-A CSV is given)"

    def load(self, sources: Sources) -> Converted:
        csvs = [p for p in sources.annotations if p.suffix.lower() == ".csv"]
        jsons = [p for p in sources.annotations if p.suffix.lower() == ".json"]
        for p in sources.annotations:
            if p not in csvs and p not in jsons:
                raise TvrError(f"{p}: expected the 1k-A .csv or an MSR-VTT .json annotation file")
        if len(csvs) > 1:
            raise TvrError(f"{csvs[1]}: pass one 1k-A test CSV, not {len(csvs)}")
        notes: list[str] = []
        test, test_ids = _test_entries(csvs[0], notes) if csvs else ([], [])
        train: list[ManifestEntry] = []
        if jsons:
            train = _train_entries(jsons, sources.split_list, set(test_ids), notes)
        elif sources.split_list is not None:
            raise TvrError(f"{sources.split_list}: the 9k training list needs the MSR-VTT JSON annotations too")
        return Converted(tuple(train + test), tuple(notes))


def _test_entries(path: Path, notes: list[str]) -> tuple[list[ManifestEntry], list[str]]:
    """The CSV's rows in order, and their video ids."""
    entries, ids = [], []
    for line_no, row in read_csv(path, ("key", "video_id", "sentence")):
        where = f"{path}:{line_no}"
        vid, sentence, key = row["video_id"].strip(), row["sentence"].strip(), row["key"].strip()
        if not vid:
            raise TvrError(f"{where}: field 'video_id' is empty")
        if not sentence:
            raise TvrError(f"{where}: field 'sentence' is empty")
        entries.append(ManifestEntry(video_file(vid), sentence, "test", id=key or None))
        ids.append(vid)
    if not entries:
        raise TvrError(f"{path}: the 1k-A CSV has no rows")
    repeated = [v for v, n in Counter(ids).items() if n > 1]
    if repeated:
        notes.append(f"{path.name}: {len(repeated)} videos have several captions (1k-A has one), e.g. {repeated[0]}")
    if len(entries) != TEST_VIDEOS:
        notes.append(f"{path.name}: {len(entries)} rows; the official 1k-A test CSV has {TEST_VIDEOS}")
    return entries, ids


def _train_entries(jsons: list[Path], split_list: Path | None, test_ids: set[str], notes: list[str]) -> list[ManifestEntry]:
    videos = read_msrvtt_json(jsons)
    by_id = {v.video_id: v for v in videos}
    if split_list is not None:
        wanted = read_name_list(split_list)
        absent = [v for v in wanted if v not in by_id]
        if absent:
            raise TvrError(
                f"{split_list}: {len(absent)} listed videos are not in the given JSON annotations "
                f"(first: {', '.join(absent[:5])}); pass both train_val_videodatainfo.json and "
                "test_videodatainfo.json (or MSRVTT_data.json)"
            )
        clash = [v for v in wanted if v in test_ids]
        if clash:
            raise TvrError(f"{split_list}: {len(clash)} training videos are also 1k-A test videos, e.g. {clash[0]}")
    elif test_ids:
        wanted = [v.video_id for v in videos if v.video_id not in test_ids]
    else:
        raise TvrError(
            "msrvtt-1ka training split: pass --split-list MSRVTT_train.9k.csv, or the 1k-A test CSV as a "
            "second --annotations so the 9k split can be derived"
        )
    if len(wanted) != TRAIN_VIDEOS:
        notes.append(f"training split has {len(wanted)} videos; the 1k-A protocol trains on {TRAIN_VIDEOS}")
    return [
        ManifestEntry(video_file(vid), caption, "train", id=str(sen_id))
        for vid in wanted
        for sen_id, caption in by_id[vid].captions
    ]
