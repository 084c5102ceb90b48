"""`tvr dataset convert` / `list` through the CLI: video resolution, reports, errors (exit 2)."""

import csv
import json

from tvr.io.manifest import read_manifest


def write_1ka(path, ids):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerows([f"ret{i}", f"msr{v[5:]}", v, f"sentence {v}"] for i, v in enumerate(ids))
    return path


def test_convert_resolves_reports_and_skips_missing(run_cli, tmp_path):
    ann = write_1ka(tmp_path / "MSRVTT_JSFUSION_test.csv", [f"video{i}" for i in range(10)])
    videos = tmp_path / "data" / "videos"
    videos.mkdir(parents=True)
    for i in (0, 2, 4):
        (videos / f"video{i}.mp4").write_bytes(b"")
    (videos / "video6.webm").write_bytes(b"")
    out = tmp_path / "data" / "test.jsonl"
    r = run_cli("dataset", "convert", "msrvtt-1ka", "--annotations", ann, "--videos", videos, "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["entries"] == 4 and report["missing_videos"] == 6 and report["skipped_entries"] == 6
    assert report["missing_examples"] == ["video1.mp4", "video3.mp4", "video5.mp4", "video7.mp4", "video8.mp4"]
    assert "6 videos not found" in r.stderr and "video1.mp4" in r.stderr
    m = read_manifest(out)
    assert [e.video for e in m.entries] == ["videos/video0.mp4", "videos/video2.mp4", "videos/video4.mp4",
                                           "videos/video6.webm"]
    assert all(m.path_of(e).is_file() for e in m.entries)

    before = out.read_bytes()
    r = run_cli("dataset", "convert", "msrvtt-1ka", "-a", ann, "--videos", videos, "--out", out, "--keep-missing")
    assert r.exit_code == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == before
    r = run_cli("dataset", "convert", "msrvtt-1ka", "-a", ann, "--videos", videos, "--out", out, "--keep-missing",
                "--force")
    assert r.exit_code == 0 and "kept" in r.stderr
    m = read_manifest(out)
    assert len(m) == 10 and m.entries[1].video == "videos/video1.mp4"


def test_convert_without_videos_keeps_conventional_names_csv_out(run_cli, tmp_path):
    ann = write_1ka(tmp_path / "MSRVTT_JSFUSION_test.csv", ["video7020", "video9"])
    out = tmp_path / "m.csv"
    r = run_cli("dataset", "convert", "msrvtt-1ka", "-a", ann, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "2 lines, 2 videos" in r.stderr
    assert [e.video for e in read_manifest(out).entries] == ["video7020.mp4", "video9.mp4"]


def test_split_filter(run_cli, tmp_path):
    ann = write_1ka(tmp_path / "MSRVTT_JSFUSION_test.csv", ["video1"])
    out = tmp_path / "m.jsonl"
    assert run_cli("dataset", "convert", "msrvtt-1ka", "-a", ann, "-o", out, "--split", "test").exit_code == 0
    r = run_cli("dataset", "convert", "msrvtt-1ka", "-a", ann, "-o", out, "--split", "train", "--force")
    assert r.exit_code == 2 and "no 'train' split" in r.stderr and "test" in r.stderr


def one_line_error(r, *needles):
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_errors_are_one_line_exit_2(run_cli, tmp_path):
    out = tmp_path / "m.jsonl"
    one_line_error(run_cli("dataset", "convert", "kinetics", "-a", tmp_path / "x", "-o", out),
                   "unknown dataset 'kinetics'", "msrvtt-1ka")
    one_line_error(run_cli("dataset", "convert", "didemo", "-a", tmp_path / "nope.json", "-o", out),
                   "nope.json", "not found")
    bad = tmp_path / "test_data.json"
    bad.write_text('[{"video": "a.mov", "description": "x", "times": [[0, 0]]},\n {"video": "b.mov"')
    one_line_error(run_cli("dataset", "convert", "didemo", "-a", bad, "-o", out), f"{bad}:2: invalid JSON")
    bad.write_text(json.dumps([{"video": "a.mov", "times": [[0, 0]]}]))
    one_line_error(run_cli("dataset", "convert", "didemo", "-a", bad, "-o", out), str(bad), "'description'")
    csv_bad = tmp_path / "MSRVTT_JSFUSION_test.csv"
    csv_bad.write_text("key,video,sentence\n1,video1,x\n")
    one_line_error(run_cli("dataset", "convert", "msrvtt-1ka", "-a", csv_bad, "-o", out),
                   f"{csv_bad}:1", "'video_id'")
    one_line_error(run_cli("dataset", "convert", "msrvtt-full", "-a", bad, "-o", out, "--split-list", bad),
                   "takes no --split-list")
    one_line_error(run_cli("dataset", "convert", "didemo", "-a", bad, "-o", out, "--split", "dev"), "--split")
    one_line_error(run_cli("dataset", "convert", "didemo", "-a", bad, "-o", out, "--videos", tmp_path / "v"),
                   "video folder not found")
    assert not out.exists()


def test_list(run_cli):
    r = run_cli("dataset", "list", "--json")
    assert r.exit_code == 0
    names = [d["name"] for d in json.loads(r.stdout)]
    assert names == ["activitynet", "didemo", "lsmdc", "msrvtt-1ka", "msrvtt-full", "msvd", "vatex", "youcook2"]
    r = run_cli("dataset", "list")
    assert r.exit_code == 0 and "msrvtt-1ka" in r.stderr and r.stdout == ""
