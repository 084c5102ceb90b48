"""Writing a model assembled from trained runs (`tvr ensemble`, `tvr soup`) as an ordinary checkpoint.

Both commands take run directories and write one new checkpoint folder. The rules are the same for
both: the folder may not be one of the runs, inside one or around one; an existing non-empty folder
is replaced only with `force`, and only when it is a tvr checkpoint; the new folder is built beside
it and moved into place whole (an old one is put back if that fails). Its querybank is the runs'
training captions, and it records each run's path, weights checksum and training recipe.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json, default_dir_mode, fsync_dir
from tvr.checksums import sha256_file
from tvr.errors import TvrError
from tvr.models.registry import CHECKPOINT_FORMAT, CONFIG_FILE, TRAINING_CAPTIONS_FILE, WEIGHTS_FILE, read_training_captions


def checked_out(out: Path, runs: Sequence[Path], force: bool, what: str) -> tuple[Path, list[Path]]:
    """(`out`, `runs`) resolved, once `out` is known to be a place the `what` may be written to."""
    out = Path(out).resolve()
    runs = [Path(r).resolve() for r in runs]
    for r in runs:
        if out == r or out in r.parents or r in out.parents:
            raise TvrError(f"{out}: is, holds or lies inside the run {r}; write the {what} elsewhere")
    if out.exists() and not out.is_dir():
        raise TvrError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise TvrError(f"{out}: exists and is not empty; pass --force to replace it")
        if config_doc(out / CONFIG_FILE).get("format") != CHECKPOINT_FORMAT:
            raise TvrError(f"{out}: is not a tvr checkpoint; --force replaces only a checkpoint folder")
    return out, runs


def member_records(runs: Sequence[Path]) -> list[dict[str, Any]]:
    """Per run: its path, the checksum of its weights and, if recorded, how it was trained."""
    records = []
    for r in runs:
        record: dict[str, Any] = {"run": str(r),
                                  "weights_sha256": sha256_file(r / WEIGHTS_FILE) if (r / WEIGHTS_FILE).is_file() else None}
        training = config_doc(r / CONFIG_FILE).get("training")
        if training is not None:
            record["training"] = training
        records.append(record)
    return records


def merged_captions(runs: Sequence[Path]) -> list[str]:
    """The runs' training captions: one run's list when they are all the same, else every list in
    turn, deduplicated ([] when no run has one)."""
    lists = [read_training_captions(r / TRAINING_CAPTIONS_FILE) for r in runs if (r / TRAINING_CAPTIONS_FILE).is_file()]
    if lists and all(c == lists[0] for c in lists):
        return lists[0]
    return list(dict.fromkeys(c for cs in lists for c in cs))


def publish(out: Path, fill: Callable[[Path], None], captions: Sequence[str]) -> None:
    """Build the checkpoint in a folder beside `out` (`fill` writes the model into it), then move it
    to `out` whole, replacing an old `out` (put back if the move fails)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = out.with_name(f".{out.name}.old")
    try:
        staging.chmod(default_dir_mode())  # mkdtemp's 0o700 would hide the checkpoint from other users
        fill(staging)
        if captions:
            atomic_write_json(staging / TRAINING_CAPTIONS_FILE, list(captions))
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        try:
            staging.rename(out)
        except BaseException:
            if old.exists() and not out.exists():
                old.rename(out)
            raise
        fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def config_doc(path: Path) -> dict[str, Any]:
    """A checkpoint's config.json as a dict ({} when missing or not a JSON object)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
