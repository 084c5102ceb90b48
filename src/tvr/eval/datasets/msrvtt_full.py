"""MSR-VTT with the official split: 6,513 train / 497 val / 2,990 test videos, all 20 captions of
every video (multi-caption evaluation: v2t counts a video found when any of its captions is)."""

from __future__ import annotations

from tvr.errors import TvrError
from tvr.eval.datasets.msrvtt_json import read_msrvtt_json, video_file
from tvr.eval.datasets.registry import Benchmark, Converted, Sources, register
from tvr.io.manifest import ManifestEntry

OFFICIAL_VIDEOS = {"train": 6513, "val": 497, "test": 2990}


@register
class MsrvttFull(Benchmark):
    name = "msrvtt-full"
    summary = "MSR-VTT official split: 6,513 / 497 / 2,990 videos, all 20 captions each"
    splits = ("train", "val", "test")
    annotations_help = "train_val_videodatainfo.json and/or test_videodatainfo.json (or MSRVTT_data.json)"

    def load(self, sources: Sources) -> Converted:
        for p in sources.annotations:
            if p.suffix.lower() != ".json":
                raise TvrError(f"{p}: expected an MSR-VTT .json annotation file")
        videos = read_msrvtt_json(sources.annotations)
        notes = []
        for split, official in OFFICIAL_VIDEOS.items():
            n = sum(v.split == split for v in videos)
            if n and n != official:
                notes.append(f"{split}: {n} videos; the official split has {official}")
        empty = [v.video_id for v in videos if not v.captions]
        if empty:
            notes.append(f"{len(empty)} videos have no captions and are left out, e.g. {empty[0]}")
        entries = tuple(
            ManifestEntry(video_file(v.video_id), caption, v.split, id=str(sen_id))
            for split in ("train", "val", "test")
            for v in videos
            if v.split == split
            for sen_id, caption in v.captions
        )
        return Converted(entries, tuple(notes))
