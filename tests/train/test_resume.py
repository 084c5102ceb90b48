"""Process-level resume: SIGKILL `tvr train` mid-run, `--resume`, and get the uninterrupted weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from train_testlib import EPOCHS, copy_frames, subprocess_env, tiny_run, train_args, tvr_subprocess


def _epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "trainer_state.json").read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_then_resume_reproduces_uninterrupted_weights(tmp_path_factory, tmp_path):
    full = tiny_run(tmp_path_factory)  # uninterrupted reference
    world = full.parent
    cut = tmp_path / "cut"
    copy_frames(full, cut)  # same decoded frames, no second decode
    proc = subprocess.Popen([sys.executable, "-m", "tvr.cli.main", *train_args(world), "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env())
    deadline = time.monotonic() + 240
    while _epoch(cut) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epoch(cut)
    assert 1 <= killed_at < EPOCHS, f"kill landed at epoch {killed_at}; the run was too fast to interrupt"

    r = tvr_subprocess("train", str(world / "w" / "all.jsonl"), "--method", "clip4clip-seqtransf", "--out", str(cut),
                       "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(1, EPOCHS + 1))
