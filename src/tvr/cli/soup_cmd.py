"""`tvr soup` — average the weights of runs fine-tuned from the same start into one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr soup` to `app`."""

    @app.command("soup", cls=PlainFlagsCommand)
    def soup_command(
        runs: Annotated[list[Path], typer.Argument(help="Run directories written by 'tvr train' (two or more).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the averaged checkpoint.")],
        weights: Annotated[str | None, typer.Option("--weights", help="Comma-separated weight per run (default 1 each).")] = None,
        any_start: Annotated[bool, typer.Option("--any-start", help="Average runs even when their checkpoints do not record "
                                                "one common start (pretrained model, recipe, seed).")] = False,
        force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    ) -> None:
        """Average the weights of runs fine-tuned from the same start ("model soup") into one model.

        The result is an ordinary checkpoint of the runs' method and costs what one run costs:
        `tvr eval`, `tvr index`, `tvr search` and `tvr serve` take it like a single run. The runs must
        share the method, the model config and the start they were fine-tuned from (`train.init`, the
        pretrained backbone's recipe, and the seed when nothing else was loaded).
        """
        from tvr.cli.output import parse_weights, print_json
        from tvr.models.soup import write_soup

        doc = write_soup(runs, out, parse_weights(weights, len(runs)), force=force, allow_any_start=any_start)
        if json_out:
            print_json(doc)
        else:
            shares = ", ".join(f"{m['run']} {m['share']:.2f}" for m in doc["members"])
            print(f"wrote {out} ({doc['method']}): {shares}")
