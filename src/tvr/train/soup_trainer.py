"""Training a weight-averaged model: several fine-tunes of one start, averaged into the run's model.

When the training recipe lists `soup` members (`TrainConfig.soup`; MMT's default), `tvr train` trains
one ordinary run per member, each from the same start (`train.init`) with the member's changes to the
recipe (a seed offset, another order-negative weight, ...), then writes the mean of their weights
(`tvr.models.soup`, the uniform "model soup") as the run's model. The run directory holds

    soup.json                 the plan: the method, the recipe, each member's folder and config (written first)
    members/N/                member N: an ordinary run (checkpoints, metrics.jsonl, `--resume`)
    members/N.config.json     member N's complete config, as a `--config` file
    frames/                   the decoded clips, shared by every member
    config.json, model.safetensors, querybank_captions.json   the averaged model (written last)
    metrics.jsonl             every member's epoch records (tagged "member") and the average's validation

`--resume` skips the finished members, continues the interrupted one from its last epoch and starts
the others, then averages again; the averaged model is the same as without the interruption.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json
from tvr.errors import TvrError
from tvr.io.manifest import read_manifest
from tvr.models.assembled import config_doc, merged_captions
from tvr.models.registry import TRAINING_CAPTIONS_FILE, config_from_dict, save_model
from tvr.models.soup import averaged_model
from tvr.progress import stderr_console
from tvr.train.checkpoint import STATE_FILE, has_checkpoint
from tvr.train.distributed import Dist
from tvr.train.epochs import process_cpu_s, read_metrics, write_metrics
from tvr.train.presets import TrainConfig, override, resolve

PLAN_FILE = "soup.json"
PLAN_FORMAT = "tvr-soup-plan"
MEMBERS_DIR = "members"

# trains one member run: (manifest, method, member dir, *, config_file, epochs, resume, resume_previous, store, label)
TrainOne = Callable[..., Any]


def is_soup_run(run_dir: Path) -> bool:
    return (Path(run_dir) / PLAN_FILE).is_file()


def wanted(run_dir: Path, method: str, config_file: Path | None, resume: bool) -> bool:
    """Whether this `tvr train` trains a soup: a resumed soup run, or a recipe that lists members."""
    if resume:
        return is_soup_run(run_dir)
    return bool(resolve(config_file, method).train.soup)


def train_soup(manifest_path: Path, method: str, run_dir: Path, *, config_file: Path | None, epochs: int | None,
               seed: int | None, resume: bool, resume_previous: bool, progress: bool, dist: Dist, frames: Path,
               train_one: TrainOne, validate: Callable[[Any, Any], dict[str, Any] | None]) -> tuple[list[dict[str, Any]], int]:
    """Train every member of the recipe's soup into RUN/members/N (resuming what `resume` finds), their
    clips decoded once into `frames`, and write their average as RUN's model; (RUN's metrics records,
    the members' largest epoch count). `train_one` trains one member run; `validate(model, a member's
    train config)` scores the average on the members' validation split."""
    read_manifest(manifest_path)  # a manifest that does not parse fails before anything is written
    if epochs is not None and epochs < 1:
        raise TvrError(f"--epochs must be at least 1, got {epochs}")
    if resume:
        plan = read_plan(run_dir, method)
    else:  # a plan whose members never finished an epoch (a video missing, say) is written again
        if has_checkpoint(run_dir) or _members_started(run_dir):
            raise TvrError(f"{run_dir}: already holds a training run; pass --resume or choose another --out")
        plan = _write_plan(run_dir, method, config_file, epochs, seed, dist)
    members = plan["members"]
    for i, member in enumerate(members):
        member_dir = run_dir / member["run"]
        label = f"soup member {i + 1}/{len(members)}: "  # on its progress lines; nothing is printed before an error
        if has_checkpoint(member_dir):
            if not resume:
                raise TvrError(f"{member_dir}: already holds a training run; pass --resume")
            done = config_doc(member_dir / STATE_FILE)  # its state files are checked when it is resumed
            if epochs is None and done.get("epoch", 0) >= (done.get("train") or {}).get("epochs", 1):
                continue  # finished
            train_one(manifest_path, method, member_dir, config_file=None, epochs=epochs, resume=True,
                      resume_previous=resume_previous, store=frames, label=label)
            resume_previous = False  # only the member that was interrupted goes back an epoch
        else:
            train_one(manifest_path, method, member_dir, config_file=run_dir / member["config"], epochs=None, resume=False,
                      resume_previous=False, store=frames, label=label)
    history: list[dict[str, Any]] = []
    member_dirs = [run_dir / m["run"] for m in members]
    for i, member_dir in enumerate(member_dirs):
        history += [{"member": i, **h} for h in read_metrics(member_dir)]
    if dist.is_main:
        history.append(_average(run_dir, member_dirs, plan, validate, progress))
        write_metrics(run_dir, history)
    dist.barrier()
    return history, max(int(h.get("epoch", 0)) for h in history)


def _members_started(run_dir: Path) -> bool:
    members = run_dir / MEMBERS_DIR
    return members.is_dir() and any(has_checkpoint(d) for d in members.iterdir() if d.is_dir())


def read_plan(run_dir: Path, method: str) -> dict[str, Any]:
    """The soup plan of `run_dir`, checked against the method it is resumed as."""
    plan = config_doc(run_dir / PLAN_FILE)
    if plan.get("format") != PLAN_FORMAT or not isinstance(plan.get("members"), list) or not plan["members"]:
        raise TvrError(f"{run_dir / PLAN_FILE}: not a tvr soup plan; start over with a new --out")
    if plan.get("method") != method:
        raise TvrError(f"{run_dir}: holds a {plan.get('method')!r} soup, cannot resume it as {method!r}")
    return plan


def _write_plan(run_dir: Path, method: str, config_file: Path | None, epochs: int | None, seed: int | None,
                dist: Dist) -> dict[str, Any]:
    """Each member's complete config file, then the plan naming them (its existence marks a soup run)."""
    preset, model_overrides, recipe, pretrain_cfg, objects_cfg = resolve(config_file, method)
    recipe = override(recipe, epochs=epochs, seed=seed)
    members = []
    for i in range(len(recipe.soup)):
        try:
            member_cfg = override(recipe.member(i), epochs=epochs)
        except ValueError as exc:
            raise TvrError(f"{config_file or 'train'}: {exc}") from None
        config = f"{MEMBERS_DIR}/{i}.config.json"
        doc = {"preset": preset, "model": model_overrides, "train": asdict(member_cfg), "pretrain": asdict(pretrain_cfg),
               "objects": asdict(objects_cfg)}
        members.append({"run": f"{MEMBERS_DIR}/{i}", "config": config, "differs": _differences(recipe, member_cfg)})
        if dist.is_main:
            atomic_write_json(run_dir / config, doc)
    plan = {"format": PLAN_FORMAT, "version": 1, "method": method, "preset": preset, "train": asdict(recipe),
            "members": members}
    if dist.is_main:
        atomic_write_json(run_dir / PLAN_FILE, plan)
    dist.barrier()
    return plan


def _differences(recipe: TrainConfig, member: TrainConfig) -> str:
    """The member's changes to the recipe, for the plan ("seed 1, order_negatives 0.5")."""
    base, own = asdict(recipe), asdict(member)
    return ", ".join(f"{k} {own[k]}" for k in own if k not in ("soup", "split_seed") and own[k] != base[k])


def _average(run_dir: Path, member_dirs: list[Path], plan: dict[str, Any],
             validate: Callable[[Any, Any], dict[str, Any] | None], progress: bool) -> dict[str, Any]:
    """Write the members' average as RUN's model; its metrics record (validation, cost)."""
    t0, c0 = time.monotonic(), process_cpu_s()
    model, records = averaged_model(member_dirs)
    # the members' shared start (init, pretrain) and the soup recipe
    training = {**(records[0].get("training") or {}), "train": plan["train"]}
    member_recipe = config_doc(member_dirs[0] / STATE_FILE).get("train") or {}  # its validation split is every member's
    val = validate(model, config_from_dict(TrainConfig, member_recipe, where=f"{member_dirs[0] / STATE_FILE}: train"))
    save_model(model, run_dir, extra={"training": training, "soup_of": records})
    captions = merged_captions(member_dirs)  # every member trained on the same captions: one member's list
    if captions:
        atomic_write_json(run_dir / TRAINING_CAPTIONS_FILE, captions)
    record: dict[str, Any] = {"soup": len(member_dirs), "logit_scale": float(model.scale().detach()),
                              "epoch_s": round(time.monotonic() - t0, 3), "epoch_cpu_s": round(process_cpu_s() - c0, 3)}
    if val is not None:
        record["val"] = val
    if progress:
        tail = f": val t2v R@1 {val['t2v']['R@1']:.1f}" if val else ""
        stderr_console().print(f"averaged {len(member_dirs)} members → {run_dir}{tail}")
    return record
