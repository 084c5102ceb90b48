"""Weight averaging: one model whose weights are the mean of runs fine-tuned from the same start.

Runs fine-tuned from one pretrained model with different seeds or settings usually end in one basin
of the loss, where the mean of their weights is itself a good model, often better than each of them
("model soups", Wortsman et al., ICML 2022: the uniform soup). Unlike an ensemble (`tvr ensemble`,
which keeps every member and concatenates their vectors), a soup costs what one model costs to run
and to index. The averaged model is

    θ = Σ_m w_m θ_m / Σ_m w_m

over every floating-point tensor (the learned logit scale and batch-norm statistics included); integer
buffers must be equal, except step counters (batch norm's `num_batches_tracked`), which keep the
largest count.

Averaging only makes sense for runs that started from the same weights, so the runs must share the
method, the model config and the start their checkpoints record (`training.init`, the pretraining
recipe `training.pretrain`, and the seed when nothing else was loaded: the seed draws the fresh
layers). `allow_any_start` skips that check, for runs trained elsewhere that record no start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tvr.errors import TvrError
from tvr.models.base import RetrievalModel
from tvr.models.registry import CONFIG_FILE, WEIGHTS_FILE, build, read_checkpoint_config, save_model

# integer buffers that count training steps (batch norm's), not values: the soup keeps the largest count
STEP_COUNTERS = frozenset({"num_batches_tracked"})


def average_states(states: Sequence[dict[str, Tensor]], weights: Sequence[float] = ()) -> dict[str, Tensor]:
    """The weighted mean (`weights`: one per state, default 1 each) of state dicts with the same
    tensor names and shapes; floating-point tensors are averaged in float64 and kept in their dtype,
    step counters (`STEP_COUNTERS`) take their largest value, other tensors must be equal in every state."""
    if len(states) < 2:
        raise ValueError(f"averaging needs at least two sets of weights, got {len(states)}")
    w = list(weights) or [1.0] * len(states)
    if len(w) != len(states):
        raise ValueError(f"weights has {len(w)} values for {len(states)} runs")
    if not all(math.isfinite(x) and x > 0 for x in w):
        raise ValueError(f"weights must be finite and > 0, got {w}")
    total = sum(w)
    names = list(states[0])
    out: dict[str, Tensor] = {}
    for i, state in enumerate(states[1:], start=1):
        if set(state) != set(names):
            missing = sorted(set(names) ^ set(state))
            raise ValueError(f"run {i + 1} has other tensors than run 1 (first difference: {missing[0]!r})")
    for name in names:
        tensors = [s[name] for s in states]
        for i, t in enumerate(tensors[1:], start=1):
            if t.shape != tensors[0].shape or t.dtype != tensors[0].dtype:
                raise ValueError(f"{name}: run {i + 1} holds {tuple(t.shape)} {t.dtype}, run 1 {tuple(tensors[0].shape)} "
                                 f"{tensors[0].dtype}")
        if tensors[0].is_floating_point():
            mean = sum(x / total * t.double() for x, t in zip(w, tensors))
            out[name] = mean.to(tensors[0].dtype)
        elif name.rsplit(".", 1)[-1] in STEP_COUNTERS:
            out[name] = torch.stack(tensors).amax(dim=0)  # steps seen: the longest run's
        else:
            if not all(torch.equal(t, tensors[0]) for t in tensors[1:]):
                raise ValueError(f"{name}: an integer tensor that differs between runs cannot be averaged")
            out[name] = tensors[0].clone()
    return out


def start_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Where a run's weights started, from its config.json (None when it records no training)."""
    training = doc.get("training")
    if not isinstance(training, dict):
        return None
    init = training.get("init")
    start: dict[str, Any] = {"pretrain": training.get("pretrain")}
    if isinstance(init, dict):
        start["init"] = init.get("pretraining", init.get("path"))  # the recipe, else the folder
    else:
        start["seed"] = (training.get("train") or {}).get("seed")
    return start


def write_soup(runs: list[Path], out: Path, weights: tuple[float, ...] = (), *, force: bool = False,
               allow_any_start: bool = False) -> dict[str, Any]:
    """Average the weights of the run directories `runs` into the checkpoint folder `out`
    (`tvr.models.assembled`: where it may be written, --force, atomic, querybank = the runs'
    training captions). Returns a summary."""
    from tvr.models.assembled import checked_out, merged_captions, publish

    if len(runs) < 2:
        raise TvrError(f"a soup needs at least two runs, got {len(runs)}")
    out, runs = checked_out(out, runs, force, "soup")
    model, members = averaged_model(runs, weights, allow_any_start=allow_any_start)
    publish(out, lambda folder: save_model(model, folder, extra={"soup_of": members}), merged_captions(runs))
    return {"path": str(out), "method": model.method, "members": members, "logit_scale": float(model.scale().detach())}


def averaged_model(runs: Sequence[Path], weights: Sequence[float] = (), *,
                   allow_any_start: bool = False) -> tuple[RetrievalModel, list[dict[str, Any]]]:
    """(the model whose weights average those of the finished runs `runs`, in eval mode; a record per
    run: path, weights checksum, training recipe, share), once the runs are known to share method,
    model config and, unless `allow_any_start`, their start."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tvr.models.assembled import config_doc, member_records

    if len(runs) < 2:
        raise TvrError(f"a soup needs at least two runs, got {len(runs)}")
    parsed = [read_checkpoint_config(r) for r in runs]
    method, config, _ = parsed[0]
    for r, (m, c, _) in zip(runs[1:], parsed[1:]):
        if m != method:
            raise TvrError(f"{r}: a {m!r} run; {runs[0]} is a {method!r} run; only runs of one method can be averaged")
        if c != config:
            raise TvrError(f"{r}: its model config differs from {runs[0]}'s; only runs of one architecture can be averaged")
    model = build(method, config)
    if not type(model).trainable:
        raise TvrError(f"{runs[0]}: a {method!r} model is assembled, not trained; average the runs it was made of")
    if not allow_any_start:
        starts = [start_of(config_doc(r / CONFIG_FILE)) for r in runs]
        for r, s in zip(runs, starts):
            if s is None:
                raise TvrError(f"{r}: records no training start (config.json has no 'training'); "
                               "pass --any-start to average it anyway")
        for r, s in zip(runs[1:], starts[1:]):
            if s != starts[0]:
                field = next(k for k in sorted(set(s) | set(starts[0])) if s.get(k) != starts[0].get(k))
                raise TvrError(f"{r}: started from other weights than {runs[0]} (training {field} differs); "
                               "runs fine-tuned from different starts do not average into a working model")
    for r in runs:
        if not (r / WEIGHTS_FILE).is_file():
            raise TvrError(f"{r / WEIGHTS_FILE}: missing; is {r} a finished run?")
    records = member_records(runs)  # checksums of the files that are read next
    try:
        state = average_states([load_file(str(r / WEIGHTS_FILE)) for r in runs], weights)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, SafetensorError) as exc:
        raise TvrError(f"cannot average {', '.join(map(str, runs))}: {exc}") from None
    shares = [x / sum(weights) for x in weights] if weights else [1.0 / len(runs)] * len(runs)
    return model.eval(), [rec | {"share": round(s, 6)} for rec, s in zip(records, shares)]
