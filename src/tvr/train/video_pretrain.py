"""Video-text pretraining of a whole retrieval model on synthetic videos, then fine-tuning from it.

The backbone's pretraining (`pretrain.py`) teaches the image tower what stills show. Everything a
method adds on top (MMT's expert projections, gating and fusion transformer; seqTransf's temporal
transformer) still starts from random weights, and with 1,200 training videos it is short of data:
MMT trained on four times as many videos of the same world gains 7 points of test R@1
(`bench/results/more_train_videos.json`). The MMT paper pretrains on HowTo100M for the same reason.

`train.init: "synthetic-videos"` fine-tunes from a model that was first trained, with the method's
own config and loss, on a world of synthetic videos rendered for the purpose (`tvr synth`'s world
with its own seed, every colour-shape pair allowed, train scenes only). It is built once per
machine per (method, model config, recipe) into the user cache folder, next to the backbone:
under the same file lock, resuming an interrupted build, and published with one rename. Only the
weights, config and metrics are kept; the rendered videos and the frame store are deleted.

What this is and is not: its captions come from the synthetic world's own grammar, so on the
synthetic benchmark it is closer to "more fine-tuning data from the same world" than CLIP's web
captions are to MSR-VTT. The benchmark's test videos are never rendered into it (another seed), but
scenes drawn from the same distribution are. `train.init` may also name any finished run folder of
the same method and model shape, which is how a user fine-tunes from their own earlier run.
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

import torch

from tvr.atomic import atomic_write_json
from tvr.encoders.objects import SYNTHETIC_OBJECTS
from tvr.errors import TvrError
from tvr.models.base import RetrievalModel
from tvr.models.registry import CONFIG_FILE, WEIGHTS_FILE, config_to_dict, load_weights, read_checkpoint_config
from tvr.train import object_pretrain
from tvr.train.presets import TrainConfig
from tvr.train.pretrain import PretrainConfig, build_lock, builds_backbone, cache_root

SYNTHETIC_VIDEOS = "synthetic-videos"  # the `train.init` value that names the cached pretrained model
FORMAT_VERSION = 1
INFO_FILE = "tvr_video_pretrain.json"  # written last into a finished folder
WORLD_SEED = 104_729  # not `tvr synth`'s default 0: no scene of a default user world is rendered into it
WORLD_GROUP_SIZE = 4  # the world that also draws "small object beside a large one" scenes
RENDER_SIZE, RENDER_SECONDS, RENDER_FPS = 96, 3.0, 8.0
KEPT_FILES = (CONFIG_FILE, WEIGHTS_FILE, "metrics.jsonl")


@dataclass(frozen=True)
class InitResult:
    path: Path  # a run folder holding config.json + model.safetensors
    built: bool  # False: it was already there (or a user's run)
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class InitSpec:
    """What the synthetic-video pretraining of one method trains: the fine-tuning model's config
    (with the backbone still by name), and the preset's own training recipe for the method with
    `init_epochs` epochs. The recipe is the preset's, not the fine-tuning run's, so a fine-tuning
    seed, lr or epoch count does not make another pretrained model: like CLIP, it is fixed upstream."""

    method: str
    model: Any
    train: TrainConfig
    backbone: PretrainConfig
    objects: object_pretrain.ObjectPretrainConfig  # the objects expert's network; in the key only where the model uses it

    def key(self) -> str:
        """A short hash of everything that changes the pretrained weights."""
        doc = {
            "method": self.method,
            "model": _without_unset(config_to_dict(self.model), "model"),
            "train": _without_unset({k: v for k, v in asdict(self.train).items() if k != "workers"}, "train"),
            "backbone": self.backbone.key() if builds_backbone(self.model) else None,
            "world": {"videos": self.train.init_videos, "seed": WORLD_SEED, "group_size": WORLD_GROUP_SIZE,
                      "size": RENDER_SIZE, "seconds": RENDER_SECONDS, "fps": RENDER_FPS},
            "format": FORMAT_VERSION,
        }
        if "objects" in getattr(self.model, "experts", ()) and getattr(self.model, "objects", None) == SYNTHETIC_OBJECTS:
            doc["objects"] = self.objects.key()  # the network's recipe, like the backbone's
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def folder(self) -> Path:
        return cache_root() / "pretrained" / f"{SYNTHETIC_VIDEOS}-{self.method}-{self.key()}"


# fields added after the key's format was fixed: each enters the key only when it differs from the
# value that reproduces the weights from before it existed, so caches built then stay valid
LATER_FIELDS: dict[str, dict[str, Any]] = {"model": {"text_head_layers": 0},
                                           "train": {"sound_negatives": 0.0, "order_streams": False, "split_seed": None,
                                                     "soup": (), "init_seed": 0}}


def _without_unset(fields: dict[str, Any], part: str) -> dict[str, Any]:
    later = LATER_FIELDS[part]
    return {k: v for k, v in fields.items() if not (k in later and v == later[k])}


def init_spec(method: str, preset: str, model_cfg: Any, train_cfg: TrainConfig, backbone: PretrainConfig,
              objects: object_pretrain.ObjectPretrainConfig | None = None) -> InitSpec:
    """The pretraining that `train_cfg.init == "synthetic-videos"` asks for (`init_videos`, `init_epochs`,
    `sound_negatives` and `order_streams` taken from `train_cfg`, everything else from the preset's recipe
    for `method`: a run that turns sound negatives off pretrains without them too)."""
    from tvr.train.presets import preset_train

    preset_recipe = preset_train(preset, method)
    recipe = replace(preset_recipe, init="", epochs=train_cfg.init_epochs, init_videos=train_cfg.init_videos,
                     init_epochs=train_cfg.init_epochs, sound_negatives=train_cfg.sound_negatives,
                     order_streams=train_cfg.order_streams, soup=(),
                     # another build of the same recipe: its seed moved by init_seed (0: the caches built before)
                     seed=preset_recipe.seed + train_cfg.init_seed, init_seed=train_cfg.init_seed)
    return InitSpec(method, model_cfg, recipe, backbone, objects or object_pretrain.default_config())


def init_to_build(init: str, spec: InitSpec) -> bool:
    """Whether `init` names the synthetic-video model and this machine has not built it yet."""
    return init == SYNTHETIC_VIDEOS and not _finished(spec.folder())


def resolve_init(init: str, spec: InitSpec, *, dev: torch.device | None = None, workers: int = 2,
                 progress: bool = True) -> InitResult | None:
    """The run folder `init` (a `train.init` value) names, the synthetic-video model built now if
    missing; None for ""."""
    if not init:
        return None
    if init != SYNTHETIC_VIDEOS:
        path = Path(init).expanduser()
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise TvrError(f"train.init: {path} is not a finished tvr run (no {CONFIG_FILE} + {WEIGHTS_FILE}); "
                           f"give a run folder or {SYNTHETIC_VIDEOS!r}")
        return InitResult(path, built=False, wall_s=0.0, cpu_s=0.0)
    final = spec.folder()
    if _finished(final):
        return InitResult(final, built=False, wall_s=0.0, cpu_s=0.0)
    final.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(final):
        if _finished(final):  # another process built it while this one waited
            return InitResult(final, built=False, wall_s=0.0, cpu_s=0.0)
        if final.exists():
            raise TvrError(f"{final} exists but is not a finished pretrained model; remove it")
        return _build(spec, final, dev or torch.device("cpu"), workers, progress)


def method_init(method: str, config_file: Path | None = None) -> InitSpec:
    """The synthetic-video pretraining `tvr train` would use for `method` under the default preset or a
    `--config` file (whatever its `train.init` says)."""
    from tvr.models.registry import lookup, make_config
    from tvr.train.presets import resolve

    if not lookup(method)[0].trainable or getattr(lookup(method)[0], "reranker", False):
        raise TvrError(f"{method!r} is not pretrained on videos (only first-stage methods are)")
    preset, overrides, train_cfg, backbone, objects = resolve(config_file, method)
    model_cfg = make_config(method, overrides, where=f"{config_file or 'model config'}: model")
    return init_spec(method, preset, model_cfg, train_cfg, backbone, objects)


def ensure_method_init(method: str, config_file: Path | None = None, *, progress: bool = True) -> InitResult:
    """Build (or find) `method`'s synthetic-video pretrained model, its backbone first: `tvr pretrain --method`."""
    from tvr.train.pretrain import with_synthetic_backbone

    spec = method_init(method, config_file)
    with_synthetic_backbone(spec.model, spec.backbone, progress=progress)
    result = resolve_init(SYNTHETIC_VIDEOS, spec, workers=spec.train.workers, progress=progress)
    assert result is not None
    return result


def info(path: Path) -> dict[str, Any]:
    """The finished folder's record (recipe, kept epoch, cost)."""
    return json.loads((path / INFO_FILE).read_text(encoding="utf-8"))


def config_for_init(model_cfg: Any, init: InitResult) -> Any:
    """`model_cfg` with the word vocabulary of the init run (a word-level text tower reads the words it
    was pretrained on, as a fine-tuned CLIP keeps CLIP's tokenizer); other configs are returned as they are."""
    backbone = getattr(model_cfg, "backbone", None)
    if backbone is None or getattr(backbone, "tokenizer", None) != "words":
        return model_cfg
    _, init_cfg, _ = read_checkpoint_config(init.path)
    vocabulary = getattr(getattr(init_cfg, "backbone", None), "vocabulary", None)
    return model_cfg if vocabulary is None else replace(model_cfg, backbone=replace(backbone, vocabulary=vocabulary))


def load_init(model: RetrievalModel, init: InitResult) -> None:
    """Copy the init run's weights into `model` (same method, same tensor names and shapes)."""
    load_weights(model, init.path, what=f"train.init {init.path}")


def _finished(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and all((path / f).is_file() for f in (CONFIG_FILE, WEIGHTS_FILE))


def _build(spec: InitSpec, final: Path, dev: torch.device, workers: int, progress: bool) -> InitResult:
    from tvr.progress import ProgressReport, stderr_console
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig
    from tvr.train.checkpoint import best_epoch, has_checkpoint
    from tvr.train.trainer import train_in_process

    t0, c0 = time.monotonic(), _cpu_s()
    work = final.parent / f"{final.name}.partial"
    world_dir, run_dir = work / "world", work / "run"
    work.mkdir(exist_ok=True)
    method, n = spec.method, spec.train.init_videos
    if progress:
        print(f"pretraining {method} on {n} synthetic videos ({spec.train.epochs} epochs), once per machine: "
              f"{final}", flush=True)
    if not (world_dir / "train.jsonl").is_file():  # the manifests are written last: no manifest, no world
        world = WorldConfig(videos=n, seed=WORLD_SEED, val_fraction=0.0, test_fraction=0.0, heldout_pairs=0,
                            group_size=WORLD_GROUP_SIZE)
        render = RenderConfig(size=RENDER_SIZE, seconds=RENDER_SECONDS, fps=RENDER_FPS)
        with ProgressReport("render pretraining videos", n, "videos", transient=True, console=stderr_console(),
                            enabled=progress) as report:
            generate(world_dir, world, render, workers=workers, force=True,
                     on_progress=lambda done, _total: report.update(done))
    config_file = work / "train_config.json"
    atomic_write_json(config_file, {"model": config_to_dict(spec.model), "train": {**asdict(spec.train), "workers": workers},
                                    "pretrain": asdict(spec.backbone), "objects": asdict(spec.objects)})
    result = train_in_process(world_dir / "train.jsonl", method, run_dir, config_file=config_file,
                              dev=dev, resume=has_checkpoint(run_dir), progress=progress)
    staging = work / "out"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in KEPT_FILES:
        shutil.copy2(run_dir / name, staging / name)
    kept = best_epoch(result.history) if result.history else None
    best = next((h for h in result.history if h.get("epoch") == kept), {})
    wall_s, cpu_s = time.monotonic() - t0, _cpu_s() - c0
    atomic_write_json(staging / INFO_FILE, {
        "format": FORMAT_VERSION, "method": method, "key": spec.key(), "videos": n, "epochs": spec.train.epochs,
        "world_seed": WORLD_SEED, "render": {"size": RENDER_SIZE, "seconds": RENDER_SECONDS, "fps": RENDER_FPS},
        "kept_epoch": best.get("epoch"), "val_t2v_r1": best.get("val", {}).get("t2v", {}).get("R@1"),
        "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
    })
    staging.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    return InitResult(final, built=True, wall_s=wall_s, cpu_s=cpu_s)


def describe(init: InitResult) -> dict[str, Any]:
    """What a fine-tuned run records about where its weights started."""
    doc: dict[str, Any] = {"path": str(init.path)}
    if (init.path / INFO_FILE).is_file():
        doc["pretraining"] = info(init.path)
    return doc


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the render and decode workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
