"""Two processes on gloo (torchrun, started by the test) train exactly what one process does on the
same global batches: the same losses and, after three steps, the same parameters to 1e-5, for a
retrieval model and for the CrossTVR re-ranker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_testlib import cli_process, committed_epoch, copy_frames, subprocess_env, tiny_run, tiny_world

CONFIG = {"preset": "tiny", "train": {"batch_size": 4, "workers": 1, "hard_negatives": 0.0, "val_fraction": 0.0,
                                     "order_negatives": 1.0, "text_foils": 1.0}}  # their losses too are split across ranks exactly


def _tvr(args: list[str]) -> subprocess.CompletedProcess:
    """`tvr ARGS` in a process of its own, forked from the test library's server (imports done); with
    `--ddp 2` that process starts torchrun, whose workers are fresh interpreters."""
    return cli_process(args, timeout=600)


def _train(world: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _tvr(["train", str(world / "w" / "train_then.jsonl"), "--method", "clip4clip-seqtransf",
                 "--config", str(world / "ddp.json"), "--epochs", "1", "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    world = tiny_world(tmp_path_factory)
    (world / "ddp.json").write_text(json.dumps(CONFIG))
    lines = [json.loads(x) for x in (world / "w" / "train.jsonl").read_text().splitlines()]
    for x in lines[::2]:  # half the captions state an order: ranks hold different numbers of order negatives
        x["caption"] += ", then it stops"
    (world / "w" / "train_then.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
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
    _close_except_key_bias(load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors")))


def _close_except_key_bias(w1: dict, w2: dict) -> None:
    """Every parameter equal to 1e-5, except the key third of attention's in_proj_bias: its true
    gradient is exactly 0 (softmax ignores a shift shared by all keys); AdamW divides its round-off
    (~1e-9, different in any other summation order) by its own size, so that third moves by noise
    up to lr per step in both runs alike. Compare q and v; bound k. The same holds for any single
    weight whose gradient happens to land near AdamW's eps (1e-8): with text foils one token
    embedding's weight got 2.8e-8 in the first step, and moved 2e-5 apart. So one weight per tensor
    may be off by up to 1e-4 (a tenth of lr); a wrong gradient moves many."""
    assert w1.keys() == w2.keys()
    for name in w1:
        a, b = w2[name], w1[name]
        if name.endswith("in_proj_bias"):
            k = a.numel() // 3
            assert (a[k : 2 * k] - b[k : 2 * k]).abs().max() <= 3 * 1e-3
            a, b = torch.cat([a[:k], a[2 * k :]]), torch.cat([b[:k], b[2 * k :]])
        diff = (a - b).abs()
        assert int((diff > 1e-5).sum()) <= 1 and float(diff.max()) <= 1e-4, (name, diff.max())


@pytest.mark.parametrize("residual", [False, True], ids=["stand-alone", "residual"])
def test_reranker_on_two_gloo_processes_equals_one_process(world, tmp_path, tmp_path_factory, residual):
    """CrossTVR's training under DDP: each rank scores its share of the batch's pairs (order negatives
    included, whose count differs between ranks; a residual re-ranker adds each pair's first-stage
    logit), same result."""
    import shutil

    first = tmp_path / "first"
    shutil.copytree(tiny_run(tmp_path_factory), first)  # a first stage of our own: the re-ranker caches into it
    config = tmp_path / "rr-ddp.json"
    config.write_text(json.dumps({
        "preset": "tiny", "model": {"layers": 1, "heads": 2, "num_queries": 2, "residual": residual},
        "train": {"batch_size": 4, "workers": 1, "val_fraction": 0.0, "order_negatives": 1.0},
    }))
    runs = {}
    for name, extra in (("one", ()), ("two", ("--ddp", "2"))):
        done = _tvr(["train", str(world / "w" / "train_then.jsonl"), "--method", "crosstvr", "--first-stage", str(first),
                     "--config", str(config), "--epochs", "1", "--out", str(tmp_path / name), "--quiet", *extra])
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert runs["one"][0]["step"] == runs["two"][0]["step"] == 3 and runs["two"][0]["processes"] == 2
    assert runs["two"][0]["train_loss"] == pytest.approx(runs["one"][0]["train_loss"], abs=1e-5)
    scales = [json.loads((tmp_path / n / "config.json").read_text())["config"]["first_stage_scale"] for n in ("one", "two")]
    assert scales[0] == scales[1] and (scales[0] != 1.0) == residual
    _close_except_key_bias(load_file(str(tmp_path / "one" / "model.safetensors")),
                           load_file(str(tmp_path / "two" / "model.safetensors")))


def _rank_pid(root: int, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` among the descendants of process `root`, once it runs."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    for pid in parent:
        up = pid
        while up in parent and up != root:
            up = parent[up]
        if up != root or pid == root:
            continue
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and any(e.startswith(b"LOCAL_RANK=") for e in env):
            return pid
    return None


def test_killing_a_rank_then_resume_reaches_the_uninterrupted_weights(tmp_path_factory, tmp_path):
    """SIGKILL rank 1 (not the writer) after an epoch; torchrun stops the job; `--resume --ddp 2`
    finishes it, and the weights are the uninterrupted single-process run's."""
    import os
    import signal
    import time

    from train_testlib import EPOCHS, train_args

    full = tiny_run(tmp_path_factory)  # uninterrupted, one process
    world = full.parent
    cut = tmp_path / "cut"
    copy_frames(full, cut)
    job = subprocess.Popen([sys.executable, "-m", "tvr", *train_args(world), "--out", str(cut), "--ddp", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while job.poll() is None and time.monotonic() < deadline:
            if committed_epoch(cut) >= 1:
                break
            time.sleep(0.01)
        victim = _rank_pid(job.pid, 1)
        assert job.poll() is None and victim is not None, "the job ended before a rank could be killed"
        os.kill(victim, signal.SIGKILL)
        assert job.wait(timeout=120) != 0
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        job.stderr.close()
    killed_at = committed_epoch(cut)
    assert 1 <= killed_at < EPOCHS, f"kill landed at epoch {killed_at}; the run was too fast to interrupt"
    resume = ["train", str(world / "w" / "all.jsonl"), "--method", "clip4clip-seqtransf", "--out", str(cut), "--resume"]
    resumed = _tvr([*resume, "--ddp", "2", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(1, EPOCHS + 1))
    _close_except_key_bias(load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors")))
