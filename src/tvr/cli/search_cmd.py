"""`tvr search` — query an index by text (ranked videos, scores and the best-matching moment), by
example (`--like`), or describe a video with a caption bank (`--describe`, video→text)."""

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
        text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
        like: Annotated[str | None, typer.Option("--like", help="More like this: an indexed video (its name or key as search lists it, or #ROW) or any video file.")] = None,
        describe: Annotated[str | None, typer.Option("--describe", help="Video→text: rank the --captions for this indexed video or video file.")] = None,
        captions: Annotated[Path | None, typer.Option("--captions", help="With --describe: a text file of one caption a line, or a manifest.")] = None,
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
        from tvr.index.search import SEARCH_POSTPROCS
        from tvr.index.sharded import open_index
        from tvr.progress import stderr_console

        if k < 1:
            raise TvrError(f"-k must be at least 1, got {k}")
        if sum(x is not None for x in (text, like, describe)) != 1:
            raise TvrError("give exactly one of: a TEXT query, --like VIDEO, or --describe VIDEO --captions FILE")
        if (describe is None) != (captions is None):
            raise TvrError("--describe VIDEO and --captions FILE go together")
        if text is None:
            by_example(index_dir, like, describe, captions, k, device, json_out)
            return
        if postproc not in SEARCH_POSTPROCS:
            from tvr.postproc import get_postproc

            get_postproc(postproc)  # unknown: one line listing the known names
            raise TvrError(f"--postproc {postproc} is not available in search; use one of {', '.join(SEARCH_POSTPROCS)}")
        if rerank is not None and rerank_k < 1:
            raise TvrError(f"--rerank-k must be at least 1, got {rerank_k}")
        searcher = open_index(index_dir, device=device)
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


def by_example(index_dir: Path, like: str | None, describe: str | None, captions: Path | None, k: int, device: str,
               json_out: bool) -> None:
    """`--like` (video→videos) or `--describe` (video→captions)."""
    from rich.table import Table

    from tvr.cli.output import print_json
    from tvr.index.querybank_texts import querybank_captions
    from tvr.index.sharded import open_index
    from tvr.progress import stderr_console

    bank = querybank_captions(captions, None, {})[0] if captions is not None else []  # bad file: before loading the model
    searcher = open_index(index_dir, device=device)
    try:
        if like is not None:
            hits = searcher.like(like, k=k)
        else:
            described = searcher.describe(describe, bank, k=k)
    finally:
        searcher.close()
    if like is not None:
        if json_out:
            print_json({"like": like, "index": str(index_dir), "method": searcher.info.method, "k": k,
                        "n_gallery": len(searcher), "hits": [h.to_json() for h in hits]})
            return
        table = Table(title=f"more like {like} — top {len(hits)} of {len(searcher)}", title_justify="left")
        for col, just in (("#", "right"), ("similarity", "right"), ("video", "left")):
            table.add_column(col, justify=just)
        for h in hits:
            table.add_row(str(h.rank), f"{h.score:.4f}", h.item.name)
    else:
        if json_out:
            print_json({"describe": describe, "index": str(index_dir), "method": searcher.info.method, "k": k,
                        "n_captions": len(bank),
                        "captions": [{"rank": r, "caption": c, "similarity": s} for r, c, s in described]})
            return
        table = Table(title=f"{describe} — top {len(described)} of {len(bank)} captions", title_justify="left")
        for col, just in (("#", "right"), ("similarity", "right"), ("caption", "left")):
            table.add_column(col, justify=just)
        for r, c, s in described:
            table.add_row(str(r), f"{s:.4f}", c)
    stderr_console().print(table)
