"""LSMDC tab-separated annotations."""

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries
from tvr.eval.datasets.lsmdc import clip_video, parse_time

ROWS = [
    "1004_Juno_00.00.32.849-00.00.35.458\t00.00.32.849\t00.00.35.458\t00.00.32.000\t00.00.36.100\tSOMEONE sits.",
    "0001_American_Beauty_01.02.03.5-01.02.09.25\t01.02.03.5\t01.02.09.25\t01.02.03.5\t01.02.09.25\tShe looks up.",
]


def test_public_test_file(tmp_path):
    path = tmp_path / "LSMDC16_challenge_1000_publictect.csv"
    path.write_text("\n".join(ROWS) + "\n")
    conv = load_entries("lsmdc", [path])
    a, b = conv.entries
    assert (a.video, a.caption, a.split, a.id) == (
        "1004_Juno/1004_Juno_00.00.32.849-00.00.35.458.avi", "SOMEONE sits.", "test",
        "1004_Juno_00.00.32.849-00.00.35.458")
    assert a.start is None and a.end is None  # clip files are pre-cut
    assert a.extra == pytest.approx({"movie_start": 32.0, "movie_end": 36.1, "aligned_start": 32.849,
                                     "aligned_end": 35.458})
    assert b.video.startswith("0001_American_Beauty/")
    assert b.extra["aligned_start"] == pytest.approx(3600 + 2 * 60 + 3.5)
    assert any("1000" in n for n in conv.notes)


def test_split_names_and_clip_list(tmp_path):
    train = tmp_path / "LSMDC16_annos_training.csv"
    val = tmp_path / "LSMDC16_annos_val.csv"
    train.write_text(ROWS[0] + "\n")
    val.write_text(ROWS[1] + "\n")
    assert [e.split for e in load_entries("lsmdc", [train, val]).entries] == ["train", "val"]
    keep = tmp_path / "keep.txt"
    keep.write_text("0001_American_Beauty_01.02.03.5-01.02.09.25\n")
    assert [e.split for e in load_entries("lsmdc", [train, val], split_list=keep).entries] == ["val"]


def test_helpers():
    assert clip_video("3001_21_JUMP_STREET_00.00.00.1-00.00.02.2") == "3001_21_JUMP_STREET/3001_21_JUMP_STREET_00.00.00.1-00.00.02.2.avi"
    assert parse_time("00.01.02.050", "f:1", "x") == pytest.approx(62.05)


@pytest.mark.parametrize(
    "line, needle",
    [
        ("clip_00.00.01.0-00.00.02.0\t00.00.01.0\t00.00.02.0\t00.00.01.0\t00.00.02.0", "missing column 'sentence'"),
        ("clip_a\t1.5\t00.00.02.0\t00.00.01.0\t00.00.02.0\tx", "column 'start_aligned' must be a time"),
        ("clip_a\t00.00.01.0\t00.00.02.0\t00.00.01.0\t00.00.02.0\t ", "column 'sentence' is empty"),
    ],
)
def test_errors_name_line_and_column(tmp_path, line, needle):
    path = tmp_path / "LSMDC16_annos_val.csv"
    path.write_text(ROWS[0] + "\n" + line + "\n")
    with pytest.raises(TvrError) as err:
        load_entries("lsmdc", [path])
    assert f"{path}:2:" in str(err.value) and needle in str(err.value)
