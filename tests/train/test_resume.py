"""Process-level resume: SIGKILL `tvr train` mid-run, `--resume`, and get the uninterrupted weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

EPOCHS = 5


def tvr(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvr.cli.main", *args], capture_output=True, text=True,
                          timeout=240, env=_env(), **kw)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    r = tvr("synth", str(out / "w"), "--videos", "14", "--size", "32", "--seconds", "1", "--fps", "4", "--seed", "3")
    assert r.returncode == 0, r.stderr
    (out / "tiny.json").write_text(json.dumps({"preset": "tiny", "train": {"batch_size": 4}}))
    return out


def _epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "trainer_state.json").read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_then_resume_reproduces_uninterrupted_weights(tiny_world):
    manifest, cfg = tiny_world / "w" / "all.jsonl", tiny_world / "tiny.json"
    args = ["train", str(manifest), "--method", "clip4clip-seqtransf", "--config", str(cfg),
            "--epochs", str(EPOCHS), "--quiet"]
    full = tiny_world / "full"
    r = tvr(*args, "--out", str(full))
    assert r.returncode == 0, r.stderr

    cut = tiny_world / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "tvr.cli.main", *args, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.monotonic() + 240
    while _epoch(cut) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epoch(cut)
    assert 1 <= killed_at < EPOCHS, f"kill landed at epoch {killed_at}; the run was too fast to interrupt"

    r = tvr("train", str(manifest), "--method", "clip4clip-seqtransf", "--out", str(cut), "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(1, EPOCHS + 1))
