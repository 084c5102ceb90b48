"""The HTTP API and web page over one index (`tvr serve`).

Endpoints: `GET /` (the search page), `GET /api/info`, `GET /api/search?q=…&k=…&postproc=…`,
`GET /api/like?row=…&k=…` (more like an indexed video; by row only, so a request can never make the
server decode a file of its choosing),
`GET /api/thumbnail/{row}?t=…` (JPEG of an indexed video at a time), `GET /api/video/{row}` (the
indexed file itself, with range requests for seeking). Files are served only by gallery row, so a
request can never name a path outside what was indexed. Every input is validated and bounded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvr.errors import TvrError

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServeLimits:
    max_query_chars: int = 500
    max_k: int = 100
    thumbnail_px: int = 256


def create_app(index_dir: str | Path, *, device: str = "cpu", limits: ServeLimits = ServeLimits()) -> Any:
    """A FastAPI app serving `index_dir`; the index is opened once, searches are serialised."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, Response

    from tvr.index.search import Searcher
    from tvr.io.thumbs import thumbnail_jpeg
    from tvr.io.video import DecodeError

    searcher = Searcher.open(index_dir, device=device)
    lock = threading.Lock()  # one model + one SQLite handle: searches run one at a time
    app = FastAPI(title="tvr", summary="Text-video retrieval over one index")
    app.state.searcher = searcher

    def item(row: int):
        if not 0 <= row < len(searcher):
            raise HTTPException(404, f"no gallery row {row}; the index holds {len(searcher)} videos")
        with lock:
            (found,) = searcher.items.get([row])
        return found

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"index": str(Path(index_dir)), "method": searcher.info.method, "n_videos": len(searcher),
                "postprocs": searcher.postprocs, "max_k": limits.max_k}

    @app.get("/api/search")
    def search(
        q: str = Query(..., min_length=1, max_length=limits.max_query_chars, description="What to look for"),
        k: int = Query(10, ge=1, le=limits.max_k),
        postproc: str = Query("none"),
    ) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(422, "the query is empty")
        if postproc not in searcher.postprocs:
            raise HTTPException(422, f"postproc must be one of {', '.join(searcher.postprocs)}")
        try:
            with lock:
                (hits,) = searcher.search([q], k=k, postproc=postproc)
        except TvrError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"query": q, "postproc": postproc, "n_videos": len(searcher),
                "hits": [{**h.to_json(), "row": h.row} for h in hits]}

    @app.get("/api/like")
    def like(row: int = Query(..., ge=0, description="Gallery row of the example video"),
             k: int = Query(10, ge=1, le=limits.max_k)) -> dict[str, Any]:
        example = item(row)
        with lock:
            hits = searcher.like(f"#{row}", k=k)
        return {"like": {"row": row, "video": example.name}, "n_videos": len(searcher),
                "hits": [{**h.to_json(), "row": h.row} for h in hits]}

    @app.get("/api/thumbnail/{row}")
    def thumbnail(row: int, t: float = Query(0.0, ge=0.0, le=86_400.0)) -> Response:
        found = item(row)
        try:
            data = thumbnail_jpeg(found.path, t, size=limits.thumbnail_px)
        except (DecodeError, FileNotFoundError) as exc:
            raise HTTPException(404, f"cannot read video for row {row}: {exc}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/video/{row}")
    def video(row: int) -> FileResponse:
        found = item(row)
        path = Path(found.path)
        if not path.is_file():
            raise HTTPException(404, f"the video of row {row} is no longer on disk")
        return FileResponse(path)

    @app.on_event("shutdown")
    def _close() -> None:
        searcher.close()

    return app
