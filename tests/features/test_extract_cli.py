import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from feature_helpers import FPS, HERE, frame_colors, make_video, register_test_encoder

from tvr.features.store import FeatureStore, clip_key

ENC = "test-mean-color"


@pytest.fixture(autouse=True)
def _encoder():
    register_test_encoder()


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "my videos"
    for i in range(4):
        make_video(src / f"v{i}.mp4", seed=i)
    (src / "zero.mp4").write_bytes(b"")
    return src


def test_json_report_and_rerun(run_cli, folder, tmp_path):
    store = tmp_path / "store"
    r = run_cli("extract", folder, "--encoder", ENC, "--out", store, "--workers", "2", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["total"], doc["ok"], doc["skipped"]) == (5, 4, 0)
    assert [f["path"] for f in doc["failed"]] == [str((folder / "zero.mp4").resolve())]
    assert doc["failed"][0]["error"]
    fs = FeatureStore(store)
    got = fs.get(clip_key(folder / "v1.mp4"))
    # the real decoder picks its own frame times; each stored colour must be the frame shown at that time
    assert got["frame_mean"].shape == (4, 3) and got["timestamps"].shape == (4,)
    shown = frame_colors(1, 8)[np.floor(got["timestamps"] * FPS + 1e-6).astype(int)]
    np.testing.assert_allclose(got["frame_mean"], shown, atol=6)

    r = run_cli("extract", folder, "--encoder", ENC, "--out", store, "--json", "--option", "num_frames=4")
    doc = json.loads(r.stdout)
    assert (doc["total"], doc["ok"], doc["skipped"], len(doc["failed"])) == (5, 4, 5, 1)


def test_human_summary_goes_to_stderr(run_cli, folder, tmp_path):
    r = run_cli("extract", folder, "--encoder", ENC, "--out", tmp_path / "s")
    assert r.exit_code == 0 and r.stdout == ""
    assert "5 entries, 4 ok, 1 failed" in r.stderr and "zero.mp4" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nope", "--encoder", ENC], "nope: no such file or folder"),
        (["{tmp}/empty", "--encoder", ENC], "no video files found"),
        (["{src}", "--encoder", "no-such-encoder"], "unknown video encoder 'no-such-encoder'"),
        (["{src}", "--encoder", ENC, "--option", "frames"], "expected key=value"),
        (["{src}", "--encoder", ENC, "--option", "bogus=1"], "no option 'bogus'"),
        (["{src}", "--encoder", ENC, "--workers", "0"], "workers must be at least 1"),
        (["{tmp}/m.jsonl", "--encoder", ENC], "field 'caption'"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, folder, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4"}\n')
    args = [a.format(tmp=tmp_path, src=folder) for a in args]
    r = run_cli("extract", *args, "--out", tmp_path / "store")
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as fh:
            out |= {int(x) for x in fh.read().split()}
    return out


def _ok_rows(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store / 'store.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM videos WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.parametrize("kill_after_rows", [
    (4,),
    pytest.param((0, 2, 9, 15), marks=pytest.mark.slow),  # four kills, one before any shard is written
])
def test_sigkill_mid_run_then_resume_gives_each_video_once(tmp_path, kill_after_rows):
    src = tmp_path / "videos"
    paths = [make_video(src / f"d{i % 3}" / f"v{i:02d}.mp4", seed=i) for i in range(20)]
    store = tmp_path / "store"
    cmd = [sys.executable, str(HERE / "tvr_with_test_encoder.py"), "extract", str(src), "--encoder", ENC,
           "--out", str(store), "--workers", "2", "--batch-videos", "2", "--option", "delay_s=0.2"]
    for rows in kill_after_rows:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while (_ok_rows(store) < rows or not _children(proc.pid)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()[-500:]}"
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        deadline = time.monotonic() + 10  # the kernel kills orphaned workers (PR_SET_PDEATHSIG)
        while any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]
        assert _ok_rows(store) < len(paths)

    done = subprocess.run(cmd[:-2] + ["--json"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["total"], doc["ok"], doc["failed"]) == (20, 20, [])
    assert max(kill_after_rows) <= doc["skipped"] < 20
    fs = FeatureStore(store)
    assert fs.keys() == sorted(clip_key(p) for p in paths)  # every video exactly once (key is unique)
    assert fs.verify() == []
    referenced = {e.shard for e in fs.entries()}
    assert {p.name for p in (store / "shards").iterdir()} == referenced  # no orphan or temp file left
    for p in paths[::5]:
        assert fs.get(clip_key(p))["frame_mean"].shape == (4, 3)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_real_clips_with_random_tiny(run_cli, realdata, tmp_path):
    clips = realdata / "clips"
    r = run_cli("extract", clips, "--encoder", "random-tiny", "--out", tmp_path / "s", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    n_videos = len([p for p in clips.iterdir() if p.suffix in (".mp4", ".gif")])
    assert (doc["total"], doc["ok"], doc["failed"]) == (n_videos, n_videos, [])
    fs = FeatureStore(tmp_path / "s")
    assert fs.encoder.name == "random-tiny" and fs.verify() == []
    for key, feats in fs.iter_features():
        e = fs.entry(key)
        assert feats["frame_cls"].shape == (12, 32) and np.isfinite(feats["frame_cls"]).all()
        ts = feats["timestamps"]
        assert ts.shape == (12,) and np.all(np.diff(ts) > 0) and 0 <= ts[0] and ts[-1] <= e.duration_s + 1e-3
