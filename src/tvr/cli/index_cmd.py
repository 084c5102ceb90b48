"""`tvr index` — build or update a searchable index of a folder or manifest of videos, with a
trained checkpoint or a pretrained CLIP used zero-shot."""

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
        out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or update.")],
        checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Run directory written by 'tvr train'.")] = None,
        model: Annotated[str | None, typer.Option("--model", "-m", help="Zero-shot instead: a pretrained CLIP (Hugging Face CLIPModel folder, open_clip folder, weights file, or open_clip name with --model-weights).")] = None,
        model_weights: Annotated[Path | None, typer.Option("--model-weights", help="State-dict file when --model is an open_clip name or config JSON.")] = None,
        tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Tokenizer folder when none sits beside the --model weights.")] = None,
        frames: Annotated[int, typer.Option("--frames", help="Zero-shot: frames per video (with --fps: the most per video).")] = 12,
        fps: Annotated[float | None, typer.Option("--fps", help="Zero-shot: sample frames at this rate instead of --frames spread evenly.")] = None,
        store: Annotated[Path | None, typer.Option("--store", help="Frame store to reuse/extend (default: RUN_DIR/frames; zero-shot: OUT/frames).")] = None,
        querybank: Annotated[Path | None, typer.Option("--querybank", help="Manifest, or text file of one caption a line, whose captions form the querybank (default: the checkpoint's training captions; zero-shot: none).")] = None,
        beta: Annotated[float, typer.Option("--beta", help="QB-Norm inverse temperature of the stored querybank statistics (IS/DIS), as tvr eval --beta.")] = 20.0,
        kind: Annotated[str, typer.Option("--kind", help="FAISS index: auto (by gallery size), flat (exact), hnsw, ivf, ivf-sq8 or ivf-pq.")] = "auto",
        shards: Annotated[int | None, typer.Option("--shards", help="Split the index into this many shards by the hash of each video's name (FAISS); search and serve merge them exactly. Default: as OUT is (1 for a new index).")] = None,
        ray: Annotated[str | None, typer.Option("--ray", help="Decode on Ray: 'local', 'auto' or a cluster address.")] = None,
        backend: Annotated[str, typer.Option("--backend", help="Where the vectors live: faiss (files in the index) or milvus (collections at --uri).")] = "faiss",
        uri: Annotated[str | None, typer.Option("--uri", help="Milvus: a milvus-lite file (./idx/milvus.db) or http://HOST:19530.")] = None,
        workers: Annotated[int, typer.Option("--workers", "-w", help="Decode processes.")] = 2,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        force: Annotated[bool, typer.Option("--force", help="Replace an index built with another model (or write into a non-empty folder).")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Decode (once, via the feature store), encode and index videos; failures are recorded and skipped.

        Re-running on the same source updates the index: only new or changed videos are encoded."""
        from tvr.cli.output import check_querybank_flags, print_json
        from tvr.errors import TvrError
        from tvr.index.build import BuildOptions, build_index
        from tvr.models.zero_shot import ZeroShotSpec
        from tvr.progress import stderr_console

        if (checkpoint is None) == (model is None):
            raise TvrError("pass exactly one of --checkpoint RUN_DIR (a trained model) or --model CLIP (zero-shot)")
        if checkpoint is not None and (fps is not None or frames != 12 or model_weights or tokenizer):
            raise TvrError("--frames, --fps, --model-weights and --tokenizer go with --model; a trained run samples as it was trained")
        source_model = checkpoint if model is None else ZeroShotSpec(
            model, weights=None if model_weights is None else str(model_weights),
            tokenizer=None if tokenizer is None else str(tokenizer), num_frames=frames, fps=fps,
        )
        check_querybank_flags(beta)
        options = BuildOptions(kind=kind, store=store, querybank=querybank, workers=workers, device=device,
                               force=force, progress=not (quiet or json_out), backend=backend, uri=uri, ray=ray, shards=shards,
                               beta=beta)
        report = build_index(source, source_model, out, options)
        if json_out:
            print_json(report.to_json())
            return
        if quiet:
            return
        console = stderr_console()
        bank = (f"querybank of {report.querybank_size} captions from {report.querybank_source}"
                if report.querybank_size else "no querybank (search offers no post-processing)")
        how = f"{report.method}, zero-shot" if report.zero_shot else report.method
        console.print(f"indexed {report.n_items} videos with {how} ({report.kind}) → {report.index_dir} "
                      f"in {report.elapsed_s:.1f} s: {report.n_encoded} encoded, {report.n_reused} unchanged, "
                      f"{report.n_dropped} dropped; {bank}")
        if report.failed:
            console.print(f"[red]{len(report.failed)} videos skipped[/red]:")
            for f in report.failed[:20]:
                console.print(f"  {f['path']}: {f['error']}", markup=False, highlight=False)
            if len(report.failed) > 20:
                console.print(f"  … and {len(report.failed) - 20} more (see --json)")
