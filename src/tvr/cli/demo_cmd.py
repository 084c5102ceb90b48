"""`tvr demo` — the README's offline main job, end to end, with no arguments needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr demo` to `app`."""

    @app.command("demo", cls=PlainFlagsCommand)
    def demo_command(
        out: Annotated[Path, typer.Option("--out", help="Working folder (reused: an interrupted demo resumes).")] = Path("demo-out"),
        videos: Annotated[int, typer.Option("--videos", help="Synthetic videos to generate.")] = 300,
        epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 10,
        method: Annotated[str, typer.Option("--method", help="Retrieval method to train.")] = "clip4clip-meanp",
        config: Annotated[Path | None, typer.Option("--config", help="A 'tvr train --config' JSON file.")] = None,
        checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Use this trained run instead of training.")] = None,
        zero_shot: Annotated[bool, typer.Option("--zero-shot", help="Train nothing: index with the pretrained synthetic CLIP as it is (as 'tvr index --model' does).")] = False,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        pretrain_steps: Annotated[int, typer.Option("--pretrain-steps", help="Steps of the demo's own synthetic backbone (built once, cached).")] = 150,
        json_out: Annotated[bool, typer.Option("--json", help="Print the demo report as JSON on stdout.")] = False,
    ) -> None:
        """Generate a synthetic collection, train a model, index it, search it by text, and evaluate it."""
        from rich.table import Table

        from tvr.cli.output import print_json
        from tvr.demo import DemoConfig, run_demo
        from tvr.errors import TvrError
        from tvr.eval.report import format_report_table
        from tvr.progress import stderr_console

        if config is not None and not config.is_file():
            raise TvrError(f"{config}: config file not found")
        if checkpoint is not None and not (checkpoint / "config.json").is_file():
            raise TvrError(f"{checkpoint}: not a trained run (no config.json)")
        if epochs < 1:
            raise TvrError(f"--epochs must be at least 1, got {epochs}")
        if pretrain_steps < 1:
            raise TvrError(f"--pretrain-steps must be at least 1, got {pretrain_steps}")
        console = stderr_console()
        report = run_demo(
            DemoConfig(out=out, videos=videos, seed=seed, method=method, epochs=epochs, config_file=config,
                       checkpoint=checkpoint, pretrain_steps=pretrain_steps, zero_shot=zero_shot),
            log=lambda msg: console.print(f"[bold]{msg}[/bold]"),
        )
        if json_out:
            print_json(report)
            return
        for ex in report["examples"]:
            table = Table(title=f"“{ex['query']}”  (tags: {', '.join(ex['tags']) or '-'})", title_justify="left")
            for col in ("#", "score", "moment (s)", "video", ""):
                table.add_column(col)
            for h in ex["hits"]:
                moment = "-" if h["moment"] is None else f"{h['moment']['time_s']:.2f}"
                mark = "✔ described video" if h["video"] == ex["expected"] else ""
                table.add_row(str(h["rank"]), f"{h['score']:.3f}", moment, Path(h["video"]).name, mark)
            console.print(table)
        console.print(
            f"search: the described video is in the top {report['config']['top_k']} for "
            f"{report['search_top_k_hit_rate']:.1f} % of {report['n_search_queries']} test captions"
        )
        for name, metrics in report["metrics"].items():
            console.print(format_report_table(metrics))
        t = report["timings_s"]
        console.print("time (s): " + ", ".join(f"{k[:-2]} {v}" for k, v in t.items()))
        console.print(f"index: {report['index_dir']} — try: tvr search {report['index_dir']} \"a red circle moves left\"")
