"""`tvr train` — train a retrieval method on a manifest's train split into a run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr train` to `app`."""

    @app.command("train", cls=PlainFlagsCommand)
    def train_command(
        manifest: Annotated[Path, typer.Argument(help="Manifest (JSONL/CSV); trains on split 'train' (all entries if unsplit).")],
        method: Annotated[str, typer.Option("--method", "-m", help="Method name, e.g. clip4clip-meanp, clip4clip-seqtransf.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (checkpoint, metrics.jsonl, frame cache).")],
        epochs: Annotated[int | None, typer.Option("--epochs", help="Number of epochs (default: the preset's).")] = None,
        config: Annotated[Path | None, typer.Option("--config", help='JSON: {"preset": NAME, "model": {...}, "train": {...}}.')] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last finished epoch.")] = False,
        resume_previous: Annotated[bool, typer.Option("--resume-previous", help="Like --resume, but from the epoch before the last (when the last checkpoint is damaged).")] = False,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the preset's, 0); soup members add their seed_offset.")] = None,
        first_stage: Annotated[Path | None, typer.Option("--first-stage", help="First-stage run (re-rankers only).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
        ddp: Annotated[int, typer.Option("--ddp", help="Train with N processes on this machine (torchrun; gloo on CPU, nccl on GPU).")] = 1,
    ) -> None:
        """Train a model; checkpoints after every epoch, validation metrics in RUN/metrics.jsonl. A recipe
        with soup members (train.soup: MMT's default) trains each into RUN/members/N and
        writes their weight average as RUN's model."""
        from tvr.cli.output import print_json
        from tvr.errors import TvrError
        from tvr.models.registry import lookup
        from tvr.progress import stderr_console
        from tvr.train.trainer import train

        is_reranker = bool(getattr(lookup(method)[0], "reranker", False))
        if first_stage is not None and not is_reranker:
            raise TvrError(f"--first-stage is only for re-ranking methods; {method!r} takes none")
        resume = resume or resume_previous
        if resume and config is not None:
            raise TvrError("--resume continues with the run's saved config; drop --config")
        if ddp < 1:
            raise TvrError(f"--ddp must be at least 1, got {ddp}")
        if ddp > 1:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise TvrError("--ddp starts torchrun itself; under torchrun, drop it")
            if not manifest.is_file():
                raise TvrError(f"{manifest}: manifest not found")
            args = [str(manifest), "--method", method, "--out", str(out), "--device", device]
            args += ["--first-stage", str(first_stage)] if first_stage is not None else []
            args += ["--epochs", str(epochs)] if epochs is not None else []
            args += ["--config", str(config)] if config is not None else []
            args += ["--seed", str(seed)] if seed is not None else []
            args += ["--resume-previous"] if resume_previous else ["--resume"] if resume else []
            args += ["--json"] if json_out else []
            args += ["--quiet"] if quiet else []
            code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    f"--nproc_per_node={ddp}", "-m", "tvr", "train", *args])
            if code != 0:
                raise TvrError(f"distributed training with {ddp} processes failed (exit code {code}; see above)")
            return
        if is_reranker:
            from tvr.train.rerank_trainer import train_rerank

            result = train_rerank(manifest, method, out, first_stage=first_stage, config_file=config, epochs=epochs,
                                  device=device, resume=resume, resume_previous=resume_previous, seed=seed,
                                  progress=not quiet)
        else:
            result = train(manifest, method, out, config_file=config, epochs=epochs, device=device,
                           resume=resume, resume_previous=resume_previous, seed=seed, progress=not quiet)
        if int(os.environ.get("RANK", "0")) != 0:
            return  # rank 0 reports
        last = result.history[-1] if result.history else {}
        if json_out:
            print_json({"run_dir": str(result.run_dir), "method": method, "epochs": result.epochs,
                        "elapsed_s": round(result.elapsed_s, 2), "last": last})
        elif not quiet:
            stderr_console().print(f"trained {method} → {result.run_dir} in {result.elapsed_s:.1f} s")
