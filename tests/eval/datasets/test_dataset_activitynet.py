"""ActivityNet Captions paragraphs from train.json / val_1.json."""

import json

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries

VAL_1 = {
    "v_QOlSCBRmfWY": {
        "duration": 82.73,
        "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
        "sentences": ["A young woman is seen standing in a room.", "  She dances around the room.", " She ends."],
    },
    "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 20.0]], "sentences": ["A man plays."]},
}


def test_val1_is_test_with_sentences_and_times(tmp_path):
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps(VAL_1))
    conv = load_entries("activitynet", [path])
    e = conv.entries[0]
    assert (e.video, e.split, e.id) == ("v_QOlSCBRmfWY.mp4", "test", "v_QOlSCBRmfWY")
    assert e.caption == "A young woman is seen standing in a room. She dances around the room. She ends."
    assert e.extra["sentence_times"] == [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]]
    assert e.extra["duration"] == 82.73
    assert conv.aliases["v_QOlSCBRmfWY.mp4"] == ("QOlSCBRmfWY",)
    assert any("4917" in n for n in conv.notes)


def test_train_and_val2_splits(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps(VAL_1))
    (tmp_path / "val_2.json").write_text(json.dumps({"v_x": VAL_1["v_ehGHCYKzyZ8"]}))
    entries = load_entries("activitynet", [tmp_path / "train.json", tmp_path / "val_2.json"]).entries
    assert [e.split for e in entries] == ["train", "train", "val"]


@pytest.mark.parametrize(
    "item, needle",
    [
        ({"timestamps": [[0, 1]], "sentences": ["a"]}, "field 'duration' is missing"),
        ({"duration": 5, "timestamps": [[0, 1]], "sentences": "a"}, "field 'sentences' must be a list"),
        ({"duration": 5, "timestamps": [[0, 1], [1, 2]], "sentences": ["a"]}, "'timestamps' has 2 entries"),
        ({"duration": 5, "timestamps": [[0, "1"]], "sentences": ["a"]}, "field 'timestamps' must be a [start, end]"),
        ({"duration": 5, "timestamps": [[0, 1]], "sentences": [3]}, "field 'sentences'[0] must be a string"),
    ],
)
def test_errors_name_video_and_field(tmp_path, item, needle):
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps({"v_bad": item}))
    with pytest.raises(TvrError) as err:
        load_entries("activitynet", [path])
    assert f"{path}: ['v_bad']" in str(err.value) and needle in str(err.value)
