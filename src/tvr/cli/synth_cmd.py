"""`tvr synth` — generate the synthetic video collection (DESIGN §6)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr synth` to `app`."""
    app.command("synth", cls=PlainFlagsCommand)(synth)


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create (must be empty unless --force)."),
    videos: int = typer.Option(..., "--videos", "-n", help="Number of videos, 1..100000 (by default 80/10/10 train/val/test)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same collection."),
    size: int = typer.Option(64, "--size", help="Frame side in pixels: even, 16..1024, size² × frames ≤ 33554432."),
    seconds: float = typer.Option(3.0, "--seconds", help="Duration of each video (at most 600 s)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second, at most 120 (2..3600 frames per video)."),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes (default: all cores)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of the videos in the val split, [0, 0.5]."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of the videos in the test split, [0, 0.5]."),
    group_size: int = typer.Option(2, "--group-size", help="Test near-duplicates in pairs (2) or groups of four (4: base, order, sound, small object)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty OUT_DIR."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Generate synthetic videos (coloured moving shapes with sounds) with captions and splits."""
    from tvr.cli.output import print_json
    from tvr.errors import TvrError
    from tvr.progress import ProgressReport, stderr_console
    from tvr.synth.generate import RenderConfig, check_limits, generate
    from tvr.synth.world import WorldConfig

    if workers is not None and workers < 1:
        raise TvrError(f"--workers must be at least 1, got {workers}")
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= value <= 0.5:
            raise TvrError(f"{flag} must be in [0, 0.5], got {value:g}")
    if group_size not in (2, 4):
        raise TvrError(f"--group-size must be 2 or 4, got {group_size}")
    world = WorldConfig(videos=videos, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, group_size=group_size)
    render = RenderConfig(size=size, seconds=seconds, fps=fps)
    check_limits(world, render)  # before the progress bar appears
    console = stderr_console()
    with ProgressReport("synth", videos, "videos", transient=True, console=console) as report:
        summary = generate(
            out_dir, world, render, workers=workers, force=force, on_progress=lambda done, _total: report.update(done),
        )
    if as_json:
        print_json(asdict(summary))
        return
    parts = ", ".join(f"{k} {v['videos']} videos / {v['captions']} captions" for k, v in summary.splits.items())
    console.print(
        f"wrote {summary.videos} videos to {summary.out_dir} ({parts}) "
        f"in {summary.elapsed_s:.1f} s = {summary.videos_per_s:.1f} videos/s with {summary.workers} workers",
        soft_wrap=True,
    )
