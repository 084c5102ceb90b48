"""MSVD: AllVideoDescriptions.txt + youtube_mapping.txt, split by vidN."""

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries

DESCRIPTIONS = """# Microsoft Research Video Description Corpus
# Each line: VideoID_Start_End description
-4wsuPCjDBc_5_15 a squirrel is eating a peanut in it's shell
-4wsuPCjDBc_5_15 a chipmunk is eating
zzz_1_2 someone cooks

abc_10_20 a man plays a guitar
"""
MAPPING = "-4wsuPCjDBc_5_15 vid1300\nabc_10_20 vid1\nzzz_1_2 vid1301\nunused_0_1 vid1201\n"


@pytest.fixture
def msvd(tmp_path):
    (tmp_path / "AllVideoDescriptions.txt").write_text(DESCRIPTIONS)
    (tmp_path / "youtube_mapping.txt").write_text(MAPPING)
    return tmp_path / "AllVideoDescriptions.txt", tmp_path / "youtube_mapping.txt"


def test_split_by_vid_number_all_captions(msvd):
    desc, mapping = msvd
    conv = load_entries("msvd", [desc], split_list=mapping)
    assert [(e.video, e.caption, e.split, e.id) for e in conv.entries] == [
        ("abc_10_20.avi", "a man plays a guitar", "train", "vid1#0"),
        ("-4wsuPCjDBc_5_15.avi", "a squirrel is eating a peanut in it's shell", "val", "vid1300#0"),
        ("-4wsuPCjDBc_5_15.avi", "a chipmunk is eating", "val", "vid1300#1"),
        ("zzz_1_2.avi", "someone cooks", "test", "vid1301#0"),
    ]
    assert conv.aliases["zzz_1_2.avi"] == ("vid1301",)
    assert any("1 mapped clips have no description" in n for n in conv.notes)


def test_mapping_required_and_checked(msvd, tmp_path):
    desc, mapping = msvd
    with pytest.raises(TvrError, match="youtube_mapping"):
        load_entries("msvd", [desc])
    mapping.write_text("abc_10_20 vid1\nzzz_1_2 video7\n")
    with pytest.raises(TvrError, match=r"youtube_mapping.txt:2: field 'vid' must look like vid<N>"):
        load_entries("msvd", [desc], split_list=mapping)


def test_line_without_caption_names_line(msvd):
    desc, mapping = msvd
    desc.write_text("abc_10_20 fine\nabc_10_20\n")
    with pytest.raises(TvrError, match=r"AllVideoDescriptions.txt:2: field 'caption' is missing"):
        load_entries("msvd", [desc], split_list=mapping)
