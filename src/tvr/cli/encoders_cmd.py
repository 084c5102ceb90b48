"""`tvr encoders` — list the registered video and text encoders, their outputs and options."""

from __future__ import annotations

import json

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr encoders` to `app`."""

    @app.command("encoders", cls=PlainFlagsCommand)
    def encoders(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of a table."),
    ) -> None:
        """List the registered encoders (video: features per video; text: captions) and their options."""
        from rich.table import Table

        from tvr.cli.output import print_json
        from tvr.encoders.registry import describe_encoders
        from tvr.progress import stderr_console

        rows = describe_encoders()
        if as_json:
            print_json(rows)
            return
        table = Table(title="encoders")
        for column in ("name", "kind", "outputs", "options (defaults)", "summary"):
            table.add_column(column, overflow="fold")
        for row in rows:
            options = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["options"].items())
            table.add_row(row["name"], row["kind"], "\n".join(row["outputs"]), options, row["summary"])
        stderr_console().print(table)
