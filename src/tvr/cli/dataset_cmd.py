"""`tvr dataset` — turn a benchmark's official annotation files into a manifest; list benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand, PlainFlagsGroup, print_json
from tvr.progress import stderr_console


def register(app: typer.Typer) -> None:
    """Adds the `dataset` command group (`convert`, `list`) to `app`."""
    group = typer.Typer(
        name="dataset",
        help="Standard benchmarks: convert official annotation files into manifests.",
        no_args_is_help=True,
        cls=PlainFlagsGroup,
        rich_markup_mode="markdown",
    )
    group.command("convert", cls=PlainFlagsCommand)(convert)
    group.command("list", cls=PlainFlagsCommand)(list_datasets)
    app.add_typer(group, name="dataset")


def convert(
    name: Annotated[str, typer.Argument(help="Benchmark name (see 'tvr dataset list').")],
    annotations: Annotated[
        list[Path],
        typer.Option("--annotations", "-a", help="Official annotation file; repeat for several files."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (.jsonl, or .csv).")],
    split_list: Annotated[
        Path | None, typer.Option("--split-list", help="Official split/video list, where the benchmark uses one.")
    ] = None,
    videos: Annotated[
        Path | None,
        typer.Option("--videos", help="Folder holding the benchmark's videos; paths are resolved and checked."),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Write only this split (train, val or test).")] = None,
    keep_missing: Annotated[
        bool, typer.Option("--keep-missing", help="Keep lines whose video is not found under --videos.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Convert official annotation files of benchmark NAME into a manifest."""
    from tvr.eval.datasets.convert import ConvertRequest
    from tvr.eval.datasets.convert import convert as run_convert

    report = run_convert(ConvertRequest(
        dataset=name, annotations=tuple(annotations), out=out, split_list=split_list,
        videos=videos, split=split, keep_missing=keep_missing, force=force,
    ))
    console = stderr_console()
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if report.missing_videos:
        action = "kept" if keep_missing else f"skipped ({report.skipped_entries} lines)"
        console.print(
            f"warning: {report.missing_videos} videos not found under {videos}, {action}; "
            f"first: {', '.join(report.missing_examples)}",
            markup=False, highlight=False, soft_wrap=True,
        )
    if json_out:
        print_json(report.to_json())
        return
    per_split = ", ".join(f"{s or '-'}: {c['entries']} lines / {c['videos']} videos" for s, c in report.per_split.items())
    console.print(
        f"wrote {report.out}: {report.entries} lines, {report.videos} videos ({per_split})",
        markup=False, highlight=False, soft_wrap=True,
    )


def list_datasets(
    json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout.")] = False,
) -> None:
    """List the benchmarks `tvr dataset convert` knows and the files each one takes."""
    from rich.table import Table

    from tvr.eval.datasets.registry import DATASETS

    rows = [
        {
            "name": name,
            "summary": cls.summary,
            "splits": list(cls.splits),
            "annotations": cls.annotations_help,
            "split_list": cls.split_list_help or None,
        }
        for name, cls in DATASETS.items()
    ]
    if json_out:
        print_json(rows)
        return
    table = Table("name", "protocol", "splits")
    for row in rows:
        table.add_row(row["name"], row["summary"], ", ".join(row["splits"]))
    console = stderr_console()
    console.print(table)
    console.print("files each one takes: 'tvr dataset list --json' or the README's benchmark sections", markup=False)
