"""Two processes on gloo (torchrun, started by the test) train exactly what one process does on the
same global batches: the same losses and, after three steps, the same parameters to 1e-5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_testlib import copy_frames, subprocess_env, tiny_run, tiny_world

CONFIG = {"preset": "tiny", "train": {"batch_size": 4, "workers": 1, "hard_negatives": 0.0, "val_fraction": 0.0}}


def _train(world: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tvr", "train", str(world / "w" / "train.jsonl"), "--method", "clip4clip-seqtransf",
         "--config", str(world / "ddp.json"), "--epochs", "1", "--out", str(out), "--quiet", *extra],
        capture_output=True, text=True, timeout=600, env=subprocess_env(),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    world = tiny_world(tmp_path_factory)
    (world / "ddp.json").write_text(json.dumps(CONFIG))
    return world


def test_two_gloo_processes_equal_one_process_on_the_global_batch(world, tmp_path, tmp_path_factory):
    frames_from = tiny_run(tmp_path_factory)  # its decoded frames: the same spec, so no run decodes again
    one, two = tmp_path / "one", tmp_path / "two"
    copy_frames(frames_from, one)
    copy_frames(frames_from, two)
    single = _train(world, one)
    assert single.returncode == 0, single.stderr[-2000:]
    double = _train(world, two, "--ddp", "2")
    assert double.returncode == 0, double.stderr[-2000:]

    rec1 = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    rec2 = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert rec1[0]["step"] == rec2[0]["step"] == 3  # three global batches of the train split
    assert rec2[0]["processes"] == 2 and "processes" not in rec1[0]
    assert rec2[0]["train_loss"] == pytest.approx(rec1[0]["train_loss"], abs=1e-5)
    w1, w2 = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for name in w1:
        a, b = w2[name], w1[name]
        if name.endswith("attn.in_proj_bias"):
            # The key bias's true gradient is exactly 0 (softmax ignores a shift shared by all keys); AdamW
            # divides its round-off (~1e-9, different in any other summation order) by its own size, so
            # that third moves by noise up to lr per step in both runs alike. Compare q and v; bound k.
            k = a.numel() // 3
            assert (a[k : 2 * k] - b[k : 2 * k]).abs().max() <= 3 * 1e-3
            a, b = torch.cat([a[:k], a[2 * k :]]), torch.cat([b[:k], b[2 * k :]])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)
