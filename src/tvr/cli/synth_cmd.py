"""`tvr synth` — generate the synthetic video collection (DESIGN §6)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Adds `tvr synth` to `app`."""
    app.command("synth")(synth)


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create (must be empty unless --force)."),
    videos: int = typer.Option(..., "--videos", "-n", help="Number of videos (split 80/10/10 train/val/test)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same collection."),
    size: int = typer.Option(64, "--size", help="Frame side in pixels (even)."),
    seconds: float = typer.Option(3.0, "--seconds", help="Duration of each video."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second."),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes (default: all cores)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty OUT_DIR."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Generate synthetic videos (coloured moving shapes with sounds) with captions and splits."""
    from tvr.cli.output import print_json, stderr_console
    from tvr.errors import TvrError
    from tvr.eval.synthetic.generate import RenderConfig, generate
    from tvr.eval.synthetic.world import WorldConfig

    if workers is not None and workers < 1:
        raise TvrError(f"--workers must be at least 1, got {workers}")
    console = stderr_console()
    with console.status("rendering videos…") as status:
        def progress(done: int, total: int) -> None:
            status.update(f"rendering videos… {done}/{total}")

        summary = generate(
            out_dir, WorldConfig(videos=videos, seed=seed), RenderConfig(size=size, seconds=seconds, fps=fps),
            workers=workers, force=force, on_progress=progress,
        )
    if as_json:
        print_json(asdict(summary))
        return
    parts = ", ".join(f"{k} {v['videos']} videos / {v['captions']} captions" for k, v in summary.splits.items())
    console.print(
        f"wrote {summary.videos} videos to {summary.out_dir} ({parts}) "
        f"in {summary.elapsed_s:.1f} s = {summary.videos_per_s:.1f} videos/s with {summary.workers} workers"
    )
