"""VATEX English captions and the 1,500-video test list taken from the validation file."""

import json

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries


def videos(*ids):
    return [{"videoID": v, "enCap": [f"{v} caption {k}" for k in range(2)], "chCap": ["中文"]} for v in ids]


@pytest.fixture
def vatex(tmp_path):
    train = tmp_path / "vatex_training_v1.0.json"
    val = tmp_path / "vatex_validation_v1.0.json"
    train.write_text(json.dumps(videos("Ptf_2VRj-V0_000122_000132")))
    val.write_text(json.dumps(videos("a_000001_000011", "b_000002_000012", "c_000003_000013")))
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("c_000003_000013\na_000001_000011\n")
    return train, val, test_list


def test_splits_with_test_list(vatex):
    train, val, test_list = vatex
    entries = load_entries("vatex", [train, val], split_list=test_list).entries
    got = [(e.video, e.split) for e in entries[::2]]
    assert got == [
        ("Ptf_2VRj-V0_000122_000132.mp4", "train"), ("b_000002_000012.mp4", "val"),
        ("c_000003_000013.mp4", "test"), ("a_000001_000011.mp4", "test"),
    ]
    assert [e.caption for e in entries[:2]] == ["Ptf_2VRj-V0_000122_000132 caption 0", "Ptf_2VRj-V0_000122_000132 caption 1"]
    assert entries[1].id == "Ptf_2VRj-V0_000122_000132#1"


def test_without_list_validation_is_val(vatex):
    train, val, _ = vatex
    conv = load_entries("vatex", [train, val])
    assert [e.split for e in conv.entries].count("val") == 6
    assert any("1,500" in n for n in conv.notes)


def test_list_must_come_from_validation(vatex, tmp_path):
    train, val, _ = vatex
    bad = tmp_path / "bad.txt"
    bad.write_text("Ptf_2VRj-V0_000122_000132\n")
    with pytest.raises(TvrError, match="comes from the train annotations"):
        load_entries("vatex", [train, val], split_list=bad)


def test_errors_name_file_index_field(tmp_path):
    path = tmp_path / "vatex_validation_v1.0.json"
    path.write_text(json.dumps([{"videoID": "x", "enCap": ["ok"]}, {"videoID": "y", "enCap": [1]}]))
    with pytest.raises(TvrError, match=r"vatex_validation_v1.0.json: \[1\]: field 'enCap'\[0\] must be a string"):
        load_entries("vatex", [path])
