"""Process-level resume: SIGKILL `tvr train` mid-run, `--resume`, and get the uninterrupted weights."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from train_testlib import EPOCHS, cli_process, cli_start, committed_epoch, copy_frames, tiny_run, train_args


def test_sigkill_then_resume_reproduces_uninterrupted_weights(tmp_path_factory, tmp_path):
    full = tiny_run(tmp_path_factory)  # uninterrupted reference
    world = full.parent
    cut = tmp_path / "cut"
    copy_frames(full, cut)  # same decoded frames, no second decode
    proc = cli_start([*train_args(world), "--out", str(cut)])
    deadline = time.monotonic() + 240
    while committed_epoch(cut) < 1 and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL
    proc.join()
    killed_at = committed_epoch(cut)
    assert 1 <= killed_at < EPOCHS, f"kill landed at epoch {killed_at}; the run was too fast to interrupt"

    r = cli_process(["train", str(world / "w" / "all.jsonl"), "--method", "clip4clip-seqtransf", "--out", str(cut),
                     "--resume", "--quiet"])
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(1, EPOCHS + 1))


def test_damaged_last_state_resumes_from_the_previous_epoch(tmp_path_factory, tmp_path):
    """A truncated newest state file: --resume refuses it in one line; --resume-previous redoes the last
    epoch from the one before and ends with exactly the uninterrupted run's weights."""
    import shutil

    full = tiny_run(tmp_path_factory)
    world = full.parent
    run = tmp_path / "run"
    shutil.copytree(full, run)
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["epoch"] == EPOCHS and state["previous"]["epoch"] == EPOCHS - 1
    damaged = run / state["model_file"]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    args = ("train", str(world / "w" / "all.jsonl"), "--method", "clip4clip-seqtransf", "--out", str(run), "--quiet")

    r = cli_process([*args, "--resume"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: {damaged}: damaged (its sha256 differs from the one recorded at the epoch's "
                                f"commit); epoch {EPOCHS - 1} is intact: continue from it with --resume-previous")

    r = cli_process([*args, "--resume-previous"])
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(full / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    redone = json.loads((run / "trainer_state.json").read_text())
    assert redone["epoch"] == EPOCHS and redone["previous"]["epoch"] == EPOCHS - 1
    assert sorted(p.name for p in (run / "state").iterdir()) == sorted(
        Path(d[k]).name for d in (redone, redone["previous"]) for k in ("model_file", "optimizer_file"))
