"""Named training setups: a model-config override + a typed `TrainConfig`, selectable by `--config`.

A config file is JSON: {"preset": NAME, "model": {...overrides...}, "train": {...overrides...}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from tvr.errors import TvrError
from tvr.train import object_pretrain
from tvr.train.pretrain import SYNTHETIC_BACKBONE, PretrainConfig, declared_floats

DEFAULT_PRESET = "cpu-small"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # peak lr of the parameters trained from scratch
    backbone_lr_scale: float = 1.0  # pretrained CLIP: 1e-3 (CLIP4Clip: 1e-7 vs 1e-4)
    weight_decay: float = 0.05  # on matrices only; never on norms, biases, embeddings, logit scale
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global L2 norm of the gradients
    val_fraction: float = 0.05  # of the training videos, when the manifest has no val split
    val_max_videos: int = 200  # validate on at most this many videos (speed)
    seed: int = 0
    workers: int = 2  # decode processes
    hard_negatives: float = 0.0  # share of each batch made of groups of near-neighbour captions (train/negatives.py)
    negative_group: int = 4  # clips per neighbour group
    order_negatives: float = 0.0  # weight of the order-negative loss (train/order_negatives.py); 0 = off
    order_streams: bool = False  # models reading feature streams (MMT) get order negatives too, every stream
    # swapped with the frames; off: they skip them
    text_foils: float = 0.0  # weight of the text-foil loss (train/text_foils.py); 0 = off
    sound_negatives: float = 0.0  # weight of the sound-negative loss (train/sound_negatives.py); 0 = off
    # where the weights start: "" (the model as built), "synthetic-videos" (the method first trained on
    # init_videos synthetic videos for init_epochs, built once per machine: train/video_pretrain.py), or a run folder
    init: str = ""
    init_videos: int = 4000
    init_epochs: int = 6
    init_seed: int = 0  # the synthetic-video pretraining's own seed: another value builds another pretrained model
    split_seed: int | None = None  # draws the validation hold-out of a manifest without a val split; None: seed
    # a weight-averaged model (train/soup_trainer.py): one member run per entry, each this recipe with the
    # entry's fields replaced ("seed_offset" is added to the seed), all from the same start, then averaged
    # (models/soup.py); () = one run
    soup: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        declared_floats(self)
        for name, (low, high, low_open) in TRAIN_RANGES.items():
            value = getattr(self, name)
            below = value <= low if low_open else value < low
            if below or (high is not None and value > high):
                raise ValueError(f"{name} must be {_describe_range(low, high, low_open)}, got {value!r}")
        if self.split_seed is not None and not 0 <= self.split_seed < 2**63:
            raise ValueError(f"split_seed must be in [0, {2**63 - 1}] or null, got {self.split_seed!r}")
        if len(self.soup) == 1:
            raise ValueError("soup needs at least two members (or none, for one run)")
        for i in range(len(self.soup)):
            self.member(i)  # each member's recipe is checked now, not after the first member has trained

    def member(self, i: int) -> TrainConfig:
        """The recipe of soup member `i`: this one with the member's fields replaced, its seed
        offset added, the validation hold-out drawn as for the whole soup, and no soup of its own."""
        entry = self.soup[i]
        if not isinstance(entry, dict):
            raise ValueError(f"soup[{i}] must be an object of training fields, got {entry!r}")
        fields = {k: v for k, v in entry.items() if k != "seed_offset"}
        bad = sorted(set(fields) & SOUP_SHARED) or sorted(set(fields) - set(self.__dataclass_fields__))
        if bad:
            raise ValueError(f"soup[{i}]: {bad[0]!r} cannot differ between members (a member may set: "
                             f"seed_offset, {', '.join(sorted(set(self.__dataclass_fields__) - SOUP_SHARED))})")
        offset = entry.get("seed_offset", 0)
        if type(offset) is not int or offset < 0:
            raise ValueError(f"soup[{i}].seed_offset must be an integer >= 0, got {offset!r}")
        if offset and not self.init:
            raise ValueError(f"soup[{i}].seed_offset: without train.init the seed draws the members' first weights, "
                             "and runs from different starts do not average; set train.init, or \"soup\": [] to train one run")
        try:
            return replace(self, soup=(), split_seed=self.split_seed if self.split_seed is not None else self.seed,
                           **{"seed": self.seed + offset, **fields})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"soup[{i}]: {exc}") from None


# what every member of a soup shares: where the weights start (`train.init`'s pretraining reads the run's
# sound_negatives and order_streams too) and what they are validated on
SOUP_SHARED = frozenset({"soup", "init", "init_videos", "init_epochs", "init_seed", "sound_negatives", "order_streams", "split_seed",
                         "val_fraction", "val_max_videos", "seed"})


# field -> (lower bound, upper bound or None, lower bound excluded); checked before any work starts
TRAIN_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "epochs": (1, None, False),
    "batch_size": (2, None, False),  # a contrastive batch needs a negative
    "lr": (0, None, True),
    "backbone_lr_scale": (0, None, False),
    "weight_decay": (0, None, False),
    "warmup_fraction": (0, 1, False),
    "min_lr_ratio": (0, 1, False),
    "grad_clip": (0, None, False),
    "val_fraction": (0, 0.9, False),
    "val_max_videos": (1, None, False),
    "seed": (0, 2**63 - 1, False),
    "workers": (1, 256, False),
    "hard_negatives": (0, 1, False),
    "negative_group": (2, None, False),
    "order_negatives": (0, None, False),
    "text_foils": (0, None, False),
    "sound_negatives": (0, None, False),
    "init_videos": (2, 100_000, False),
    "init_epochs": (1, None, False),
    "init_seed": (0, 2**63 - 1, False),
}


def _describe_range(low: float, high: float | None, low_open: bool) -> str:
    if high is None:
        return f"> {low}" if low_open else f">= {low}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # used when the model names SYNTHETIC_BACKBONE
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)  # model overrides for one method only
    per_method_train: dict[str, dict[str, Any]] = field(default_factory=dict)  # train overrides for one method only


# MMT's default is one model averaged from three fine-tunes of its pretrained start that differ in seed and
# order-negative weight (train/soup_trainer.py), at three times the training time and one model's search cost:
# R@1 58.0 / 60.8 at seeds 0 / 3 against 51.1 / 53.9 / 52.5 for single fine-tunes (bench/results/mmt_soup_default.json).
# seqTransf stays one run: the same soup gives 21.6 / 19.9 at seeds 0 / 3 against 19.6 / 20.1 for single runs
# (bench/results/seqtransf_soup_default.json), not worth three times the training
THREE_FINE_TUNES: tuple[dict[str, Any], ...] = ({}, {"seed_offset": 1, "order_negatives": 0.5}, {"order_negatives": 0.0})

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "cpu-small",
            "CPU: fine-tune the synthetic CLIP backbone (`tvr pretrain`, built on first use): 64 px, T=8, "
            "ViT 4×192 patch 16, 2-layer text tower over MiniLM word vectors plus a MiniLM context reading; half of "
            "each batch near-neighbour captions; order negatives (for MMT with its expert streams swapped too, and "
            "sound negatives); frame positions at the frame embeddings' scale; MMT, seqTransf, TS2-Net and ProST "
            "fine-tune from themselves pretrained on synthetic videos (`train.init`, built on first use)",
            model={"num_frames": 8, "image_size": 64, "frame_position_std": 1.0,
                   "backbone": {"patch_size": 16, "pretrained": SYNTHETIC_BACKBONE, "freeze_token_embedding": True,
                                "text_context": "minilm"}},
            train=TrainConfig(epochs=15, batch_size=64, lr=1e-3, backbone_lr_scale=0.1, hard_negatives=0.5,
                              order_negatives=1.0),
            # MMT reads captions with its own fine-tuned MiniLM: no second reading beside it. Measured
            # (docs/results.md): the paper's margin loss stops learning by epoch 3 here, InfoNCE keeps
            # learning for 25 epochs
            # The re-ranker learns a correction to its calibrated first stage (models/crosstvr.py): measured on the
            # default seqTransf, R@1 19.4 against 17.3 as the paper's stand-alone match score, 19.6 for the first
            # stage alone (bench/results/rerank_seqtransf_video_init.json)
            # MMT adds a fourth expert, `objects` (a CNN trained on rendered stills to name their objects,
            # encoders/objects.py): R@1 37.1 / 37.1 / 36.3 over three seeds against 32.4 / 31.8 / 32.4 with the
            # paper's three, small object ≈ 34 → 48 (bench/results/objects_expert.json)
            per_method={"mmt": {"d_model": 128, "layers": 2, "heads": 4, "ffn": 512, "text_trainable_layers": 2,
                                "loss": "infonce", "backbone": {"text_context": "none"},
                                "experts": ["appearance", "motion", "audio", "objects"]},
                        "crosstvr": {"residual": True}},
            # measured: order negatives make the re-ranker worse (docs/results.md). MMT, seqTransf, TS2-Net and
            # ProST fine-tune for 8 epochs from themselves pretrained on 4,000 synthetic videos
            # (train/video_pretrain.py): MMT R@1 32.2 over three seeds against 26.6 over four at 25 epochs without;
            # seqTransf 19.6 / 20.1 against 16.1 / 14.9 at 15 epochs without; TS2-Net 18.1 / 16.8 against 11.7;
            # ProST 15.2 / 14.9 against 12.1 / 12.2 (bench/results/video_pretrain.json). MMT's sound negatives
            # (train/sound_negatives.py): see bench/results/sound_negatives.json. MMT's order negatives with its
            # streams swapped too (train.order_streams): R@1 51.1 against 44.0 / 37.9 / 43.6 without, order 32.5 → 54.9
            # (bench/results/order_streams.json)
            per_method_train={"crosstvr": {"order_negatives": 0.0},
                              "mmt": {"epochs": 8, "init": "synthetic-videos", "sound_negatives": 1.0, "order_streams": True,
                                      "soup": THREE_FINE_TUNES},
                              "clip4clip-seqtransf": {"epochs": 8, "init": "synthetic-videos"},
                              "ts2net": {"epochs": 8, "init": "synthetic-videos"},
                              "prost": {"epochs": 8, "init": "synthetic-videos"}},
        ),
        Preset(
            "cpu-scratch",
            "CPU, no pretraining (round 1's default): 64 px, T=8, ViT 4×192 (patch 16), 2-layer word-level text tower",
            model={"num_frames": 8, "image_size": 64, "backbone": {"patch_size": 16}},
            train=TrainConfig(epochs=10, batch_size=64, lr=1e-3),
        ),
        Preset(
            "tiny",
            "for tests: 32 px, T=4, 1-layer towers",
            model={
                "num_frames": 4, "image_size": 32,
                "backbone": {"embed_dim": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1,
                             "vision_heads": 2, "text_width": 32, "text_layers": 1, "text_heads": 2},
                "temporal_layers": 1,
            },
            train=TrainConfig(epochs=2, batch_size=4, lr=1e-3, val_fraction=0.0),
        ),
        Preset(
            "clip-vit-b32",
            "GPU: a real CLIP ViT-B/32 (set model.backbone.pretrained and hf_tokenizer); paper's T=12, 224 px",
            model={
                "num_frames": 12, "image_size": 224,
                "backbone": {"embed_dim": 512, "patch_size": 32, "vision_width": 768, "vision_layers": 12,
                             "vision_heads": 12, "text_width": 512, "text_layers": 12, "text_heads": 8,
                             "tokenizer": "clip-bpe", "context_length": 32},
            },
            train=TrainConfig(epochs=5, batch_size=128, lr=1e-4, backbone_lr_scale=1e-3, weight_decay=0.2),
        ),
    )
}


def preset_train(name: str, method: str) -> TrainConfig:
    """The preset's training recipe for `method` (its per-method overrides applied)."""
    preset = PRESETS[name]
    return replace(preset.train, **preset.per_method_train.get(method, {}))


def override(cfg: TrainConfig, **values: Any) -> TrainConfig:
    """`cfg` with command-line values (None: keep) replaced; an out-of-range one names its flag."""
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return replace(cfg, **values)
    except ValueError as exc:
        raise TvrError(f"--{str(exc).replace('_', '-')}") from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Resolved(NamedTuple):
    """What a `tvr train --config` file (or none) resolves to for one method."""

    preset: str
    model: dict[str, Any]  # overrides of the method's model config
    train: TrainConfig
    pretrain: PretrainConfig  # the synthetic backbone's recipe, where the model names "synthetic-clip"
    objects: object_pretrain.ObjectPretrainConfig  # the objects expert's network recipe, where the model names "synthetic-objects"


KEYS = ("preset", "model", "train", "pretrain", "objects")


def resolve(config_file: Path | None, method: str) -> Resolved:
    """The preset, model overrides, train config and pretraining recipes an optional JSON config file
    asks for: its `pretrain` and `objects` objects override the preset's recipes field by field."""
    from tvr.models.registry import config_from_dict, lookup

    doc: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise TvrError(f"{config_file}: config file not found")
        try:
            doc = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TvrError(f"{config_file}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise TvrError(f"{config_file}: expected a JSON object with {', '.join(map(repr, KEYS))}")
        unknown = sorted(set(doc) - set(KEYS))
        if unknown:
            raise TvrError(f"{config_file}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    name = doc.get("preset", DEFAULT_PRESET)
    if name not in PRESETS:
        raise TvrError(f"{config_file}: unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    _, cfg_cls = lookup(method)
    fields = set(cfg_cls.__dataclass_fields__)
    model = {k: v for k, v in preset.model.items() if k in fields}  # presets cover several methods
    model = deep_merge(model, preset.per_method.get(method, {}))
    model = deep_merge(model, doc.get("model") or {})
    given_train = doc.get("train") or {}
    for i, entry in enumerate(given_train.get("soup") or [] if isinstance(given_train, dict) else []):
        if isinstance(entry, dict):  # the members' field types, checked like the run's own
            config_from_dict(TrainConfig, {k: v for k, v in entry.items() if k != "seed_offset"},
                             where=f"{config_file}: train.soup[{i}]")
    train = config_from_dict(TrainConfig, given_train, where=f"{config_file}: train")
    try:
        train = replace(preset_train(name, method), **{k: getattr(train, k) for k in (doc.get("train") or {})})
    except ValueError as exc:
        raise TvrError(f"{config_file}: train: {exc}") from None
    pretrain = _recipe(doc, "pretrain", preset.pretrain, config_file)
    objects = _recipe(doc, "objects", object_pretrain.default_config(), config_file)
    return Resolved(name, model, train, pretrain, objects)


def _recipe(doc: dict[str, Any], key: str, default: Any, config_file: Path | None) -> Any:
    """`default` with the fields `doc[key]` gives, each checked for its type and value."""
    from tvr.models.registry import config_from_dict

    given = doc.get(key) or {}
    checked = config_from_dict(type(default), given, where=f"{config_file}: {key}")
    try:
        return replace(default, **{k: getattr(checked, k) for k in given})
    except ValueError as exc:
        raise TvrError(f"{config_file}: {key}: {exc}") from None
