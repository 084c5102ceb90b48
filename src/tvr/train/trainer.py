"""Training a retrieval model: each method's own loss (symmetric InfoNCE), AdamW, resumable.

This module prepares a run (config, backbone, decoded clips, batches, validation); the epochs
themselves run in `tvr.train.epochs`, shared with the re-ranker trainer.

Determinism: the batch order of epoch e is a function of (seed, e); the torch/numpy/python RNG
states are saved with every checkpoint and restored on `--resume`, so a resumed run on the same
machine reproduces the uninterrupted run's weights exactly.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.atomic import atomic_write_json
from tvr.data.batch import TextBatch
from tvr.data.pairs import PairSet, decode_clips, load_pairs, text_batch
from tvr.data.sampling import epoch_batches
from tvr.devices import resolve_device
from tvr.errors import TvrError
from tvr.io.manifest import Manifest, read_manifest
from tvr.models.backbone import UNTRAINED_PARTS
from tvr.models.base import RetrievalModel
from tvr.models.registry import (
    TRAINING_CAPTIONS_FILE,
    build,
    config_from_dict,
    lookup,
    make_config,
    read_checkpoint_config,
)
from tvr.train import order_negatives, sound_negatives, text_foils
from tvr.train.checkpoint import has_checkpoint, read_trainer_state
from tvr.train.distributed import Dist, joined
from tvr.train.epochs import Batch, EpochLoop, run_epochs, start_or_resume, steps_per_epoch
from tvr.train.negatives import neighbour_batches
from tvr.train.object_pretrain import with_synthetic_objects
from tvr.train.presets import TrainConfig, override, resolve
from tvr.train.pretrain import backbone_to_build, reads_synthetic_backbone, stand_in_config, with_synthetic_backbone
from tvr.train.video_pretrain import config_for_init, describe, init_spec, init_to_build, load_init, resolve_init

FRAMES_DIR = "frames"  # feature store of decoded frames, reused by `tvr eval --checkpoint RUN`


@dataclass(frozen=True)
class _Job:
    """One run being trained: what, with which recipe, where, and how it reports."""

    method: str
    preset: str
    run_dir: Path
    train_cfg: TrainConfig
    dev: torch.device
    resume: bool
    progress: bool
    dist: Dist


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int
    history: list[dict[str, Any]]
    elapsed_s: float


def split_for_training(manifest: Manifest, train_cfg: TrainConfig) -> tuple[Manifest, Manifest | None]:
    """(train, val): the manifest's own splits, else a seeded hold-out slice of the videos, else none."""
    splits = manifest.splits()
    if splits == {None}:
        train = manifest
    else:
        train = manifest.split("train")
        if not train.entries:
            raise TvrError(f"{manifest.source}: no entry has split 'train' (splits: {sorted(map(str, splits))})")
    if "val" in splits:
        val = manifest.split("val")
    else:
        videos = train.video_keys()
        n_val = min(int(len(videos) * train_cfg.val_fraction), train_cfg.val_max_videos)
        if n_val < 2 or len(videos) - n_val < 2:
            return train, None
        rng = np.random.default_rng([train_cfg.seed if train_cfg.split_seed is None else train_cfg.split_seed, 7])
        held = {videos[i] for i in rng.choice(len(videos), n_val, replace=False)}
        val = Manifest(tuple(e for e in train.entries if e.video_key in held), manifest.root, manifest.source)
        train = Manifest(tuple(e for e in train.entries if e.video_key not in held), manifest.root, manifest.source)
    keep = val.video_keys()[: train_cfg.val_max_videos]
    keep_set = set(keep)
    val = Manifest(tuple(e for e in val.entries if e.video_key in keep_set), manifest.root, manifest.source)
    return train, (val if val.entries else None)


def param_groups(model: RetrievalModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Decay matrices only; the backbone may train at a scaled lr (pretrained weights; its parts that
    start untrained, `UNTRAINED_PARTS`, learn at the full lr).

    A model may define `param_lr_scale(name) -> float | None` to give other pretrained parts their
    own lr multiplier (e.g. MMT's fine-tuned MiniLM); None keeps the default rule.
    """
    own_scale = getattr(model, "param_lr_scale", None)
    groups: dict[tuple[bool, bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "embedding" not in name
        is_backbone = name.startswith("backbone.") and not name.removeprefix("backbone.").startswith(UNTRAINED_PARTS)
        scale = own_scale(name) if own_scale is not None else None
        if scale is None:
            scale = cfg.backbone_lr_scale if is_backbone else 1.0
        groups.setdefault((is_backbone, decay, float(scale)), []).append(p)
    out = []
    for (_, decay, scale), params in sorted(groups.items()):
        lr = cfg.lr * scale
        out.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0})
    return out


@torch.no_grad()
def validate(model: RetrievalModel, pairs: PairSet, device: torch.device) -> dict[str, Any]:
    from tvr.eval.metrics import retrieval_metrics
    from tvr.models.encode import pair_scores

    scores, gt = pair_scores(model, pairs, device)
    return retrieval_metrics(scores.astype(np.float64), gt)


def train(
    manifest_path: Path,
    method: str,
    run_dir: Path,
    *,
    config_file: Path | None = None,
    epochs: int | None = None,
    device: str = "cpu",
    resume: bool = False,
    resume_previous: bool = False,
    seed: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `method` on the manifest's train split into `run_dir` (checkpoint after every epoch).

    Under torchrun (WORLD_SIZE > 1) every process trains its slice of each global batch with the loss
    over the whole batch (`tvr.train.distributed`); rank 0 writes the run.

    A recipe with `soup` members trains each of them and writes their weight average as the run's
    model (`tvr.train.soup_trainer`)."""
    from tvr.train import soup_trainer

    with joined(resolve_device(device)) as (dist, dev):
        progress = progress and dist.is_main
        if not soup_trainer.wanted(run_dir, method, config_file, resume):
            return _train(manifest_path, method, run_dir, config_file=config_file, epochs=epochs, dev=dev, resume=resume,
                          resume_previous=resume_previous, seed=seed, progress=progress, dist=dist)
        t0 = time.monotonic()

        def train_one(manifest_path: Path, method: str, member_dir: Path, **kw: Any) -> TrainResult:
            return _train(manifest_path, method, member_dir, seed=None, dev=dev, progress=progress, dist=dist, **kw)

        def validate_average(model: RetrievalModel, cfg: TrainConfig) -> dict[str, Any] | None:
            _, val_m = split_for_training(read_manifest(manifest_path), cfg)
            if val_m is None:
                return None
            with load_pairs(val_m, model.input_spec(), run_dir / FRAMES_DIR, workers=cfg.workers, progress=False) as pairs:
                return validate(model.to(dev), pairs, dev)

        history, done = soup_trainer.train_soup(
            manifest_path, method, run_dir, config_file=config_file, epochs=epochs, seed=seed, resume=resume,
            resume_previous=resume_previous, progress=progress, dist=dist, frames=run_dir / FRAMES_DIR, train_one=train_one,
            validate=validate_average)
        return TrainResult(run_dir, done, history, time.monotonic() - t0)


def train_in_process(manifest_path: Path, method: str, run_dir: Path, *, config_file: Path, dev: torch.device,
                     resume: bool, progress: bool) -> TrainResult:
    """`train` inside a job that is already running (one process, no torchrun join): the pretraining of
    `train.init: "synthetic-videos"` (train/video_pretrain.py) runs here."""
    return _train(manifest_path, method, run_dir, config_file=config_file, epochs=None, dev=dev, resume=resume,
                  resume_previous=False, seed=None, progress=progress, dist=Dist())


def _train(
    manifest_path: Path, method: str, run_dir: Path, *, config_file: Path | None, epochs: int | None, dev: torch.device,
    resume: bool, resume_previous: bool, seed: int | None, progress: bool, dist: Dist, store: Path | None = None,
    label: str = "",
) -> TrainResult:
    """One run; its clips decoded into `store` (default RUN/frames), `label` before its progress lines."""
    t0 = time.monotonic()
    if not lookup(method)[0].trainable:  # unknown method: fail before any work
        raise TvrError(f"{method!r} is not trained: it is assembled from trained runs (tvr {method})")
    manifest = read_manifest(manifest_path)
    if epochs is not None and epochs < 1:
        raise TvrError(f"--epochs must be at least 1, got {epochs}")
    state: dict[str, Any] | None = None
    if resume:
        state = read_trainer_state(run_dir, previous=resume_previous)
        found, model_cfg, saved = read_checkpoint_config(run_dir)
        pretrain_record = saved.get("training", {}).get("pretrain")
        objects_cfg = None  # a resumed run's networks are built and named in its config already
        if found != method:
            raise TvrError(f"{run_dir}: holds a {found!r} run, cannot resume it as {method!r}")
        train_cfg = config_from_dict(TrainConfig, state["train"], where=f"{run_dir}: train")
        train_cfg = override(train_cfg, epochs=epochs)
        preset = state.get("preset", "")
    else:
        if has_checkpoint(run_dir):
            raise TvrError(f"{run_dir}: already holds a training run; pass --resume or choose another --out")
        preset, overrides, train_cfg, pretrain_cfg, objects_cfg = resolve(config_file, method)
        train_cfg = override(train_cfg, epochs=epochs, seed=seed)
        model_cfg = make_config(method, overrides, where=f"{config_file or 'model config'}: model")
        pretrain_record = asdict(pretrain_cfg) if reads_synthetic_backbone(model_cfg) else None  # to rebuild it elsewhere

    job = _Job(method, preset, run_dir, train_cfg, dev, resume, progress, dist)
    train_m, val_m = split_for_training(manifest, train_cfg)
    both = Manifest(train_m.entries + (val_m.entries if val_m else ()), manifest.root, manifest.source)
    store = store or run_dir / FRAMES_DIR
    init_record = None
    for turn in range(dist.world):  # rank 0 builds the pretrained parts and decodes; the others then find them done
        if turn == dist.rank:
            model_cfg, model, init_record = _prepare(job, model_cfg, None if resume else pretrain_cfg, objects_cfg,
                                                     train_m, both, store, config_file)
        dist.barrier()
    if resume:
        init_record = saved.get("training", {}).get("init")
    extra: dict[str, Any] = {"training": {"preset": preset, "train": asdict(train_cfg), "manifest": str(Path(manifest_path).resolve())}}
    if pretrain_record is not None:
        extra["training"]["pretrain"] = pretrain_record
    if init_record is not None:
        extra["training"]["init"] = init_record  # where the weights started (train.init)
    spec = model.input_spec()
    with ExitStack() as sets:  # a set too large to preload reads its frame store until the end
        train_pairs = sets.enter_context(load_pairs(train_m, spec, store, workers=train_cfg.workers, progress=False))
        val_pairs = sets.enter_context(load_pairs(val_m, spec, store, workers=train_cfg.workers, progress=False)) if val_m else None
        history = _fit(job, model, train_pairs, val_pairs, state=state, extra=extra, source=str(manifest.source),
                       querybank=[e.caption for e in train_m.entries], label=label)
    return TrainResult(run_dir, train_cfg.epochs, history, time.monotonic() - t0)


def _prepare(job: _Job, model_cfg: Any, pretrain_cfg: Any, objects_cfg: Any, train_m: Manifest, both: Manifest,
             store: Path, config_file: Path | None) -> tuple[Any, RetrievalModel, dict[str, Any] | None]:
    """(the final model config, the model, where its weights started or None): the synthetic backbone,
    the objects network and `train.init`'s pretrained model built if needed, every clip decoded once."""
    method, train_cfg, dev, progress = job.method, job.train_cfg, job.dev, job.progress
    init = None
    if not job.resume:
        needs_backbone = backbone_to_build(model_cfg, pretrain_cfg)
        spec = init_spec(method, job.preset, model_cfg, train_cfg, pretrain_cfg, objects_cfg)  # networks still by name: in its key
        model_cfg = with_synthetic_objects(model_cfg, objects_cfg, progress=progress)  # built on first use
        if needs_backbone or init_to_build(train_cfg.init, spec):
            # decode first (a bad manifest fails in seconds, not after a build), with the backbone's input size
            stand_in = stand_in_config(model_cfg, pretrain_cfg) if needs_backbone else with_synthetic_backbone(model_cfg, pretrain_cfg)
            stand_in = lookup(method)[0].adapt_config(stand_in, [e.caption for e in train_m.entries])
            job.run_dir.mkdir(parents=True, exist_ok=True)
            decode_clips(both, build(method, stand_in).input_spec(), store, workers=train_cfg.workers, progress=progress)
        model_cfg = with_synthetic_backbone(model_cfg, pretrain_cfg, progress=progress)  # built on first use
        model_cfg = lookup(method)[0].adapt_config(model_cfg, [e.caption for e in train_m.entries])
        init = resolve_init(train_cfg.init, spec, dev=dev, workers=train_cfg.workers, progress=progress)
        if init is not None:
            model_cfg = config_for_init(model_cfg, init)
    torch.manual_seed(train_cfg.seed)  # parameter init
    try:
        model = build(method, model_cfg).to(dev)
    except ValueError as exc:  # a combination of values the model cannot be built with
        raise TvrError(f"{config_file or job.run_dir / 'config.json'}: model: {exc}") from None
    if init is not None:
        load_init(model, init)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    decode_clips(both, model.input_spec(), store, workers=train_cfg.workers, progress=progress)  # decode everything once
    return model_cfg, model, (describe(init) if init is not None else None)


def _fit(job: _Job, model: RetrievalModel, train_pairs: PairSet, val_pairs: PairSet | None, *, state: dict[str, Any] | None,
         extra: dict[str, Any], source: str, querybank: list[str], label: str) -> list[dict[str, Any]]:
    """Train `model` for the recipe's epochs (from `state`'s when resuming) and return the history;
    `extra` goes into every checkpoint's config.json, `querybank` (the training captions) beside it."""
    train_cfg, dev, dist = job.train_cfg, job.dev, job.dist
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg), lr=train_cfg.lr)

    use_order = train_cfg.order_negatives > 0 and order_negatives.applies_to(model, train_cfg.order_streams)
    order_streams = model.input_spec().streams if use_order else ()  # swapped with the frames (train.order_streams)
    sound_streams = sound_negatives.audio_streams(model) if train_cfg.sound_negatives > 0 else ()

    def loss(epoch: int, b: int, batch: Batch) -> torch.Tensor:
        caps, rows = dist.local_slice(batch[0]), dist.local_slice(batch[1])  # all of it in one process
        text = model.encode_text(text_batch(train_pairs, caps).to(dev))
        clips = train_pairs.clips.batch(rows)
        video = model.encode_video(clips.to(dev))
        total = model.loss(dist.gather(text), dist.gather(video))  # InfoNCE over the global batch
        if use_order:
            ordered = order_negatives.order_rows([train_pairs.entries[c].caption for c in caps])
            n_global = len(order_negatives.order_rows([train_pairs.entries[c].caption for c in batch[0]]))
            if ordered:  # ranks' gradients are averaged: each contributes world × its share of the global sum
                pick = torch.as_tensor(ordered, device=dev)
                swapped = model.encode_video(order_negatives.half_swapped(clips.select(ordered), order_streams).to(dev))
                total = total + train_cfg.order_negatives * dist.world * order_negatives.order_loss(
                    model, text.select(pick), video.select(pick), swapped, n_global)
        if sound_streams:
            per = len(batch[0]) // dist.world  # each rank pairs donors within its own part of the batch
            by_rank = [sound_negatives.donors([train_pairs.entries[c].caption for c in batch[0][r * per:(r + 1) * per]])
                       for r in range(dist.world)]
            pairs, n_global = by_rank[dist.rank], sum(map(len, by_rank))
            if pairs:
                pick = torch.as_tensor([i for i, _ in pairs], device=dev)
                dubbed = model.encode_video(sound_negatives.redubbed(clips, [i for i, _ in pairs], [j for _, j in pairs],
                                                                     sound_streams).to(dev))
                total = total + train_cfg.sound_negatives * dist.world * sound_negatives.sound_loss(
                    model, text.select(pick), video.select(pick), dubbed, n_global)
        if train_cfg.text_foils > 0:
            foiled, foils = text_foils.foils_of([train_pairs.entries[c].caption for c in caps], train_cfg.seed)
            n_global = len(text_foils.foils_of([train_pairs.entries[c].caption for c in batch[0]], train_cfg.seed)[0])
            if foiled:
                pick = torch.as_tensor(foiled, device=dev)
                foil_text = model.encode_text(TextBatch(foils).to(dev))
                total = total + train_cfg.text_foils * dist.world * text_foils.foil_loss(
                    model, text.select(pick), foil_text, video.select(pick), n_global)
        return total

    loop = EpochLoop(
        job.run_dir, model, optimizer, train_cfg, batches=lambda epoch: batches_for_epoch(train_pairs, train_cfg, epoch),
        loss=loss, validate=(lambda: validate(model, val_pairs, dev)) if val_pairs is not None else None,
        state={"method": job.method, "preset": job.preset}, extra=extra, source=source, progress=job.progress, dist=dist,
        label=label,
    )
    start_epoch, step, history = start_or_resume(loop, state)
    steps_per_epoch(loop)  # no batch at all: say so before writing anything more
    captions = job.run_dir / TRAINING_CAPTIONS_FILE
    if dist.is_main and (not job.resume or not captions.is_file()):  # the default querybank of indexes built from
        # this run (index/querybank_texts.py); a run from before this file existed gets it on --resume
        atomic_write_json(captions, querybank)
    return run_epochs(loop, start_epoch, step, history)


def batches_for_epoch(pairs: PairSet, cfg: TrainConfig, epoch: int) -> list[tuple[list[int], list[int]]]:
    """The epoch's (caption rows, clip rows) batches: random, or part neighbour groups (hard negatives)."""
    if cfg.hard_negatives > 0:
        return neighbour_batches(pairs, cfg.batch_size, cfg.seed, epoch, share=cfg.hard_negatives, group=cfg.negative_group)
    return epoch_batches(pairs, cfg.batch_size, cfg.seed, epoch)
