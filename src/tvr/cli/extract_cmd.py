"""`tvr extract` — decode and encode a folder or manifest of videos into a feature store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tvr.cli.output import PlainFlagsCommand
from tvr.errors import TvrError

if TYPE_CHECKING:
    from tvr.features.extract import ClipJob, ExtractReport


def register(app: typer.Typer) -> None:
    """Adds `tvr extract` to `app`."""
    app.command("extract", cls=PlainFlagsCommand)(extract)


def extract(
    source: Annotated[Path, typer.Argument(help="Folder of videos (searched recursively) or a manifest (.jsonl/.csv).")],
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Video encoder name (see 'tvr encoders').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature store directory (created if missing).")],
    workers: Annotated[int, typer.Option(help="Decode worker processes.")] = 2,
    batch_videos: Annotated[int, typer.Option("--batch-videos", help="Videos per encoder batch (and per shard).")] = 16,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one video may take to decode before its worker is killed.")] = 120.0,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try again videos that failed in an earlier run.")] = False,
    device: Annotated[str | None, typer.Option(help="Device for the encoder, e.g. cpu or cuda.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Encoder option key=value (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ray: Annotated[str | None, typer.Option("--ray", help="Decode on Ray: 'local', 'auto' (the cluster 'ray start' runs) or an address (ray://HOST:10001).")] = None,
) -> None:
    """Extract features of every video in SOURCE into the store OUT (resumable; re-running skips done videos).

    Exit status: 0 when at least one video is extracted or up to date (failed videos are listed),
    1 when no video could be extracted (every one failed), 2 on a usage error.
    """
    from rich.markup import escape

    from tvr.cli.output import print_json
    from tvr.encoders.registry import create_video_encoder
    from tvr.features.extract import extract_features, plan_jobs
    from tvr.progress import stderr_console

    if not source.exists():
        raise TvrError(f"{source}: no such file or folder")
    jobs = plan_jobs(source)  # fail fast (empty folder, bad manifest) before loading the encoder
    options = parse_options(option or [])
    if device is not None:
        options["device"] = device
    enc = create_video_encoder(encoder, **options)
    report = extract_features(
        jobs, enc, out, workers=workers, batch_videos=batch_videos, timeout_s=timeout,
        progress=not quiet, retry_failed=retry_failed, ray=ray,
    )
    nothing = nothing_extracted(jobs, report)
    if as_json:
        print_json(report.to_json())
    if nothing is not None:
        print(f"error: {nothing}", file=sys.stderr)  # plain print: one line, never wrapped
        raise typer.Exit(1)
    if as_json:
        return
    console = stderr_console()
    console.print(
        f"{out}: {report.total} entries, {report.ok} ok, {len(report.failed)} failed; this run: "
        f"{report.extracted} extracted, {report.skipped} up to date ({report.elapsed_s:.1f} s)",
        soft_wrap=True, highlight=False, markup=False,
    )
    for f in report.failed[:20]:
        console.print(f"  [red]failed[/red] {escape(f['key'])}: {escape(f['error'])}", soft_wrap=True, highlight=False)
    if len(report.failed) > 20:
        console.print(f"  … and {len(report.failed) - 20} more (use --json for all)", soft_wrap=True)


def nothing_extracted(jobs: list[ClipJob], report: ExtractReport) -> str | None:
    """The exit-1 message when every video of this run has failed (now or in an earlier run), else None."""
    failed = {f["key"]: f for f in report.failed}
    keys = list(dict.fromkeys(job.key for job in jobs))
    if not keys or any(key not in failed for key in keys):
        return None
    first = failed[keys[0]]
    reason = first["error"] if first["path"] in first["error"] else f"{first['path']}: {first['error']}"
    reason = " ".join(reason.split())
    return f"nothing extracted: {len(keys)} of {len(keys)} videos failed (first: {reason})"


def parse_options(items: list[str]) -> dict[str, str]:
    """`key=value` strings → kwargs; the encoder registry converts the values to its config's types."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise TvrError(f"--option {item!r}: expected key=value")
        options[key] = value
    return options
