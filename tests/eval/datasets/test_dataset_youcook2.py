"""YouCook2 clip-level captions with start/end inside the full video."""

import json

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries


def database():
    return {"database": {
        "GLGh4Zk2H5o": {"duration": 241.62, "subset": "training", "recipe_type": "113", "video_url": "u",
                        "annotations": [{"segment": [90, 102], "id": 0, "sentence": "spread margarine on bread"},
                                        {"segment": [114, 127], "id": 1, "sentence": "place a slice of cheese"}]},
        "xHr8X2Wpmno": {"duration": 100.0, "subset": "validation", "recipe_type": "201", "video_url": "u",
                        "annotations": [{"segment": [5.5, 20], "id": 0, "sentence": "boil water"}]},
    }}


def test_clips_with_times_and_splits(tmp_path):
    path = tmp_path / "youcookii_annotations_trainval.json"
    path.write_text(json.dumps(database()))
    entries = load_entries("youcook2", [path]).entries
    assert [(e.video, e.caption, e.split, e.start, e.end, e.id) for e in entries] == [
        ("training/113/GLGh4Zk2H5o.mp4", "spread margarine on bread", "train", 90.0, 102.0, "GLGh4Zk2H5o_0"),
        ("training/113/GLGh4Zk2H5o.mp4", "place a slice of cheese", "train", 114.0, 127.0, "GLGh4Zk2H5o_1"),
        ("validation/201/xHr8X2Wpmno.mp4", "boil water", "test", 5.5, 20.0, "xHr8X2Wpmno_0"),
    ]
    assert len({e.video_key for e in entries}) == 3  # clips of one video are distinct gallery items


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["database"]["GLGh4Zk2H5o"]["annotations"][1].update(segment=[9, 3]), "annotations[1]: field 'segment'"),
        (lambda d: d["database"]["GLGh4Zk2H5o"].pop("annotations"), "field 'annotations' is missing"),
        (lambda d: d.pop("database"), "field 'database' is missing"),
    ],
)
def test_errors(tmp_path, mutate, needle):
    doc = database()
    mutate(doc)
    path = tmp_path / "youcookii_annotations_trainval.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TvrError) as err:
        load_entries("youcook2", [path])
    assert str(path) in str(err.value) and needle in str(err.value)
