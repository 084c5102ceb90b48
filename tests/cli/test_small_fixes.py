"""Process-level checks of small CLI fixes: exit codes and one-line errors of extract, synth, serve and
eval-scores; plain progress lines when stderr is not a terminal; flags shown without a type in --help."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint, make_collection  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}


def tvr(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """`tvr ARGS` as a real process; stdout and stderr are pipes, not terminals."""
    return subprocess.run([sys.executable, "-m", "tvr.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def one_error_line(r: subprocess.CompletedProcess, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture
def junk_videos(tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_text("not a video\n")
    (folder / "b.mp4").write_bytes(b"")
    return folder


# 1. extract: exit 1 when no video could be extracted


def test_extract_all_failed_exits_1_with_one_line(junk_videos, tmp_path):
    store = tmp_path / "store"
    line = one_error_line(tvr("extract", junk_videos, "-e", "pixels", "-o", store, "--workers", "1", "-q"), 1)
    assert line.startswith("error: nothing extracted: 2 of 2 videos failed (first: "), line
    assert str(junk_videos / "a.mp4") in line and "cannot decode" in line

    again = tvr("extract", junk_videos, "-e", "pixels", "-o", store, "-q", "--json")  # failures up to date
    assert one_error_line(again, 1) == line
    doc = json.loads(again.stdout)  # --json still prints the report
    assert (doc["ok"], len(doc["failed"])) == (0, 2)


def test_extract_help_documents_exit_1():
    r = tvr("extract", "--help")
    assert r.returncode == 0 and "1 when no video could be extracted" in " ".join(r.stdout.split())


# 2. synth: bounded sizes, checked before anything is written


@pytest.mark.parametrize("args, message", [
    (["--size", "100000"], "error: --size must be an even number of pixels in 16..1024, got 100000"),
    (["--videos", "1000000"], "error: --videos must be in 1..100000, got 1000000"),
    (["--seconds", "1e9"], "error: --seconds must be in (0, 600], got 1e+09"),
    (["--fps", "1000"], "error: --fps must be in (0, 120], got 1000"),
    (["--seconds", "600", "--fps", "100"],
     "error: --seconds × --fps must give 2..3600 frames per video, got 600 s × 100 fps = 60000"),
    (["--size", "1024", "--seconds", "10"],
     "error: --size 1024 with 80 frames per video (--seconds × --fps) needs about 3.1 GiB per worker to render"),
])
def test_synth_limits_are_one_line_before_any_work(tmp_path, args, message):
    out = tmp_path / "world"
    r = tvr("synth", out, *(["--videos", "4"] if "--videos" not in args else []), *args)
    assert one_error_line(r, 2).startswith(message)
    assert not out.exists()


# 3. serve: the port is checked before anything else is done or printed


def test_serve_busy_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the index does not exist either: the port is checked first, before the index is loaded
        r = tvr("serve", tmp_path / "no-index", "--port", port)
    line = one_error_line(r, 2)
    assert line == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"
    assert "serving" not in r.stdout + r.stderr


def test_serve_answers_on_the_socket_it_bound(tmp_path):
    manifest = make_collection(tmp_path / "data", n_videos=4)
    run = make_checkpoint(tmp_path / "run")
    assert tvr("index", manifest, "--checkpoint", run, "--out", tmp_path / "index", "--querybank", manifest,
               "--workers", "1", "-q").returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tvr.cli.main", "serve", str(tmp_path / "index"), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = proc.stderr.readline()
        assert first.startswith("serving ") and f"127.0.0.1:{port}/" in first, first
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=5) as resp:
                    info = json.load(resp)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert info["n_videos"] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


# 4. eval-scores: a file that is not a .npy array is named, never offered to pickle


def test_eval_scores_text_file_is_not_a_npy_array(tmp_path):
    scores = tmp_path / "scores.npy"
    scores.write_text("0.1 0.2\n0.3 0.4\n")
    gt = tmp_path / "gt.json"
    gt.write_text("[0, 1]")
    r = tvr("eval-scores", scores, "--gt", gt)
    line = one_error_line(r, 2)
    assert line.startswith(f"error: {scores}: not a .npy array ("), line
    assert "pickle" not in r.stderr


# 5. progress: plain lines, not a cut-off bar, when stderr is not a terminal


def test_extract_progress_is_plain_lines_without_a_terminal(junk_videos, tmp_path):
    r = tvr("extract", junk_videos, "-e", "pixels", "-o", tmp_path / "store", "--workers", "1")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert re.fullmatch(r"extract: 2/2 videos \(100%\), [\d.]+ videos/s, done in [\d.]+ s, 2 failed", lines[0]), lines
    assert "…" not in r.stderr and "\x1b" not in r.stderr and "━" not in r.stderr


def test_plain_progress_lines_every_tenth(monkeypatch):
    from rich.console import Console

    from tvr import progress

    monkeypatch.setattr(progress, "PLAIN_MIN_INTERVAL_S", 0.0)
    buf = io.StringIO()
    with progress.ProgressReport("epoch 1/2", 50, "steps", console=Console(file=buf, width=40)) as report:
        for i in range(50):
            report.advance(detail=f"loss {1 / (i + 1):.4f}")
    lines = buf.getvalue().splitlines()
    assert [line.split(":")[1].split(" (")[0].strip() for line in lines] == [
        f"{n}/50 steps" for n in range(5, 50, 5)] + ["50/50 steps"]
    assert lines[0].startswith("epoch 1/2: 5/50 steps (10%), ") and ", ETA " in lines[0]
    assert lines[-1].startswith("epoch 1/2: 50/50 steps (100%), ") and lines[-1].endswith(", loss 0.0200")
    assert all(len(line) > 40 for line in lines)  # never cut to the console width


# 6. --help: flags without a type


@pytest.mark.parametrize("command", [
    "demo", "synth", "extract", "encoders", "dataset", "dataset convert", "dataset list", "train", "eval",
    "eval-scores", "index", "search", "serve",
])
def test_help_shows_flags_without_a_type(command):
    r = tvr(*command.split(), "--help")
    assert r.returncode == 0, r.stderr
    assert "<bool>" not in r.stdout, r.stdout
    assert re.search(r"--help +Show this message", r.stdout), r.stdout


def test_help_paragraphs_reflow_to_the_terminal_width():
    """A docstring's source line breaks are not kept: the paragraph reflows to the width."""
    r = tvr("pretrain", "--help")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "Without options" in x)
    assert "where this machine has none); tvr train builds" in line
