"""DiDeMo paragraphs: time order by (median start, median end, file order); the 1,004 test list."""

import json
import statistics

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries


def desc(video, text, times, ann_id):
    return {"num_segments": 6, "description": text, "dl_link": "x", "times": times, "video": video,
            "annotation_id": ann_id}


@pytest.fixture
def didemo(tmp_path):
    test = [
        desc("a.mov", "the dog sits.", [[3, 3], [3, 4], [2, 3], [3, 3]], 1),  # median start 3, end 3
        desc("b.", "only one.", [[0, 0], [0, 0], [0, 0], [0, 0]], 2),
        desc("a.mov", "the dog runs.", [[0, 1], [0, 0], [1, 1], [5, 5]], 3),  # median start 0.5, end 1
        desc("a.mov", "tie later in file.", [[3, 3], [3, 3], [3, 3], [3, 4]], 4),  # same key as 1st
        desc("a.mov", "ends later.", [[3, 4], [3, 4], [3, 4], [2, 4]], 5),  # start 3, end 4
        desc("c.mp4", "not in the list.", [[1, 1], [1, 1], [1, 1], [1, 1]], 6),
    ]
    path = tmp_path / "test_data.json"
    path.write_text(json.dumps(test))
    listed = tmp_path / "ce_test_list.txt"
    listed.write_text("b.\na.mov\n")
    return path, listed


def test_paragraphs_in_time_order_and_test_list(didemo):
    path, listed = didemo
    entries = load_entries("didemo", [path], split_list=listed).entries
    assert [e.video for e in entries] == ["b.", "a.mov"]  # list order
    a = entries[1]
    assert a.extra["sentences"] == ["the dog runs.", "the dog sits.", "tie later in file.", "ends later."]
    assert a.caption == "the dog runs. the dog sits. tie later in file. ends later."
    # start = 5 s x median start segment, end = 5 s x (median end segment + 1)
    assert a.extra["sentence_times"] == [[2.5, 10.0], [15.0, 20.0], [15.0, 20.0], [15.0, 25.0]]
    assert a.split == "test" and a.id == "a.mov" and a.start is None


def test_without_list_keeps_every_video_and_says_so(didemo):
    path, _ = didemo
    conv = load_entries("didemo", [path])
    assert [e.video for e in conv.entries] == ["a.mov", "b.", "c.mp4"]
    assert any("ce_test_list" in n for n in conv.notes)


def test_split_from_file_name(didemo, tmp_path):
    path, _ = didemo
    val = tmp_path / "val_data.json"
    val.write_text(json.dumps([desc("v.mp4", "x.", [[0, 0]], 9)]))
    entries = load_entries("didemo", [val, path]).entries
    assert [(e.video, e.split) for e in entries][:2] == [("v.mp4", "val"), ("a.mov", "test")]
    odd = tmp_path / "descriptions.json"
    odd.write_text("[]")
    with pytest.raises(TvrError, match="cannot tell the split from the file name"):
        load_entries("didemo", [odd])


@pytest.mark.parametrize(
    "item, needle",
    [
        ({"video": "a.mov", "times": [[0, 0]]}, "[0]: field 'description' is missing"),
        ({"video": "a.mov", "description": "x", "times": [[0]]}, "[0]: field 'times' must be a [start, end] pair"),
        ({"video": "a.mov", "description": "x", "times": "0-1"}, "[0]: field 'times' must be a list, got a string"),
        ({"video": 7, "description": "x", "times": [[0, 0]]}, "[0]: field 'video' must be a string, got a number"),
    ],
)
def test_errors_name_file_and_field(tmp_path, item, needle):
    path = tmp_path / "test_data.json"
    path.write_text(json.dumps([item]))
    with pytest.raises(TvrError) as err:
        load_entries("didemo", [path])
    assert str(path) in str(err.value) and needle in str(err.value)


def test_list_naming_unknown_video_is_an_error(didemo, tmp_path):
    path, _ = didemo
    listed = tmp_path / "list.txt"
    listed.write_text("a.mov\nzzz.mp4\n")
    with pytest.raises(TvrError, match=r"1 listed videos have no description.*zzz.mp4"):
        load_entries("didemo", [path], split_list=listed)


def test_real_didemo_test_1004_paragraphs_in_time_order(realdata):
    ann = realdata / "didemo" / "test_data.json"
    listed = realdata / "didemo" / "ce_test_list.txt"
    entries = load_entries("didemo", [ann], split_list=listed).entries
    names = listed.read_text().split()
    assert len(entries) == 1004 and [e.video for e in entries] == names
    # reference: group the raw annotations and sort each video's descriptions by hand
    by_video = {}
    for pos, d in enumerate(json.loads(ann.read_text())):
        starts, ends = [t[0] for t in d["times"]], [t[1] for t in d["times"]]
        by_video.setdefault(d["video"], []).append(
            (statistics.median(starts), statistics.median(ends), pos, d["description"].strip())
        )
    reordered = 0
    for e in entries:
        expected = [text for *_, text in sorted(by_video[e.video])]
        assert e.extra["sentences"] == expected
        assert e.caption == " ".join(expected)
        assert e.split == "test"
        reordered += expected != [text for *_, text in by_video[e.video]]
    assert reordered > 100  # file order is not time order, so the sort is exercised
