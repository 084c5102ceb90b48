"""The `tvr` command: wires every command module into one Typer app and maps user errors to exit 2.

Each module in `COMMAND_MODULES` exposes `register(app)`. Command modules import heavy libraries
(torch, av, faiss) inside the command body so `tvr --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

try:  # typer >= 0.29 vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer with click as a dependency
    from click import exceptions as click_exc

from tvr.cli import (
    dataset_cmd,
    demo_cmd,
    encoders_cmd,
    ensemble_cmd,
    eval_cmd,
    eval_scores_cmd,
    extract_cmd,
    index_cmd,
    pretrain_cmd,
    search_cmd,
    serve_cmd,
    soup_cmd,
    synth_cmd,
    train_cmd,
)
from tvr.cli.output import PlainFlagsCommand, PlainFlagsGroup
from tvr.errors import TvrError

COMMAND_MODULES = (
    demo_cmd,
    synth_cmd,
    extract_cmd,
    encoders_cmd,
    dataset_cmd,
    pretrain_cmd,
    train_cmd,
    ensemble_cmd,
    soup_cmd,
    eval_cmd,
    eval_scores_cmd,
    index_cmd,
    search_cmd,
    serve_cmd,
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="tvr",
        help="Text-video retrieval: search videos with natural language, evaluate and train retrieval models.",
        cls=PlainFlagsGroup,
        rich_markup_mode="markdown",  # docstrings' paragraphs reflow to the terminal's width
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root() -> None:
        """Text-video retrieval: search videos with natural language, evaluate and train retrieval models."""

    for module in COMMAND_MODULES:
        module.register(app)

    @app.command("version", cls=PlainFlagsCommand)
    def version() -> None:
        """Print the installed tvr version."""
        import tvr

        print(tvr.__version__)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error)."""
    app = build_app()
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="tvr", standalone_mode=False)
    except TvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except click_exc.UsageError as exc:
        hint = f" (see 'tvr {exc.ctx.info_name} --help')" if exc.ctx is not None and exc.ctx.parent else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except click_exc.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:  # e.g. `tvr … | head`: the reader left; nothing more to say
        sys.stderr.close()
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
