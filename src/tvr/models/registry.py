"""Method name → (model class, typed config), and the model checkpoint format.

Adding a method = one module in `tvr/models/` decorated with `@register("name", NameConfig)`.
A checkpoint is a directory: `config.json` (format, version, method, config) + `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import torch

from tvr.atomic import atomic_write_json, commit_temp, temp_path_beside
from tvr.checksums import sha256_file
from tvr.errors import TvrError
from tvr.models.base import ModelConfig, RetrievalModel
from tvr.registry import Registry

CHECKPOINT_FORMAT = "tvr-model"
CHECKPOINT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_CAPTIONS_FILE = "querybank_captions.json"  # the training captions: an index's default querybank

_METHODS: Registry[tuple[type[RetrievalModel], type[ModelConfig]]] = Registry("method", "tvr.models")


def register(name: str, config: type[ModelConfig]):
    """Class decorator: make `cls` constructible as `create(name)` with config type `config`."""

    def deco(cls: type[RetrievalModel]) -> type[RetrievalModel]:
        _METHODS.add(name, (cls, config))
        cls.method = name
        return cls

    return deco


def names() -> list[str]:
    return _METHODS.names()


def lookup(name: str) -> tuple[type[RetrievalModel], type[ModelConfig]]:
    """(model class, config class) for `name`; unknown names raise `UnknownName` (a TvrError)."""
    return _METHODS.get(name)


def make_config(name: str, overrides: dict[str, Any] | None = None, where: str = "config") -> ModelConfig:
    """The config of method `name` with `overrides` (nested dicts for nested configs) applied."""
    _, cfg_cls = lookup(name)
    return config_from_dict(cfg_cls, overrides or {}, where)


def create(name: str, **overrides: Any) -> RetrievalModel:
    """A fresh model of method `name`; keyword overrides may be nested dicts."""
    cls, _ = lookup(name)
    return cls(make_config(name, overrides))


def build(name: str, config: ModelConfig) -> RetrievalModel:
    cls, cfg_cls = lookup(name)
    if not isinstance(config, cfg_cls):
        raise TypeError(f"{name} needs a {cfg_cls.__name__}, got {type(config).__name__}")
    return cls(config)


# -- typed config <-> JSON -------------------------------------------------------------------------
def config_to_dict(config: Any) -> Any:
    """A frozen-dataclass config as plain JSON values (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: config_to_dict(v) for k, v in config.items()}
    return config


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from JSON values, recursing into nested dataclasses; a field that does
    not exist or has the wrong type raises TvrError naming it."""
    if not isinstance(data, dict):
        raise TvrError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TvrError(f"{where}: unknown field {unknown[0]!r} for {cls.__name__}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TvrError(f"{where}: {exc}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except TvrError as exc:
                errors.append(str(exc))
        raise TvrError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return config_from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TvrError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=False))
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise TvrError(f"{where}: must be one of {', '.join(map(repr, typing.get_args(tp)))}, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TvrError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool) and not (type(value) is tp):
        raise TvrError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


# -- checkpoints -----------------------------------------------------------------------------------
def read_training_captions(path: Path) -> list[str]:
    """A run's stored training captions (`TRAINING_CAPTIONS_FILE`: a JSON list of strings)."""
    try:
        captions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TvrError(f"{path}: not a readable caption list ({exc})") from None
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise TvrError(f"{path}: expected a JSON list of caption strings")
    return captions


def save_model(model: RetrievalModel, run_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write `config.json` + `model.safetensors` into `run_dir`, each atomically (weights first)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = temp_path_beside(run_dir / WEIGHTS_FILE)
    save_file(state, str(tmp), metadata={"method": model.method})
    commit_temp(tmp, run_dir / WEIGHTS_FILE)
    doc = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "method": model.method,
        "config": config_to_dict(model.config),
    }
    if extra:
        doc.update(extra)
    atomic_write_json(run_dir / CONFIG_FILE, doc)


def read_checkpoint_config(run_dir: str | Path) -> tuple[str, ModelConfig, dict[str, Any]]:
    """(method, typed config, the whole config.json) of a checkpoint directory, validated."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise TvrError(f"{run_dir}: checkpoint directory not found")
    if not path.is_file():
        raise TvrError(f"{path}: missing; {run_dir} is not a tvr checkpoint (no finished epoch yet?)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TvrError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise TvrError(f"{path}: not a tvr model checkpoint (field 'format' is not {CHECKPOINT_FORMAT!r})")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise TvrError(
            f"{path}: checkpoint format version {doc.get('version')!r}, this tvr reads version {CHECKPOINT_VERSION}"
        )
    method = doc.get("method")
    if not isinstance(method, str):
        raise TvrError(f"{path}: field 'method' is missing")
    config = make_config(method, doc.get("config") or {}, where=f"{path}: config")
    return method, config, doc


def load_model(
    run_dir: str | Path, method: str | None = None, device: str | torch.device = "cpu"
) -> RetrievalModel:
    """Load a checkpoint directory; `method`, when given, must match the one it was trained as."""
    run_dir = Path(run_dir)
    found, config, _ = read_checkpoint_config(run_dir)
    if method is not None and found != method:
        raise TvrError(f"{run_dir}: checkpoint is a {found!r} model, expected {method!r}")
    model = build(found, config)
    load_weights(model, run_dir)
    return model.to(device).eval()


def load_weights(model: RetrievalModel, run_dir: str | Path, what: str = "") -> None:
    """Copy a checkpoint directory's weights into `model`: the same method, and exactly its tensor
    names and shapes (a mismatch names the first tensor that differs)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    where = f"{what}: " if what else ""
    found, _, _ = read_checkpoint_config(run_dir)
    if found != model.method:
        raise TvrError(f"{where}{run_dir}: checkpoint is a {found!r} model, expected {model.method!r}")
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise TvrError(f"{where}{weights}: missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise TvrError(f"{where}{weights}: unreadable safetensors file ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise TvrError(f"{where}{weights}: weights do not fit a {found!r} model with this config ({detail})")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise TvrError(f"{where}{weights}: tensor {k!r} has shape {tuple(v.shape)}, model needs {tuple(own[k].shape)}")
    model.load_state_dict(state)


def first_stage_sha(first_stage_dir: Path) -> str:
    weights = Path(first_stage_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise TvrError(f"{weights}: missing; --first-stage must be a run directory written by 'tvr train'")
    return sha256_file(weights)


def load_reranker(run_dir: Path, device: str | torch.device = "cpu") -> tuple[RetrievalModel, Path, str]:
    """(re-ranker, its first-stage run directory, the sha256 of the first-stage weights it was trained on)."""
    from tvr.models.registry import read_checkpoint_config

    run_dir = Path(run_dir)
    method, _, doc = read_checkpoint_config(run_dir)
    if not getattr(lookup(method)[0], "reranker", False):
        raise TvrError(f"{run_dir}: holds a {method!r} model, not a re-ranker (train one with --first-stage)")
    if not isinstance(doc.get("first_stage"), str) or not isinstance(doc.get("first_stage_sha256"), str):
        raise TvrError(f"{run_dir / CONFIG_FILE}: fields 'first_stage' / 'first_stage_sha256' are missing")
    return load_model(run_dir, method=method, device=device), Path(doc["first_stage"]), doc["first_stage_sha256"]
