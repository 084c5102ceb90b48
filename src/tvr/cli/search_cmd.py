"""`tvr search` — query an index by text: ranked videos, scores and the best-matching moment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr search` to `app`."""

    @app.command("search", cls=PlainFlagsCommand)
    def search_command(
        index_dir: Annotated[Path, typer.Argument(help="Index directory written by 'tvr index'.")],
        text: Annotated[str, typer.Argument(help="What to look for, in words.")],
        k: Annotated[int, typer.Option("-k", "--top", help="Number of results.")] = 10,
        postproc: Annotated[str, typer.Option("--postproc", help="none, is, dis, csls, gc, cent (needs the index's querybank).")] = "none",
        rerank: Annotated[Path | None, typer.Option("--rerank", help="Re-ranker run (tvr train --first-stage) rescoring the top-K.")] = None,
        rerank_k: Annotated[int, typer.Option("--rerank-k", help="First-stage candidates the re-ranker rescores.")] = 15,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    ) -> None:
        """Ranked videos for a text query, each with its score and best-matching moment (seconds)."""
        from tvr.cli.output import print_json
        from tvr.errors import TvrError
        from tvr.index.search import SEARCH_POSTPROCS, Searcher
        from tvr.progress import stderr_console

        if k < 1:
            raise TvrError(f"-k must be at least 1, got {k}")
        if postproc not in SEARCH_POSTPROCS:
            from tvr.postproc import get_postproc

            get_postproc(postproc)  # unknown: one line listing the known names
            raise TvrError(f"--postproc {postproc} is not available in search; use one of {', '.join(SEARCH_POSTPROCS)}")
        if rerank is not None and rerank_k < 1:
            raise TvrError(f"--rerank-k must be at least 1, got {rerank_k}")
        searcher = Searcher.open(index_dir, device=device)
        try:
            if rerank is None:
                (hits,) = searcher.search([text], k=k, postproc=postproc)
            else:
                from tvr.index.rerank_searcher import RerankSearcher

                (hits,) = RerankSearcher.open(searcher, rerank, rerank_k).search([text], k=k, postproc=postproc)
        finally:
            searcher.close()
        if json_out:
            doc = {"query": text, "index": str(index_dir), "method": searcher.info.method, "postproc": postproc,
                   "transductive": False, "k": k, "n_gallery": len(searcher), "hits": [h.to_json() for h in hits]}
            if rerank is not None:
                doc["rerank"] = {"run_dir": str(rerank), "k": rerank_k}
            print_json(doc)
            return
        from rich.table import Table

        table = Table(title=f"{text!r} — top {len(hits)} of {len(searcher)} ({postproc})", title_justify="left")
        for col, just in (("#", "right"), ("score", "right"), ("moment", "right"), ("video", "left")):
            table.add_column(col, justify=just)
        for h in hits:
            m = h.moment
            moment = "-" if m is None else f"{m.time_s:.2f} s ({m.start_s:.2f}–{m.end_s:.2f})"
            table.add_row(str(h.rank), f"{h.score:.4f}", moment, h.item.name)
        stderr_console().print(table)
