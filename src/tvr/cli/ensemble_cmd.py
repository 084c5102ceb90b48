"""`tvr ensemble` — fuse trained runs into one model (late fusion of their logits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr ensemble` to `app`."""

    @app.command("ensemble", cls=PlainFlagsCommand)
    def ensemble_command(
        runs: Annotated[list[Path], typer.Argument(help="Run directories written by 'tvr train' (two or more).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ensemble checkpoint.")],
        weights: Annotated[str | None, typer.Option("--weights", help="Comma-separated weight per run (default 1 each).")] = None,
        select_on: Annotated[Path | None, typer.Option("--select-on", help="Choose which runs to fuse (and their weights) by R@1 on this manifest's --split.")] = None,
        split: Annotated[str, typer.Option("--split", help="With --select-on: the split to choose on (all entries if the manifest is unsplit).")] = "val",
        bags: Annotated[int, typer.Option("--bags", help="With --select-on: 0 = forward selection, equal weights; N = bagged selection over N random halves of the videos, weights = picks.")] = 0,
        seed: Annotated[int, typer.Option("--seed", help="With --bags: which random halves.")] = 0,
        workers: Annotated[int, typer.Option("--workers", "-w", help="With --select-on: decode processes.")] = 2,
        device: Annotated[str, typer.Option("--device", help="With --select-on: cpu, cuda, cuda:N.")] = "cpu",
        force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    ) -> None:
        """Fuse trained runs into one model whose logits are the sum of theirs.

        The result is an ordinary checkpoint: `tvr eval`, `tvr index`, `tvr search` and `tvr serve`
        take it like a single run. Every run must be an inner-product model (meanP, seqTransf,
        MMT) sampling frames the same way; scores are weighted by each run's learned logit scale.
        With --select-on, only the runs that lift R@1 on held-out captions are fused (ensemble
        selection: forward, or bagged with --bags).
        """
        from tvr.cli.output import parse_weights, print_json
        from tvr.models.ensemble import write_ensemble

        parsed = parse_weights(weights, len(runs))
        selection = None
        if select_on is not None:
            selection = _select(runs, out, select_on, split, bags, seed, workers, device, force, weights, quiet=json_out)
            runs, parsed = list(selection.runs), selection.weights
        doc = write_ensemble(runs, out, parsed, force=force)
        if selection is not None:
            doc["selection"] = {"manifest": str(select_on), "split": split, "bags": bags, **selection.summary()}
        if json_out:
            print_json(doc)
        else:
            shares = ", ".join(f"{m['run']} ({m['method']}) {m['share']:.2f}" for m in doc["members"])
            if selection is not None:
                print(f"chosen on {select_on} ({split}, {selection.captions} captions): R@1 {selection.r1:.2f}; "
                      f"best run alone {max(selection.alone.values()):.2f}")
            print(f"wrote {out}: {shares}")


def _select(runs: list[Path], out: Path, manifest_path: Path, split: str, bags: int, seed: int, workers: int,
            device: str, force: bool, weights: str | None, quiet: bool):
    """`tvr.eval.selection.choose` on the manifest's split, after every argument is checked."""
    from tvr.devices import resolve_device
    from tvr.errors import TvrError
    from tvr.eval.selection import choose
    from tvr.io.manifest import SPLITS, read_manifest
    from tvr.models.assembled import checked_out
    from tvr.models.registry import read_checkpoint_config
    from tvr.train.trainer import FRAMES_DIR

    if weights is not None:
        raise TvrError("--weights and --select-on exclude each other: the selection sets the weights")
    if split not in SPLITS:
        raise TvrError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if bags < 0:
        raise TvrError(f"--bags must be 0 or more, got {bags}")
    checked_out(out, runs, force, "ensemble")  # before minutes of scoring
    for r in runs:
        read_checkpoint_config(r)  # every run a checkpoint, before the first is scored
    m = read_manifest(manifest_path)
    part = m if m.splits() == {None} else m.split(split)
    if not part.entries:
        raise TvrError(f"{manifest_path}: no entry has split {split!r}")
    selection = choose(runs, part, FRAMES_DIR, bags=bags, seed=seed, workers=workers, progress=not quiet, device=resolve_device(device))
    if len(selection.runs) < 2:
        raise TvrError(f"on {manifest_path} ({split}) no ensemble beats {selection.runs[0]} alone "
                       f"(R@1 {selection.r1:.2f}); use that run as it is")
    return selection
