"""Finding videos by conventional name across containers and layouts; helper parsers."""

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.annotations import get_field, infer_split, read_name_list
from tvr.eval.datasets.videos import VideoFinder, manifest_path, strip_video_ext


def touch(root, *names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_strip_video_ext_keeps_other_dots():
    assert strip_video_ext("video7020.mp4") == "video7020"
    assert strip_video_ext("a_5762149bfc.") == "a_5762149bfc"
    assert strip_video_ext("x.MOV") == "x"
    assert strip_video_ext("1004_Juno_00.00.32.849-00.00.35.458") == "1004_Juno_00.00.32.849-00.00.35.458"


def test_finder_prefers_exact_then_extension_order(tmp_path):
    touch(tmp_path, "video1.webm", "video1.mkv", "video2.avi", "video2.mp4", "sub/video3.mov", ".hidden/video4.mp4")
    f = VideoFinder(tmp_path)
    assert f.find("video1.mp4") == tmp_path / "video1.webm"  # .webm before .mkv
    assert f.find("video2.avi") == tmp_path / "video2.avi"  # the conventional container wins
    assert f.find("video2.mov") == tmp_path / "video2.mp4"
    assert f.find("video3.mp4") == tmp_path / "sub/video3.mov"  # flat name found in a sub-folder
    assert f.find("video4.mp4") is None
    assert f.find("nested/video2.mp4") == tmp_path / "video2.mp4"  # nested conventional path, flat download


def test_finder_nested_layout_and_aliases(tmp_path):
    clip = "1004_Juno_00.00.32.849-00.00.35.458"
    touch(tmp_path, f"1004_Juno/{clip}.avi", "QOlSCBRmfWY.mkv", "weird.")
    f = VideoFinder(tmp_path)
    assert f.find(f"1004_Juno/{clip}.avi") == tmp_path / f"1004_Juno/{clip}.avi"
    assert f.find("v_QOlSCBRmfWY.mp4") is None
    assert f.find("v_QOlSCBRmfWY.mp4", aliases=("QOlSCBRmfWY",)) == tmp_path / "QOlSCBRmfWY.mkv"
    assert f.find("weird.") == tmp_path / "weird."


def test_manifest_path_relative_below_manifest_folder(tmp_path):
    out = tmp_path / "m.jsonl"
    assert manifest_path(tmp_path / "videos" / "a.mp4", out) == "videos/a.mp4"
    assert manifest_path(tmp_path.parent / "elsewhere" / "a.mp4", out) == str(tmp_path.parent / "elsewhere" / "a.mp4")


def test_read_name_list_formats(tmp_path):
    (tmp_path / "l.txt").write_text("# comment\nb\n\na extra\nb\n")
    (tmp_path / "l.json").write_text('["x", "y"]')
    (tmp_path / "l.csv").write_text("key,video_id\n0,video1\n1,video2\n")
    assert read_name_list(tmp_path / "l.txt") == ["b", "a"]
    assert read_name_list(tmp_path / "l.json") == ["x", "y"]
    assert read_name_list(tmp_path / "l.csv") == ["video1", "video2"]
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(TvrError, match="list of strings"):
        read_name_list(tmp_path / "bad.json")


def test_field_type_errors(tmp_path):
    with pytest.raises(TvrError, match="f:3: field 'n' must be a number, got a boolean"):
        get_field({"n": True}, "n", (int, float), "f:3")
    with pytest.raises(TvrError, match="expected a JSON object, got a list"):
        get_field([], "n", int, "f")
    with pytest.raises(TvrError, match="cannot tell the split"):
        infer_split(tmp_path / "x.json", (("train", "train"),))
