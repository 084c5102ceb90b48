"""MSR-VTT 1k-A and full split on fixtures in the official formats, and on the real 1k-A CSV."""

import csv
import json

import pytest

from tvr.errors import TvrError
from tvr.eval.datasets.convert import load_entries


def write_json(path, videos, captions_per_video=3):
    """An MSR-VTT *_videodatainfo.json: `videos` is [(video_id, official split)]."""
    doc = {
        "info": {"year": "2016"},
        "videos": [
            {"category": 1, "url": "u", "video_id": v, "start time": 1.0, "end time": 9.0, "split": s, "id": int(v[5:])}
            for v, s in videos
        ],
        "sentences": [
            {"caption": f"caption {k} of {v}", "video_id": v, "sen_id": int(v[5:]) * 100 + k}
            for v, _ in videos
            for k in range(captions_per_video)
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def write_1ka_csv(path, video_ids):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        for i, v in enumerate(video_ids):
            w.writerow([f"ret{i}", f"msr{v[5:]}", v, f"test sentence, {v}"])
    return path


@pytest.fixture
def msrvtt(tmp_path):
    train_val = write_json(tmp_path / "train_val_videodatainfo.json",
                           [("video0", "train"), ("video1", "train"), ("video2", "validate")])
    test = write_json(tmp_path / "test_videodatainfo.json", [("video3", "test"), ("video4", "test")])
    csv_path = write_1ka_csv(tmp_path / "MSRVTT_JSFUSION_test.csv", ["video4"])
    return tmp_path, train_val, test, csv_path


def test_1ka_test_csv_one_caption_per_video(msrvtt):
    _, _, _, csv_path = msrvtt
    entries = load_entries("msrvtt-1ka", [csv_path]).entries
    assert [(e.video, e.caption, e.split, e.id) for e in entries] == [
        ("video4.mp4", "test sentence, video4", "test", "ret0")
    ]


def test_1ka_train_is_json_videos_minus_test_with_all_captions(msrvtt):
    _, train_val, test, csv_path = msrvtt
    entries = load_entries("msrvtt-1ka", [csv_path, train_val, test]).entries
    train = [e for e in entries if e.split == "train"]
    expected = [(f"video{v}.mp4", f"caption {k} of video{v}") for v in (0, 1, 2, 3) for k in range(3)]
    assert [(e.video, e.caption) for e in train] == expected
    assert [e.id for e in train[:2]] == ["0", "1"]
    assert [e.video for e in entries if e.split == "test"] == ["video4.mp4"]


def test_1ka_train_from_9k_list(msrvtt, tmp_path):
    _, train_val, test, _ = msrvtt
    nine_k = tmp_path / "MSRVTT_train.9k.csv"
    nine_k.write_text("video_id\nvideo3\nvideo0\n")
    entries = load_entries("msrvtt-1ka", [train_val, test], split_list=nine_k).entries
    assert [e.video for e in entries] == ["video3.mp4"] * 3 + ["video0.mp4"] * 3
    assert {e.split for e in entries} == {"train"}


def test_1ka_train_needs_list_or_csv(msrvtt):
    _, train_val, _, _ = msrvtt
    with pytest.raises(TvrError, match="split-list"):
        load_entries("msrvtt-1ka", [train_val])


def test_1ka_list_naming_absent_video_is_an_error(msrvtt, tmp_path):
    _, train_val, _, _ = msrvtt
    nine_k = tmp_path / "list.txt"
    nine_k.write_text("video0\nvideo3\n")
    with pytest.raises(TvrError, match=r"1 listed videos .*video3.*test_videodatainfo"):
        load_entries("msrvtt-1ka", [train_val], split_list=nine_k)


def test_full_official_split_all_captions(msrvtt):
    _, train_val, test, _ = msrvtt
    conv = load_entries("msrvtt-full", [train_val, test])
    got = [(e.video, e.split) for e in conv.entries]
    assert got == [("video0.mp4", "train")] * 3 + [("video1.mp4", "train")] * 3 + [("video2.mp4", "val")] * 3 + [
        ("video3.mp4", "test")] * 3 + [("video4.mp4", "test")] * 3
    assert any("official split has 6513" in n for n in conv.notes)  # tiny fixture → counts differ
    only_val = load_entries("msrvtt-full", [train_val, test], split="val").entries
    assert {e.video for e in only_val} == {"video2.mp4"}


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.pop("sentences"), "field 'sentences' is missing"),
        (lambda d: d["videos"][1].pop("video_id"), "videos[1]: field 'video_id' is missing"),
        (lambda d: d["videos"][0].update(split="dev"), "videos[0]: field 'split' must be"),
        (lambda d: d["sentences"][2].update(sen_id="2"), "sentences[2]: field 'sen_id' must be a number, got a string"),
        (lambda d: d["sentences"][0].update(video_id="video99"), "sentences[0]: video_id 'video99'"),
    ],
)
def test_json_errors_name_file_and_field(tmp_path, mutate, needle):
    path = write_json(tmp_path / "train_val_videodatainfo.json", [("video0", "train"), ("video1", "train")])
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(TvrError) as err:
        load_entries("msrvtt-full", [path])
    assert str(path) in str(err.value) and needle in str(err.value)


def test_bad_json_names_line(tmp_path):
    path = tmp_path / "test_videodatainfo.json"
    path.write_text('{"videos": [\n  {"video_id": "video1",}\n]}')
    with pytest.raises(TvrError, match=r"test_videodatainfo.json:2: invalid JSON"):
        load_entries("msrvtt-full", [path])


def test_csv_errors_name_line_and_column(tmp_path):
    path = tmp_path / "MSRVTT_JSFUSION_test.csv"
    path.write_text("key,vid_key,video_id\nret0,msr1,video1\n")
    with pytest.raises(TvrError, match=r"MSRVTT_JSFUSION_test.csv:1: CSV header lacks the column 'sentence'"):
        load_entries("msrvtt-1ka", [path])
    path.write_text("key,vid_key,video_id,sentence\nret0,msr1,video1,a dog\nret1,msr2,video2,  \n")
    with pytest.raises(TvrError, match=r"MSRVTT_JSFUSION_test.csv:3: field 'sentence' is empty"):
        load_entries("msrvtt-1ka", [path])


def test_real_1ka_csv(realdata, run_cli, tmp_path):
    src = realdata / "msrvtt" / "MSRVTT_JSFUSION_test.csv"
    out = tmp_path / "1ka.jsonl"
    r = run_cli("dataset", "convert", "msrvtt-1ka", "--annotations", src, "--out", out)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(lines) == 1000
    assert len({line["video"] for line in lines}) == 1000
    assert [(line["video"], line["caption"]) for line in lines] == [
        (f"{row['video_id']}.mp4", row["sentence"].strip()) for row in rows
    ]
    assert {line["split"] for line in lines} == {"test"}
