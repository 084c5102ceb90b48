"""One tiny synthetic world and one tiny uninterrupted training run, shared by every train/eval test.

Both are built at most once per pytest session and cached in the session's base temp folder (the
folder is the cache, so tests in other directories reuse them without a shared conftest).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tvr.cli.main import main

EPOCHS = 3  # of the shared run; the resume test kills a copy of it between epochs
METHOD = "clip4clip-seqtransf"
TINY_CONFIG = {"preset": "tiny", "train": {"batch_size": 4, "workers": 1}}


def tiny_world(factory: pytest.TempPathFactory) -> Path:
    """`w/{all,train,val,test}.jsonl` (12 videos, 32 px, 1 s) and `tiny.json` (a `--config` file)."""
    root = factory.getbasetemp() / "tvr-tiny-world"
    if not (root / "w" / "test.jsonl").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        assert main(["synth", str(root / "w"), "--videos", "12", "--size", "32", "--seconds", "1", "--fps", "4",
                     "--seed", "5"]) == 0
        (root / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    return root


def train_args(world: Path) -> list[str]:
    return ["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--config", str(world / "tiny.json"),
            "--epochs", str(EPOCHS), "--quiet"]


def tiny_run(factory: pytest.TempPathFactory) -> Path:
    """A finished, uninterrupted `EPOCHS`-epoch seqTransf run on the tiny world (trained in-process)."""
    world = tiny_world(factory)
    run = world / "run"
    if not (run / "metrics.jsonl").is_file() or len((run / "metrics.jsonl").read_text().splitlines()) < EPOCHS:
        shutil.rmtree(run, ignore_errors=True)
        assert main([*train_args(world), "--out", str(run)]) == 0
    return run


def committed_epoch(run: Path) -> int:
    """The last epoch `run`'s trainer_state.json commits (0 before the first, or while it is being replaced)."""
    try:
        return int(json.loads((run / "trainer_state.json").read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def one_line_error(result, *needles: str) -> None:
    """`result` (a `run_cli` result) failed with exit 2 and one "error:" line holding every needle."""
    assert result.exit_code == 2, result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def copy_frames(run: Path, dest: Path) -> None:
    """Seed `dest` with `run`'s decoded-frame cache so another run of the same spec skips decoding."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run / "frames", dest / "frames")


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# `tvr` in a process of its own, forked from a server that imported the CLI and torch once (the
# standard library's forkserver, started fresh, never a fork of pytest): a real process with its own
# exit code, stdout and stderr, without paying ~2 s of imports per call.
_CLI_SERVER = multiprocessing.get_context("forkserver")  # the server starts on first use
# torch._dynamo: torch's optimizers import it on first use (~2.5 s); transformers: the tokenizers (~1.5 s)
_CLI_SERVER.set_forkserver_preload(["torch", "torch._dynamo", "transformers", "tvr.cli.main", "tvr.models.registry",
                                    "tvr.train.trainer"])


def cli_process(args: list[str], timeout: float = 240, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`tvr ARGS` as its own process (stdin empty, the offline environment plus `env`, in `cwd` or this
    process's folder); like `subprocess.run`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()  # empty if the child fails before it writes (its exit code says so)
        p = cli_start(args, cwd=cwd, env=env, stdout=out, stderr=err)
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise subprocess.TimeoutExpired(["tvr", *args], timeout)
        return subprocess.CompletedProcess(["tvr", *args], p.exitcode, out.read_text(), err.read_text())


def cli_start(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
              stdout: Path | str = os.devnull, stderr: Path | str = os.devnull) -> multiprocessing.Process:
    """Start `tvr ARGS` as its own process and return it (to kill, poll with `is_alive`, or `join`);
    its stdout and stderr go to the files named."""
    return start_child(_cli_child, [str(a) for a in args], {**subprocess_env(), **(env or {})}, str(cwd or os.getcwd()),
                       str(stdout), str(stderr))


def start_child(target, *args) -> multiprocessing.Process:
    """Start `target(*args)` (a module-level function) in a process of its own, forked from the same server."""
    p = _CLI_SERVER.Process(target=target, args=args)
    p.start()
    return p


def _cli_child(args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    from tvr.cli.main import main

    sys.exit(main(args))  # the process's exit code; stdout and stderr are flushed on the way out


class DotModel(torch.nn.Module):
    """Dot product of pooled vectors, logit scale 2: the part of the model interface a pair loss reads."""

    def similarity(self, text, video):
        return text.pooled @ video.pooled.t()

    def scale(self):
        return torch.tensor(2.0)
