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
        force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    ) -> None:
        """Fuse trained runs into one model whose logits are the sum of theirs.

        The result is an ordinary checkpoint: `tvr eval`, `tvr index`, `tvr search` and `tvr serve`
        take it like a single run. Every run must be an inner-product model (meanP, seqTransf,
        MMT) sampling frames the same way; scores are weighted by each run's learned logit scale.
        """
        from tvr.cli.output import parse_weights, print_json
        from tvr.models.ensemble import write_ensemble

        parsed = parse_weights(weights, len(runs))
        doc = write_ensemble(runs, out, parsed, force=force)
        if json_out:
            print_json(doc)
        else:
            shares = ", ".join(f"{m['run']} ({m['method']}) {m['share']:.2f}" for m in doc["members"])
            print(f"wrote {out}: {shares}")
