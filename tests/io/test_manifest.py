import json

import pytest

from tvr.errors import TvrError
from tvr.io.manifest import ManifestEntry, read_manifest, write_manifest


def test_roundtrip_jsonl_keeps_extra_fields(tmp_path):
    entries = [
        ManifestEntry("videos/a.mp4", "a red circle", "train", extra={"tags": ["order"]}),
        ManifestEntry("videos/a.mp4", "a crimson disc", "train"),
        ManifestEntry("/abs/b.mp4", "a clip", "test", id="7", start=1.5, end=4.0),
    ]
    path = tmp_path / "m.jsonl"
    write_manifest(path, entries)
    m = read_manifest(path)
    assert list(m.entries) == entries
    assert m.video_keys() == ["videos/a.mp4", "/abs/b.mp4#1.5-4"]
    assert m.path_of(m.entries[0]) == tmp_path.resolve() / "videos/a.mp4"
    assert len(m.split("train")) == 2


def test_roundtrip_csv(tmp_path):
    entries = [ManifestEntry("a.mp4", "x, with comma", "val", start=0.0, end=2.0)]
    path = tmp_path / "m.csv"
    write_manifest(path, entries)
    assert list(read_manifest(path).entries) == entries


@pytest.mark.parametrize(
    "line, field",
    [
        ({"caption": "x"}, "video"),
        ({"video": "a.mp4"}, "caption"),
        ({"video": "a.mp4", "caption": "  "}, "caption"),
        ({"video": "a.mp4", "caption": "x", "split": "dev"}, "split"),
        ({"video": "a.mp4", "caption": "x", "start": "1"}, "start"),
        ({"video": "a.mp4", "caption": "x", "start": 3, "end": 2}, "end"),
    ],
)
def test_bad_fields_name_file_line_field(tmp_path, line, field):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"video": "ok.mp4", "caption": "fine"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(TvrError) as err:
        read_manifest(path)
    msg = str(err.value)
    assert f"{path}:2" in msg and field in msg


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"video": "a.mp4", "caption": "x"}\n{not json\n')
    with pytest.raises(TvrError, match=r"m.jsonl:2: invalid JSON"):
        read_manifest(path)
    with pytest.raises(TvrError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
