"""Build the `objects` expert's network: a CNN trained on rendered stills to name what each one shows.

Each step renders `batch_size` stills (`tvr.synth.stills`: one to three objects anywhere, and with
probability `beside` a small object right beside a large one, as in the world's near-duplicate
scenes) and trains the network with binary cross-entropy over the 48 (colour, shape, size) labels,
summed over the labels. Every colour-shape pair is drawn, as in the backbone's pretraining.

Like the backbone (`pretrain.py`), the default network is built once per machine on first use, into
the user cache folder under `pretrained/synthetic-objects-<hash of the recipe>/`, under a file lock,
with a checkpoint every `checkpoint_every` steps that an interrupted build resumes from, and appears
with one rename. `with_synthetic_objects` turns a model config's `objects: "synthetic-objects"` into
that folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tvr.atomic import atomic_write_json
from tvr.encoders.objects import CONFIG_FILE, SYNTHETIC_OBJECTS, ObjectNet, ObjectNetConfig, load_object_net, save_object_net
from tvr.errors import TvrError
from tvr.train.checkpoint import load_optimizer, optimizer_tensors
from tvr.train.pretrain import build_lock, cache_root, declared_floats
from tvr.train.schedule import apply_lr, lr_factor

INFO_FILE = "tvr_objects.json"  # written last into a finished folder
STATE_FILE = "state.json"
STATE_TENSORS = "state.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ObjectPretrainConfig:
    steps: int = 1200  # 600 read a small object's shape beside a large one 82 % of the time on the test frames, 1,200 every time
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 60
    min_lr_ratio: float = 0.0  # with 30 warmup steps and a cosine to 5 % it read small shapes far worse (objects_probe.json)
    weight_decay: float = 1e-4
    image_size: int = 64
    beside: float = 0.5  # fraction of stills with a small object beside a large one
    seed: int = 0
    widths: tuple[int, ...] = ObjectNetConfig.widths
    strides: tuple[int, ...] = ObjectNetConfig.strides
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        declared_floats(self)
        for name in ("steps", "batch_size", "image_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.beside <= 1.0:
            raise ValueError(f"beside must be in [0, 1], got {self.beside}")

    def key(self) -> str:
        doc = {k: v for k, v in asdict(self).items() if k != "checkpoint_every"} | {"format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]

    def net_config(self) -> ObjectNetConfig:
        from tvr.synth.stills import ATTRIBUTES

        labels = tuple(" ".join(a) for a in ATTRIBUTES)
        return ObjectNetConfig(image_size=self.image_size, widths=tuple(self.widths), strides=tuple(self.strides), labels=labels)


@dataclass(frozen=True)
class ObjectsResult:
    path: Path
    built: bool
    wall_s: float
    cpu_s: float


def default_config() -> ObjectPretrainConfig:
    """The recipe the name "synthetic-objects" stands for."""
    return ObjectPretrainConfig()


def objects_dir(cfg: ObjectPretrainConfig) -> Path:
    return key_dir(cfg.key())


def key_dir(key: str) -> Path:
    """The cache folder of the recipe whose key is `key` (a distilled backbone's info file names its teacher so)."""
    return cache_root() / "pretrained" / f"{SYNTHETIC_OBJECTS}-{key}"


def finished(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and (path / CONFIG_FILE).is_file()


def with_synthetic_objects(model_cfg: Any, cfg: ObjectPretrainConfig | None = None, *, progress: bool = True) -> Any:
    """`model_cfg` with `objects: "synthetic-objects"` replaced by the built folder (built now if this
    machine has none) when its experts use it; any other config is returned as it is."""
    if getattr(model_cfg, "objects", None) != SYNTHETIC_OBJECTS or "objects" not in getattr(model_cfg, "experts", ()):
        return model_cfg
    return replace(model_cfg, objects=str(ensure_objects(cfg or default_config(), progress=progress).path))


def ensure_objects(cfg: ObjectPretrainConfig, *, out: Path | None = None, progress: bool = True) -> ObjectsResult:
    """The finished network folder for `cfg` (default: in the cache), built under a lock if missing."""
    final = out if out is not None else objects_dir(cfg)
    if finished(final):
        return ObjectsResult(final, False, 0.0, 0.0)
    final.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(final):
        if finished(final):  # another process built it while this one waited
            return ObjectsResult(final, False, 0.0, 0.0)
        if final.exists():
            raise TvrError(f"{final} exists but is not a finished object network; remove it or pass --force")
        return _build(cfg, final, progress)


def step_batch(cfg: ObjectPretrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s stills: (pixels [B, 3, S, S] in [0, 1], label targets [B, 48])."""
    from tvr.synth.stills import StillSampler, attribute_targets

    stills = StillSampler([cfg.seed, step], cfg.image_size, cfg.beside).stills(cfg.batch_size)
    pixels = torch.from_numpy(np.stack([s.pixels for s in stills])).permute(0, 3, 1, 2).float() / 255.0
    return pixels, torch.from_numpy(attribute_targets(stills))


def label_loss(net: ObjectNet, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over the labels, averaged over the stills."""
    return F.binary_cross_entropy_with_logits(net(pixels), targets, reduction="sum") / len(pixels)


def heldout_accuracy(net: ObjectNet, cfg: ObjectPretrainConfig, n: int = 256) -> dict[str, float]:
    """On `n` stills from a seed training never draws: how often the right shape's label scores above
    the other shapes' for the same colour and size (%, chance 25), for small and large objects, and
    how often every label is right at logit 0 (%)."""
    from tvr.synth.stills import ATTRIBUTES, StillSampler, attribute_targets
    from tvr.synth.world import SHAPES

    stills = StillSampler([cfg.seed, -1 % 2**32], cfg.image_size, cfg.beside).stills(n)
    pixels = torch.from_numpy(np.stack([s.pixels for s in stills])).permute(0, 3, 1, 2).float() / 255.0
    index = {a: i for i, a in enumerate(ATTRIBUTES)}
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits = net(pixels)
    net.train(was_training)
    right: dict[str, list[bool]] = {"small": [], "large": []}
    for row, still in enumerate(stills):
        for o in still.objects:
            scores = logits[row, [index[(o.colour, s, o.size)] for s in SHAPES]]
            right[o.size].append(int(scores.argmax()) == SHAPES.index(o.shape))
    exact = ((logits > 0).float() == torch.from_numpy(attribute_targets(stills))).all(dim=1).float().mean()
    return {f"shape_{k}": round(100 * float(np.mean(v)), 1) for k, v in right.items() if v} | {"all_labels": round(100 * float(exact), 1)}


def _build(cfg: ObjectPretrainConfig, final: Path, progress: bool) -> ObjectsResult:
    from safetensors.torch import load_file, save_file

    from tvr.progress import ProgressReport

    t0, c0 = time.monotonic(), time.process_time()
    work = final.parent / f"{final.name}.partial"
    work.mkdir(exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = ObjectNet(cfg.net_config()).train()
    decay = [p for p in net.parameters() if p.ndim >= 2]
    rest = [p for p in net.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
                                   {"params": rest, "weight_decay": 0.0, "base_lr": cfg.lr}], lr=cfg.lr)
    step, spent = 0, {"wall_s": 0.0, "cpu_s": 0.0}
    state_path = work / STATE_FILE
    if state_path.is_file():
        doc = json.loads(state_path.read_text(encoding="utf-8"))
        if doc.get("config") != json.loads(json.dumps(asdict(cfg))):
            raise TvrError(f"{work}: holds a build with another config; remove the folder to start over")
        tensors = load_file(str(work / STATE_TENSORS))
        net.load_state_dict({k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")})
        load_optimizer(optimizer, tensors, doc["param_groups"])
        step, spent = int(doc["step"]), doc["spent"]
    loss_value = float("nan")

    def checkpoint() -> None:
        opt, groups = optimizer_tensors(optimizer)
        weights = {f"net.{k}": v.detach().contiguous().clone() for k, v in net.state_dict().items()}
        tmp = work / f".{STATE_TENSORS}.tmp"
        save_file({**weights, **opt}, str(tmp))
        os.replace(tmp, work / STATE_TENSORS)
        now = {"wall_s": spent["wall_s"] + time.monotonic() - t0, "cpu_s": spent["cpu_s"] + time.process_time() - c0}
        atomic_write_json(state_path, {"step": step, "config": asdict(cfg), "param_groups": groups, "spent": now})

    with ProgressReport("pretraining the object expert", cfg.steps, "steps", enabled=progress) as bar:
        bar.advance(step)
        while step < cfg.steps:
            apply_lr(optimizer, lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
            pixels, targets = step_batch(cfg, step)
            loss = label_loss(net, pixels, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            bar.advance(detail=f"loss {loss_value:.3f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoint()
    checkpoint()
    total = json.loads(state_path.read_text(encoding="utf-8"))["spent"]
    staging = final.parent / f".{final.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_object_net(net.eval(), staging)
    atomic_write_json(staging / INFO_FILE, {
        "format_version": FORMAT_VERSION, "name": SYNTHETIC_OBJECTS, "config": asdict(cfg), "steps": step,
        "images_seen": step * cfg.batch_size, "final_loss": loss_value,
        "build_wall_s": round(total["wall_s"], 1), "build_cpu_s": round(total["cpu_s"], 1),
        "torch_threads": torch.get_num_threads(), "heldout_stills": heldout_accuracy(net, cfg),
    })
    load_object_net(staging)  # the folder reads back before it is published
    os.replace(staging, final)
    shutil.rmtree(work, ignore_errors=True)
    return ObjectsResult(final, True, time.monotonic() - t0, time.process_time() - c0)
