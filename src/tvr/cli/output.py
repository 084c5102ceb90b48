"""Where CLI output goes: human tables and progress to stderr, `--json` documents to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from typer.core import TyperCommand, TyperGroup


def print_json(doc: Any) -> None:
    """One JSON document on stdout (machine-readable output of `--json`)."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def check_querybank_flags(beta: float, k: int | None = None) -> None:
    """`--beta` / `--k` of the querybank post-processors, checked before any model loads (one line, exit 2)."""
    import math

    from tvr.errors import TvrError

    if not math.isfinite(beta) or beta <= 0:
        raise TvrError(f"--beta must be a positive number, got {beta}")
    if k is not None and k < 1:
        raise TvrError(f"--k must be at least 1, got {k}")


def parse_weights(weights: str | None, n_runs: int) -> tuple[float, ...]:
    """`--weights` of `tvr ensemble` / `tvr soup`: one positive number per run, comma-separated
    (() when not given: 1 each). Checked before any model loads (one line, exit 2)."""
    import math

    from tvr.errors import TvrError

    if n_runs < 2:
        raise TvrError(f"give at least two runs, got {n_runs}")
    if weights is None:
        return ()
    try:
        parsed = tuple(float(w) for w in weights.split(","))
    except ValueError:
        raise TvrError(f"--weights {weights!r}: expected comma-separated numbers") from None
    if len(parsed) != n_runs:
        raise TvrError(f"--weights has {len(parsed)} values for {n_runs} runs")
    if not all(math.isfinite(w) and w > 0 for w in parsed):
        raise TvrError(f"--weights {weights!r}: every weight must be finite and > 0")
    return parsed


def _hide_flag_types(params: list[Any]) -> None:
    # typer 0.29's rich help prints every flag's type (`--json <bool>`, even `--help <bool>`), which
    # reads as if the flag took a value; an empty metavar leaves the type column blank.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class PlainFlagsCommand(TyperCommand):
    """A command whose --help lists flags without a type (`app.command(name, cls=PlainFlagsCommand)`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


class PlainFlagsGroup(TyperGroup):
    """A command group whose --help lists flags without a type (`typer.Typer(cls=PlainFlagsGroup)`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)
