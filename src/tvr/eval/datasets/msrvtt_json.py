"""MSR-VTT's official JSON annotations (`train_val_videodatainfo.json`, `test_videodatainfo.json`,
or CLIP4Clip's merged `MSRVTT_data.json`), shared by the 1k-A and full-split benchmarks.

Format: `{"videos": [{"video_id": "video0", "split": "train|validate|test", ...}, ...],
"sentences": [{"video_id": "video0", "caption": "...", "sen_id": 0}, ...]}`; 20 sentences a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import get_field, get_text, read_json

SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


@dataclass(frozen=True)
class MsrvttVideo:
    """One video of the JSON: its official split and its captions as (sen_id, caption)."""

    video_id: str
    split: str  # train | val | test (the official "validate" is called val here)
    captions: tuple[tuple[int, str], ...]


def video_file(video_id: str) -> str:
    """The official release's file name (`MSRVTT/videos/all/video7020.mp4`)."""
    return f"{video_id}.mp4"


def read_msrvtt_json(paths: Sequence[Path]) -> list[MsrvttVideo]:
    """Videos of all files merged in file order; a sentence naming an unknown video is an error."""
    splits: dict[str, str] = {}
    captions: dict[str, dict[int, str]] = {}
    for path in paths:
        doc = read_json(path)
        videos = get_field(doc, "videos", list, str(path))
        sentences = get_field(doc, "sentences", list, str(path))
        for i, item in enumerate(videos):
            where = f"{path}: videos[{i}]"
            vid = get_text(item, "video_id", where)
            raw_split = get_text(item, "split", where)
            if raw_split not in SPLIT_NAMES:
                raise TvrError(f"{where}: field 'split' must be train, validate or test, got {raw_split!r}")
            split = SPLIT_NAMES[raw_split]
            if splits.setdefault(vid, split) != split:
                raise TvrError(f"{where}: video {vid!r} is listed in two splits ({splits[vid]}, {split})")
            captions.setdefault(vid, {})
        for i, item in enumerate(sentences):
            where = f"{path}: sentences[{i}]"
            vid = get_text(item, "video_id", where)
            sen_id = get_field(item, "sen_id", int, where)
            caption = get_text(item, "caption", where)
            if vid not in captions:
                raise TvrError(f"{where}: video_id {vid!r} is not among the 'videos' of the given files")
            captions[vid].setdefault(sen_id, caption)
    return [MsrvttVideo(vid, splits[vid], tuple(caps.items())) for vid, caps in captions.items()]
