"""Training checkpoints: everything `--resume` needs to continue bit-for-bit, committed atomically.

Per epoch, `state/epoch-NNNN.model.safetensors` and `state/epoch-NNNN.optimizer.safetensors` are
written first, then the run directory's `model.safetensors` + `config.json` (what `load_model` reads),
then `trainer_state.json` (the commit point) names the state files with their sha256. A kill at any
moment leaves either the old or the new trainer_state.json, each naming complete files, and a
config.json beside it (a kill just before the commit leaves the newer model copy; resuming redoes
that epoch bit-for-bit).

The previous epoch's state files are kept too, and trainer_state.json carries its record under
"previous": when the newest state is damaged later (a truncated copy, a bad disk), the run can go on
from the epoch before with `--resume-previous` instead of starting over.
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
from tvr.checksums import sha256_file
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


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch whose validation t2v R@1 is highest (the earliest of ties); the last one without validation."""
    scored = [(h["val"]["t2v"]["R@1"], -h["epoch"]) for h in history if isinstance(h.get("val"), dict) and "t2v" in h["val"]]
    if not scored:
        return int(history[-1]["epoch"]) if history else 0
    return -max(scored)[1]


def save_training_checkpoint(
    run_dir: Path, model: RetrievalModel, optimizer: Optimizer, state: dict[str, Any], extra_config: dict[str, Any],
    *, publish: bool = True,
) -> None:
    """Commit epoch `state["epoch"]`: per-epoch files, then trainer_state.json, then the model copy.

    The run's own model (config.json + model.safetensors, what eval/index load) is replaced only when
    `publish` (the trainers publish the epoch with the best validation R@1); the state files always
    hold the latest epoch, for --resume."""
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
        "sha256": {name: sha256_file(sdir / name) for name in (model_name, opt_name)},
    }
    previous = _committed_state(run_dir)
    if previous is not None and int(previous.get("epoch", -1)) >= epoch:  # redoing an epoch (--resume-previous)
        previous = previous.get("previous")
    if isinstance(previous, dict):
        previous.pop("previous", None)
        doc["previous"] = previous
    if publish or not (run_dir / CONFIG_FILE).is_file():  # before the commit: a resumable run always has config.json
        save_model(model, run_dir, extra={**extra_config, "selected_epoch": epoch})
    atomic_write_json(run_dir / STATE_FILE, doc)
    keep = {model_name, opt_name}
    if "previous" in doc:
        keep |= {Path(doc["previous"]["model_file"]).name, Path(doc["previous"]["optimizer_file"]).name}
    for old in sdir.glob("epoch-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _committed_state(run_dir: Path) -> dict[str, Any] | None:
    """The trainer_state.json in place before this commit, if it is readable."""
    try:
        doc = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == STATE_VERSION else None


def _save(save_file: Any, tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = temp_path_beside(path)
    save_file(tensors, str(tmp))
    commit_temp(tmp, path)


def read_trainer_state(run_dir: Path, previous: bool = False) -> dict[str, Any]:
    """The committed state to resume from (its files checked), or with `previous` the epoch before."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise TvrError(f"{run_dir}: nothing to resume (no {STATE_FILE}; no epoch finished yet?)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TvrError(f"{path}: not valid JSON ({exc}); start over with a new --out") from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise TvrError(f"{path}: trainer state version {found!r}, this tvr reads {STATE_VERSION}")
    if previous:
        if not isinstance(doc.get("previous"), dict):
            raise TvrError(f"{path}: keeps no earlier epoch to resume from; start over with a new --out")
        doc = doc["previous"]
        problem = state_file_problem(run_dir, doc)
        if problem:
            raise TvrError(f"{problem}; the earlier epoch is damaged too, start over with a new --out")
        return doc
    problem = state_file_problem(run_dir, doc)
    if problem:
        earlier = doc.get("previous")
        if isinstance(earlier, dict) and state_file_problem(run_dir, earlier) is None:
            hint = f"epoch {earlier['epoch']} is intact: continue from it with --resume-previous"
        else:
            hint = "no intact earlier epoch is kept: start over with a new --out"
        raise TvrError(f"{problem}; {hint}")
    return doc


def state_file_problem(run_dir: Path, doc: dict[str, Any]) -> str | None:
    """Why the state files that `doc` names cannot be restored ("FILE: reason"), or None."""
    from safetensors import SafetensorError, safe_open

    recorded = doc.get("sha256") or {}
    for key in ("model_file", "optimizer_file"):
        path = run_dir / str(doc.get(key, ""))
        if not path.is_file():
            return f"{path}: missing, so the checkpoint is incomplete"
        expected = recorded.get(path.name)
        if expected is not None and sha256_file(path) != expected:
            return f"{path}: damaged (its sha256 differs from the one recorded at the epoch's commit)"
        try:
            with safe_open(str(path), framework="pt") as fh:
                for name in fh.keys():
                    fh.get_slice(name)
        except (SafetensorError, OSError, ValueError) as exc:
            return f"{path}: damaged, not a readable safetensors file ({exc})"
    return None


def restore_training_checkpoint(run_dir: Path, doc: dict[str, Any], model: RetrievalModel, optimizer: Optimizer) -> None:
    """Load the weights, optimizer state and RNG states that `doc` (trainer_state.json) names."""
    from safetensors.torch import load_file

    problem = state_file_problem(run_dir, doc)
    if problem:
        raise TvrError(problem)
    model.load_state_dict(load_file(str(run_dir / doc["model_file"])))
    tensors = load_file(str(run_dir / doc["optimizer_file"]))
    load_optimizer(optimizer, tensors, doc["param_groups"])
    set_rng_state(tensors, doc["rng"])


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in (STATE_FILE, CONFIG_FILE, WEIGHTS_FILE)) or os.path.isdir(run_dir / STATE_DIR)
