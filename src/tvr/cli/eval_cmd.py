"""`tvr eval` — evaluate a trained checkpoint on a manifest split (optionally post-processed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr eval` to `app`."""

    @app.command("eval", cls=PlainFlagsCommand)
    def eval_command(
        manifest: Annotated[Path, typer.Argument(help="Manifest (JSONL/CSV) holding the split to evaluate.")],
        checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Run directory written by 'tvr train'.")],
        split: Annotated[str, typer.Option("--split", help="Split to evaluate (all entries if the manifest is unsplit).")] = "test",
        postproc: Annotated[str, typer.Option("--postproc", help="none, is, dis, csls, gc, cent, dsl, tvh.")] = "none",
        querybank: Annotated[Path | None, typer.Option("--querybank", help="Manifest whose captions form the querybank (default: the manifest's train captions).")] = None,
        beta: Annotated[float, typer.Option("--beta", help="IS/DIS inverse temperature (QB-Norm's 20 on cosine scores).")] = 20.0,
        k: Annotated[int | None, typer.Option("--k", help="DIS activation top-k [1] or CSLS neighbours [10].")] = None,
        ranks_out: Annotated[Path | None, typer.Option("--ranks-out", help="Write one JSON line per query (rank, top-5, tags).")] = None,
        report_html: Annotated[Path | None, typer.Option("--report", help="Write a self-contained HTML report (plots, worst queries with thumbnails, training curves).")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        rerank: Annotated[Path | None, typer.Option("--rerank", help="Re-ranker run (tvr train --first-stage) rescoring the top-K.")] = None,
        rerank_k: Annotated[int, typer.Option("--rerank-k", help="First-stage candidates per query the re-ranker rescores.")] = 15,
        workers: Annotated[int, typer.Option("--workers", "-w", help="Decode processes.")] = 2,
        force: Annotated[bool, typer.Option("--force", help="Overwrite --ranks-out / --report if they exist.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the metric JSON on stdout.")] = False,
    ) -> None:
        """Text→video and video→text metrics, hubness and per-tag metrics of a checkpoint."""
        from tvr.cli.output import check_querybank_flags, print_json
        from tvr.data.pairs import load_pairs
        from tvr.devices import resolve_device
        from tvr.errors import TvrError
        from tvr.eval.evaluate import coverage_of, evaluate_model
        from tvr.io.manifest import SPLITS, read_manifest
        from tvr.models.registry import load_model
        from tvr.postproc import get_postproc
        from tvr.progress import stderr_console
        from tvr.train.trainer import FRAMES_DIR

        if split not in SPLITS:
            raise TvrError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
        for out_file in (ranks_out, report_html):
            if out_file is not None and out_file.exists() and not force:
                raise TvrError(f"{out_file}: already exists (use --force to overwrite it)")
        entry = get_postproc(postproc)
        check_querybank_flags(beta, k)
        dev = resolve_device(device)
        two_stage = None
        if rerank is not None:
            from tvr.models.registry import first_stage_sha, load_reranker
            from tvr.postproc.two_stage import TwoStage

            if rerank_k < 1:
                raise TvrError(f"--rerank-k must be at least 1, got {rerank_k}")
            reranker, _, trained_on = load_reranker(rerank, device=dev)
            if first_stage_sha(checkpoint) != trained_on:
                raise TvrError(f"--rerank {rerank} was trained on other first-stage weights than {checkpoint}")
            two_stage = TwoStage(reranker, rerank_k, str(rerank))
        model = load_model(checkpoint, device=dev)
        if getattr(model, "reranker", False):
            raise TvrError(f"{checkpoint}: is a re-ranker; evaluate it as --rerank on top of its first stage")
        m = read_manifest(manifest)
        part = m if m.splits() == {None} else m.split(split)
        if not part.entries:
            raise TvrError(f"{manifest}: no entry has split {split!r}")
        qb_texts = None
        if entry.needs_querybank:
            qb = read_manifest(querybank) if querybank is not None else m.split("train")
            qb_texts = [e.caption for e in qb.entries]
            if not qb_texts:
                raise TvrError(f"--postproc {postproc} needs a querybank: pass --querybank MANIFEST ({manifest} has no train captions)")
        store = checkpoint / FRAMES_DIR
        with load_pairs(part, model.input_spec(), store, workers=workers, progress=not json_out) as pairs:
            coverage = coverage_of(part, pairs, store)
            if coverage.partial:
                # plain print: one line, never wrapped to the terminal's width
                print(f"warning: {coverage.warning()}", file=sys.stderr)
            report = evaluate_model(model, pairs, device=dev, postproc=postproc, querybank_texts=qb_texts,
                                    split=None if m.splits() == {None} else split, ranks_out=ranks_out,
                                    rerank=two_stage, coverage=coverage, report_html=report_html, run_dir=checkpoint,
                                    beta=beta, k=k)
        if json_out:
            print_json(report)
            return
        from tvr.eval.report import format_report_table

        console = stderr_console()
        console.print(format_report_table(report))
        if report_html is not None:
            console.print(f"report → {report_html}", markup=False, highlight=False)
        if "rerank" in report:
            first_t2v, rr = report["rerank"]["first_stage_t2v"], report["rerank"]
            console.print(f"  t2v re-ranked by {rr['method']} (top-{rr['k']}); first stage alone: R@1 {first_t2v['R@1']:.2f}  "
                          f"R@5 {first_t2v['R@5']:.2f}  R@10 {first_t2v['R@10']:.2f}  MdR {first_t2v['MdR']:.1f}")
        for tag, t2v in report.get("by_tag", {}).items():
            console.print(f"  tag {tag:<10} n={t2v['n_queries']:<5} t2v R@1 {t2v['R@1']:5.1f}  R@5 {t2v['R@5']:5.1f}  "
                          f"R@10 {t2v['R@10']:5.1f}  MdR {t2v['MdR']:.1f}")
