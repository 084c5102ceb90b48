"""Training checkpoints: everything `--resume` needs to continue bit-for-bit, committed atomically.

Per epoch, `state/epoch-NNNN.model.safetensors` and `state/epoch-NNNN.optimizer.safetensors` are
written first, then the run directory's `model.safetensors` + `config.json` (what `load_model` reads),
then `trainer_state.json` (the commit point) names the state files. A kill at any moment leaves
either the old or the new trainer_state.json, each naming complete files, and a config.json beside it
(a kill just before the commit leaves the newer model copy; resuming redoes that epoch bit-for-bit).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer

from tvr.atomic import atomic_write_json, commit_temp, temp_path_beside
from tvr.errors import TvrError
from tvr.models.base import RetrievalModel
from tvr.models.registry import CONFIG_FILE, WEIGHTS_FILE, save_model

STATE_FILE = "trainer_state.json"
STATE_DIR = "state"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_VERSION = 1


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) capturing the torch, CUDA, numpy and python RNGs."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    doc = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, doc


def set_rng_state(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, keys, pos, has_gauss, gauss = doc["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_py = doc["python"]
    random.setstate((version, tuple(internal), gauss_py))


def optimizer_tensors(optimizer: Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state as flat tensors ("opt.<param>.<name>") + the param groups as JSON."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"opt.{pid}.{name}"] = t.detach().to("cpu").contiguous().clone()
    return tensors, sd["param_groups"]


def load_optimizer(optimizer: Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("opt."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_checkpoint(
    run_dir: Path, model: RetrievalModel, optimizer: Optimizer, state: dict[str, Any], extra_config: dict[str, Any]
) -> None:
    """Commit epoch `state["epoch"]`: per-epoch files, then trainer_state.json, then the model copy."""
    from safetensors.torch import save_file

    epoch = int(state["epoch"])
    sdir = run_dir / STATE_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    model_name = f"epoch-{epoch:04d}.model.safetensors"
    opt_name = f"epoch-{epoch:04d}.{OPTIMIZER_FILE}"
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _save(save_file, weights, sdir / model_name)
    opt, groups = optimizer_tensors(optimizer)
    rng_t, rng_doc = rng_state()
    _save(save_file, {**opt, **rng_t}, sdir / opt_name)
    doc = {
        **state, "version": STATE_VERSION, "model_file": f"{STATE_DIR}/{model_name}",
        "optimizer_file": f"{STATE_DIR}/{opt_name}", "param_groups": groups, "rng": rng_doc,
    }
    save_model(model, run_dir, extra=extra_config)  # before the commit: a resumable run always has config.json
    atomic_write_json(run_dir / STATE_FILE, doc)
    for old in sdir.glob("epoch-*.safetensors"):
        if old.name not in (model_name, opt_name):
            old.unlink(missing_ok=True)


def _save(save_file: Any, tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = temp_path_beside(path)
    save_file(tensors, str(tmp))
    commit_temp(tmp, path)


def read_trainer_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise TvrError(f"{run_dir}: nothing to resume (no {STATE_FILE}; no epoch finished yet?)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TvrError(f"{path}: not valid JSON ({exc})") from None
    if doc.get("version") != STATE_VERSION:
        raise TvrError(f"{path}: trainer state version {doc.get('version')!r}, this tvr reads {STATE_VERSION}")
    return doc


def restore_training_checkpoint(run_dir: Path, doc: dict[str, Any], model: RetrievalModel, optimizer: Optimizer) -> None:
    """Load the weights, optimizer state and RNG states that `doc` (trainer_state.json) names."""
    from safetensors.torch import load_file

    for key in ("model_file", "optimizer_file"):
        if not (run_dir / doc[key]).is_file():
            raise TvrError(f"{run_dir / doc[key]}: missing; the checkpoint is incomplete")
    model.load_state_dict(load_file(str(run_dir / doc["model_file"])))
    tensors = load_file(str(run_dir / doc["optimizer_file"]))
    load_optimizer(optimizer, tensors, doc["param_groups"])
    set_rng_state(tensors, doc["rng"])


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in (STATE_FILE, CONFIG_FILE, WEIGHTS_FILE)) or os.path.isdir(run_dir / STATE_DIR)
