"""One epoch loop for every trainer: schedule, steps, validation, metrics, checkpoints, progress.

The retrieval trainer (`trainer.py`) and the re-ranker trainer (`rerank_trainer.py`) differ only in
which batches an epoch has, how a batch becomes a loss, and how the model is validated. They pass
those three functions in an `EpochLoop`; `run_epochs` does the rest the same way for both: warmup +
cosine learning rate, gradient clipping, one metrics line and one checkpoint per epoch (the best
validation epoch is published as the run's model), and exact continuation after `--resume`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer

from tvr.atomic import atomic_write_text
from tvr.errors import TvrError
from tvr.models.base import RetrievalModel
from tvr.progress import ProgressReport, stderr_console
from tvr.train.checkpoint import best_epoch, restore_training_checkpoint, save_training_checkpoint
from tvr.train.distributed import Dist
from tvr.train.presets import TrainConfig
from tvr.train.schedule import apply_lr, lr_factor

METRICS_FILE = "metrics.jsonl"

Batch = tuple[list[int], list[int]]  # (caption rows, clip rows)


@dataclass
class EpochLoop:
    """What one trainer trains, and the three functions in which trainers differ."""

    run_dir: Path
    model: RetrievalModel
    optimizer: Optimizer
    cfg: TrainConfig
    batches: Callable[[int], list[Batch]]  # epoch → its batches (a pure function of seed and epoch)
    loss: Callable[[int, int, Batch], torch.Tensor]  # (epoch, batch number, batch) → loss
    validate: Callable[[], dict[str, Any]] | None  # → the epoch record's "val" entry
    state: dict[str, Any]  # saved with each checkpoint besides epoch, step and train: method, preset
    extra: dict[str, Any]  # merged into the run's config.json
    source: str = ""  # the manifest, for the message when no batch can be formed
    progress: bool = True
    dist: Dist = Dist()  # several processes: see tvr.train.distributed
    label: str = ""  # before each progress line, e.g. "soup member 2/3: "


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def start_or_resume(loop: EpochLoop, resume_state: dict[str, Any] | None) -> tuple[int, int, list[dict[str, Any]]]:
    """(first epoch, step, history so far): restored from the run's checkpoint, else a seeded start."""
    if resume_state is None:
        seed_everything(loop.cfg.seed)
        return 0, 0, []
    restore_training_checkpoint(loop.run_dir, resume_state, loop.model, loop.optimizer)
    epoch = int(resume_state["epoch"])
    return epoch, int(resume_state["step"]), [h for h in read_metrics(loop.run_dir) if h.get("epoch", 0) <= epoch]


def epoch_batches(loop: EpochLoop, epoch: int) -> list[Batch]:
    """The epoch's global batches; with several processes each is cut to a multiple of their number."""
    if not loop.dist.enabled:
        return loop.batches(epoch)
    least = max(2, loop.dist.world)
    return [b for b in map(loop.dist.trim, loop.batches(epoch)) if len(b[0]) >= least]


def steps_per_epoch(loop: EpochLoop) -> int:
    steps = len(epoch_batches(loop, 0))
    if steps == 0:
        raise TvrError(f"{loop.source}: fewer than 2 decodable training videos")
    return steps


def run_epochs(loop: EpochLoop, start_epoch: int, step: int, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Train epochs start_epoch … cfg.epochs - 1; returns the whole history (one record per epoch)."""
    cfg, model, optimizer = loop.cfg, loop.model, loop.optimizer
    per_epoch = steps_per_epoch(loop)
    total = per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_fraction * total))
    history = list(history)
    main = loop.dist.is_main
    with TrainProgress(loop.progress and main, cfg.epochs, per_epoch, loop.label) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            e0, c0, losses = time.monotonic(), process_cpu_s(), []
            bar.start_epoch(epoch)
            for b, batch in enumerate(epoch_batches(loop, epoch)):
                factor = lr_factor(step, total, warmup, cfg.min_lr_ratio)
                apply_lr(optimizer, factor)
                loss = loop.loss(epoch, b, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                loop.dist.average_gradients(model)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                losses.append(float(loop.dist.average(loss.detach())))  # a rank's part → the batch's
                bar.advance(losses[-1], cfg.lr * factor)
            record: dict[str, Any] = {
                "epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
                "lr": cfg.lr * lr_factor(step - 1, total, warmup, cfg.min_lr_ratio),
                "logit_scale": float(model.scale().detach()), "epoch_s": round(time.monotonic() - e0, 3),
                "epoch_cpu_s": round(process_cpu_s() - c0, 3),
            }
            if loop.dist.enabled:
                record["processes"] = loop.dist.world
            if loop.validate is not None and main:
                record["val"] = loop.validate()
            history.append(record)
            if main:  # one writer: rank 0
                write_metrics(loop.run_dir, history)
                save_training_checkpoint(
                    loop.run_dir, model, optimizer, {"epoch": epoch + 1, "step": step, **loop.state, "train": asdict(cfg)},
                    loop.extra, publish=best_epoch(history) == epoch + 1,  # the run's model: the best validation epoch
                )
            loop.dist.barrier()
            bar.epoch_done(record)
    return history


def process_cpu_s() -> float:
    """CPU seconds of this process, all threads (epoch time on a shared machine says little alone)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of RUN_DIR/metrics.jsonl (empty before the first epoch)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically (a resumed run drops lines of epochs it redoes)."""
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in history))


class TrainProgress:
    """Per-epoch progress on stderr (loss, lr, steps/s, ETA; a bar on a terminal, plain lines elsewhere)
    plus one summary line per epoch."""

    def __init__(self, enabled: bool, epochs: int, steps: int, label: str = "") -> None:
        self.enabled, self.epochs, self.steps, self.label = enabled, epochs, steps, label
        self.console = stderr_console()
        self.report = None

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.report is not None:
            self.report.__exit__(*exc)
            self.report = None

    def start_epoch(self, epoch: int) -> None:
        self.__exit__(None, None, None)
        self.report = ProgressReport(
            f"{self.label}epoch {epoch + 1}/{self.epochs}", self.steps, "steps", enabled=self.enabled, transient=True,
            console=self.console,
        ).__enter__()

    def advance(self, loss: float, lr: float) -> None:
        if self.report is not None:
            self.report.advance(detail=f"loss {loss:.4f}, lr {lr:.2e}")

    def epoch_done(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        val = record.get("val", {}).get("t2v")
        tail = f"  val t2v R@1 {val['R@1']:.1f} R@5 {val['R@5']:.1f} MdR {val['MdR']:.1f}" if val else ""
        self.console.print(
            f"{self.label}epoch {record['epoch']}/{self.epochs}  loss {record['train_loss']:.4f}  {record['epoch_s']:.1f} s{tail}"
        )
