"""`tvr index` — build a searchable index of a folder or manifest of videos with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr index` to `app`."""

    @app.command("index", cls=PlainFlagsCommand)
    def index_command(
        source: Annotated[Path, typer.Argument(help="A folder of videos (searched recursively) or a manifest (its distinct clips).")],
        checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Run directory written by 'tvr train'.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or update.")],
        store: Annotated[Path | None, typer.Option("--store", help="Frame store to reuse/extend (default: RUN_DIR/frames).")] = None,
        querybank: Annotated[Path | None, typer.Option("--querybank", help="Manifest whose captions form the querybank (default: the checkpoint's training captions).")] = None,
        kind: Annotated[str, typer.Option("--kind", help="FAISS index: flat (exact), hnsw or ivf.")] = "flat",
        workers: Annotated[int, typer.Option("--workers", "-w", help="Decode processes.")] = 2,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        force: Annotated[bool, typer.Option("--force", help="Replace an index built with another model (or write into a non-empty folder).")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Decode (once, via the feature store), encode and index videos; failures are recorded and skipped."""
        from tvr.cli.output import print_json
        from tvr.index.build import BuildOptions, build_index
        from tvr.progress import stderr_console

        options = BuildOptions(kind=kind, store=store, querybank=querybank, workers=workers, device=device,
                               force=force, progress=not (quiet or json_out))
        report = build_index(source, checkpoint, out, options)
        if json_out:
            print_json(report.to_json())
            return
        if quiet:
            return
        console = stderr_console()
        bank = (f"querybank of {report.querybank_size} captions from {report.querybank_source}"
                if report.querybank_size else "no querybank (search offers no post-processing)")
        console.print(f"indexed {report.n_items} videos with {report.method} ({report.kind}) → {report.index_dir} "
                      f"in {report.elapsed_s:.1f} s; {bank}")
        if report.failed:
            console.print(f"[red]{len(report.failed)} videos skipped[/red]:")
            for f in report.failed[:20]:
                console.print(f"  {f['path']}: {f['error']}", markup=False, highlight=False)
            if len(report.failed) > 20:
                console.print(f"  … and {len(report.failed) - 20} more (see --json)")
