"""Bad input across every command: one process of the real CLI per case (`cli_process`).

Each case asserts the documented exit code (2 for a user mistake), exactly one line on stderr that
names the file, field or flag at fault, no traceback anywhere, and that every file which existed
before the call (the case's own files, the shared tiny world and run) is byte-identical after it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # the shared tiny world/run
from train_testlib import METHOD, cli_process


@dataclass(frozen=True)
class Ctx:
    world: Path  # the shared tiny world: w/{all,train,val,test}.jsonl, w/videos/, tiny.json
    run: Path  # the shared tiny seqTransf run (3 epochs)
    tmp: Path  # this case's own folder

    def private_run(self) -> Path:
        """A copy of the shared run, for commands that record things in the run's frame store."""
        dest = self.tmp / "run"
        shutil.copytree(self.run, dest)
        return dest

    def write(self, name: str, data: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path

    def config(self, doc: object) -> Path:
        return self.write("config.json", json.dumps(doc))

    def train(self, *extra: str) -> list[str]:
        return ["train", str(self.world / "w" / "all.jsonl"), "--method", METHOD, "--quiet", *extra]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]  # writes what the case needs; returns the CLI arguments
    needles: tuple[str, ...]  # each must appear in the one stderr line
    code: int = 2


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_state(c: Ctx) -> list[str]:
    run = c.private_run()
    state = json.loads((run / "trainer_state.json").read_text())
    _truncate(run / state["model_file"])
    return c.train("--out", str(run), "--resume", "--epochs", "4")


def _truncated_weights(c: Ctx) -> list[str]:
    run = c.private_run()
    _truncate(run / "model.safetensors")
    return ["eval", str(c.world / "w" / "all.jsonl"), "--checkpoint", str(run), "--json"]


def _zero_byte_videos(c: Ctx) -> list[str]:
    rows = [json.loads(x) for x in (c.world / "w" / "test.jsonl").read_text().splitlines() if x.strip()]
    for r in rows:
        c.write(r["video"], b"")
    c.write("m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ["eval", str(c.tmp / "m.jsonl"), "--checkpoint", str(c.private_run()), "--json"]


def _index_args(c: Ctx, out: Path) -> list[str]:
    return ["index", str(c.world / "w" / "test.jsonl"), "--checkpoint", str(c.private_run()), "--out", str(out),
            "--quiet"]


def _locked_index(c: Ctx) -> list[str]:
    out = c.tmp / "idx"
    out.mkdir()
    lock = open(out / ".lock", "a+")  # noqa: SIM115 - held by this test process while the CLI runs
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(lock)
    return _index_args(c, out)


_HELD: list = []  # locks and sockets a case holds until its CLI call has returned


def _busy_port(c: Ctx) -> list[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _HELD.append(sock)
    return ["serve", str(c.tmp / "idx"), "--port", str(sock.getsockname()[1])]


def _scores(c: Ctx, n: int = 3) -> Path:
    path = c.tmp / "scores.npy"
    np.save(path, np.eye(n, dtype=np.float32))
    return path


CASES = [
    # manifests
    Case("manifest-missing", lambda c: ["eval", str(c.tmp / "nope.jsonl"), "-c", str(c.run)], ("nope.jsonl",)),
    Case("manifest-not-json", lambda c: ["eval", str(c.write("m.jsonl", "{oops\n")), "-c", str(c.run)],
         ("m.jsonl:1", "JSON")),
    Case("manifest-no-caption", lambda c: ["eval", str(c.write("m.jsonl", '{"video": "a.mp4"}\n')), "-c", str(c.run)],
         ("m.jsonl:1", "caption")),
    Case("manifest-empty", lambda c: ["eval", str(c.write("m.jsonl", "")), "-c", str(c.run)], ("m.jsonl", "no entries")),
    Case("manifest-video-missing",
         lambda c: ["train", str(c.write("m.jsonl", '{"video": "gone.mp4", "caption": "a red circle"}\n')),
                    "-m", METHOD, "--out", str(c.tmp / "r")], ("m.jsonl", "gone.mp4")),
    Case("manifest-all-zero-byte", _zero_byte_videos, ("m.jsonl", "none of its", "empty file")),
    # checkpoints
    Case("checkpoint-not-a-run", lambda c: ["eval", str(c.world / "w" / "all.jsonl"), "-c", str(c.tmp)],
         ("case", "config.json")),
    Case("checkpoint-config-garbage",
         lambda c: ["eval", str(c.world / "w" / "all.jsonl"), "-c", str(_garbage_config(c))], ("config.json",)),
    Case("checkpoint-weights-truncated", _truncated_weights, ("model.safetensors",)),
    Case("resume-state-truncated", _truncated_state, ("epoch-0003.model.safetensors", "damaged", "--resume-previous")),
    Case("resume-state-not-json",
         lambda c: c.train("--out", str(_state_doc(c, "{")), "--resume"), ("trainer_state.json", "JSON")),
    Case("resume-nothing", lambda c: c.train("--out", str(c.tmp / "fresh"), "--resume"), ("nothing to resume",)),
    Case("resume-other-method",
         lambda c: ["train", str(c.world / "w" / "all.jsonl"), "-m", "clip4clip-meanp", "--out", str(c.private_run()),
                    "--resume", "--quiet"], ("clip4clip-meanp", "cannot resume")),
    Case("train-into-existing-run", lambda c: c.train("--out", str(c.private_run())), ("already holds a training run",)),
    # configs: checked before any decoding (the run folder is not even created)
    Case("config-lr-not-number", lambda c: c.train("--config", str(c.config({"train": {"lr": "fast"}})),
                                                   "--out", str(c.tmp / "r")), ("config.json", "train.lr", "'fast'")),
    Case("config-batch-size-zero", lambda c: c.train("--config", str(c.config({"train": {"batch_size": 0}})),
                                                     "--out", str(c.tmp / "r")), ("config.json", "batch_size", ">= 2")),
    Case("config-lr-negative", lambda c: c.train("--config", str(c.config({"train": {"lr": -1}})),
                                                 "--out", str(c.tmp / "r")), ("config.json", "lr must be > 0")),
    Case("config-unknown-field", lambda c: c.train("--config", str(c.config({"train": {"lr_max": 1}})),
                                                   "--out", str(c.tmp / "r")), ("config.json", "lr_max")),
    Case("config-not-json", lambda c: c.train("--config", str(c.write("config.json", "{lr: 1}")),
                                              "--out", str(c.tmp / "r")), ("config.json", "not valid JSON")),
    Case("config-model-frames-zero", lambda c: c.train("--config", str(c.config({"model": {"num_frames": 0}})),
                                                       "--out", str(c.tmp / "r")), ("config.json", "num_frames")),
    Case("config-heads-indivisible",
         lambda c: c.train("--config", str(c.config({"model": {"backbone": {"vision_heads": 5}}})),
                           "--out", str(c.tmp / "r")), ("config.json", "vision_heads")),
    Case("flag-epochs-zero", lambda c: c.train("--epochs", "0", "--out", str(c.tmp / "r")), ("--epochs",)),
    Case("flag-seed-negative", lambda c: c.train("--seed", "-1", "--out", str(c.tmp / "r")), ("--seed",)),
    Case("flag-unknown-method", lambda c: ["train", str(c.world / "w" / "all.jsonl"), "-m", "clip5clip",
                                           "--out", str(c.tmp / "r")], ("clip5clip",)),
    # indexes
    Case("index-missing", lambda c: ["search", str(c.tmp / "noidx"), "a red circle"], ("noidx",)),
    Case("index-json-garbage", lambda c: ["search", str(c.write("idx/index.json", "{").parent), "a red circle"],
         ("index.json", "JSON")),
    Case("index-out-is-file", lambda c: _index_args(c, c.write("idx", "x")), ("idx", "not a directory")),
    Case("index-out-foreign", lambda c: _index_args(c, c.write("idx/notes.txt", "mine").parent),
         ("idx", "not a tvr index")),
    Case("index-locked", _locked_index, ("idx", "another process is writing this index")),
    # score files
    Case("scores-text-as-npy",
         lambda c: ["eval-scores", str(c.write("s.npy", "1 2 3\n")), "--gt", str(c.write("gt.json", "[0]"))],
         ("s.npy", "not a .npy array")),
    Case("scores-missing", lambda c: ["eval-scores", str(c.tmp / "none.npy"), "--gt", str(c.write("gt.json", "[0]"))],
         ("none.npy",)),
    Case("scores-gt-length", lambda c: ["eval-scores", str(_scores(c)), "--gt", str(c.write("gt.json", "[0, 1]"))],
         ("gt.json", "2 entries", "3 query rows")),
    Case("scores-gt-not-json", lambda c: ["eval-scores", str(_scores(c)), "--gt", str(c.write("gt.json", "[0,"))],
         ("gt.json", "not valid JSON")),
    # outputs the user named are never overwritten without --force
    Case("convert-out-exists",
         lambda c: ["dataset", "convert", "msrvtt-1ka", "-a", str(c.write("ann.csv", "key,vid_key,video_id,sentence\n")),
                    "--out", str(c.write("m.jsonl", "mine\n"))], ("m.jsonl", "already exists", "--force")),
    Case("eval-ranks-out-exists",
         lambda c: ["eval", str(c.world / "w" / "all.jsonl"), "-c", str(c.run), "--ranks-out",
                    str(c.write("ranks.jsonl", "mine\n"))], ("ranks.jsonl", "already exists", "--force")),
    Case("example-exists", lambda c: ["eval-scores", "--example", str(c.write("ex/gt.json", "mine").parent)],
         ("gt.json", "already exists", "--force")),
    Case("synth-not-empty", lambda c: ["synth", str(c.write("out/keep.txt", "mine").parent), "--videos", "4"],
         ("out", "not empty")),
    Case("synth-size-huge", lambda c: ["synth", str(c.tmp / "out"), "--videos", "4", "--size", "100000"], ("--size",)),
    Case("dataset-unknown", lambda c: ["dataset", "convert", "msrvtt-2k", "-a", str(c.write("a.csv", "x")),
                                       "--out", str(c.tmp / "m.jsonl")], ("msrvtt-2k",)),
    Case("serve-busy-port", _busy_port, ("cannot listen on", "127.0.0.1")),
]


def _garbage_config(c: Ctx) -> Path:
    run = c.private_run()
    (run / "config.json").write_text("garbage")
    return run


def _state_doc(c: Ctx, text: str) -> Path:
    run = c.private_run()
    (run / "trainer_state.json").write_text(text)
    return run


def _snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots`, except the decode cache inside a case's private run copy
    (RUN/frames/: the command's own working state, which records what failed to decode)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[:2] != ("run", "frames"):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world, trained, tmp_path):
    run = trained
    ctx = Ctx(world, run, tmp_path / "case")
    ctx.tmp.mkdir()
    try:
        args = case.setup(ctx)
        before = _snapshot(ctx.tmp, world, run)
        res = cli_process(args, timeout=240)
    finally:
        while _HELD:
            _HELD.pop().close()
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert res.returncode == case.code, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    after = _snapshot(ctx.tmp, world, run)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, changed
