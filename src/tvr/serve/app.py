"""The HTTP API and web page over one index (`tvr serve`).

Endpoints (every one documented at `/openapi.json`):

- `GET /` the search page; `GET /api/info` what the index holds;
- `GET /api/search?q=…&k=…&postproc=…` ranked videos with the best-matching moment;
- `GET /api/like?row=…&k=…` more like an indexed video; `GET /api/describe?row=…&k=…` video→text
  against the index's querybank captions (by row only: a request never names a file to decode);
- `GET|HEAD /api/thumbnail/{row}?t=…` a JPEG at a time (cached in memory, bounded);
- `GET|HEAD /api/video/{row}` the indexed file itself, with range requests, served only while it is
  still the file that was indexed (`tvr.serve.files`);
- `GET /healthz` (the process answers), `GET /readyz` (the index files are still the ones opened;
  `?deep=1` re-checks every sha256), `GET /metrics` (Prometheus text format).

Responses name videos by gallery row and name, never by a path on the server's disk, unless the
server was started with `show_paths`. Storage failures (a damaged `items.sqlite`) answer 503 with a
reason; invalid input answers 422 without echoing the input.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from tvr.errors import TvrError

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("tvr.serve")

SCORE_MEANING = {
    "none": "cosine similarity of the caption and the video (-1 to 1; higher is better)",
    "is": "QB-Norm inverted softmax: beta x cosine minus the log of the video's summed exp(beta x cosine) over the "
          "querybank; a relative score, negative values are normal, higher is better",
    "dis": "QB-Norm dynamic inverted softmax: the inverted softmax for videos that are some querybank caption's "
           "best match, beta x cosine otherwise; relative, higher is better",
    "csls": "CSLS: 2 x cosine minus the mean of the video's top querybank cosines; relative, higher is better",
    "gc": "globally centred rank: the share of querybank captions this query beats for the video (0 to 1)",
    "cent": "centred cosine: cosine minus the video's mean querybank cosine; relative, higher is better",
}


@dataclass(frozen=True)
class ServeLimits:
    max_query_chars: int = 500
    max_k: int = 100
    thumbnail_px: int = 256
    thumbnail_cache: int = 512  # JPEGs kept in memory, least recently used dropped first
    max_error_chars: int = 200  # longest validation message echoed in a 422


def create_app(
    index_dir: str | Path, *, device: str = "cpu", limits: ServeLimits = ServeLimits(), show_paths: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """A FastAPI app serving `index_dir`; the index is opened once, searches are serialised.

    `allowed_hosts`: when given, requests whose Host header names another host are refused (400),
    against DNS rebinding when the server listens beyond loopback."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from tvr.index.items import ItemStorageError
    from tvr.index.sharded import open_index
    from tvr.io.thumbs import thumbnail_jpeg
    from tvr.io.video import DecodeError
    from tvr.serve.files import NotServable, open_indexed
    from tvr.serve.metrics import Metrics

    root = Path(index_dir)
    searcher = open_index(root, device=device)
    lock = threading.Lock()  # one model + one SQLite handle: searches run one at a time
    snapshot = _file_snapshot(searcher)
    thumbs = _LruBytes(limits.thumbnail_cache)
    metrics = Metrics(n_videos=len(searcher), method=searcher.info.method, kind=searcher.kind)
    app = FastAPI(title="tvr", summary="Text-video retrieval over one index")
    app.state.searcher = searcher
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    def public(text: str) -> str:
        """An error text without the server's absolute paths (unless --show-paths)."""
        if show_paths:
            return text
        return text.replace(str(root.resolve()), root.name).replace(str(root), root.name)

    def hit_json(hit: Any) -> dict[str, Any]:
        doc = {**hit.to_json(), "row": hit.row}
        if not show_paths:
            doc.pop("path", None)
            doc.pop("key", None)
        return doc

    def item(row: int):
        if not 0 <= row < len(searcher):
            raise HTTPException(404, f"no gallery row {row}; the index holds {len(searcher)} videos")
        with lock:
            (found,) = searcher.items.get([row])
        return found

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "unmatched"), request.method, response.status_code, time.perf_counter() - t0)
        return response

    @app.exception_handler(ItemStorageError)
    async def storage_error(request: Request, exc: ItemStorageError) -> JSONResponse:
        log.error("storage error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"index storage error: {public(str(exc))}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[: limits.max_error_chars],
                   "type": e.get("type")} for e in exc.errors()]  # never the input itself: it can be huge
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(deep: bool = Query(False, description="also re-check every file's sha256")) -> JSONResponse:
        """The index files are still the ones opened (sizes, mtimes; with deep=1 also sha256 and SQLite's check)."""
        problem = _changed_since(snapshot)
        if problem is None and deep:
            try:
                with lock:
                    searcher.verify()
            except TvrError as exc:
                problem = str(exc)
        if problem is not None:
            return JSONResponse({"ready": False, "reason": public(problem)}, status_code=503)
        return JSONResponse({"ready": True, "n_videos": len(searcher)})

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"index": str(root.resolve()) if show_paths else root.name, "method": searcher.info.method,
                "n_videos": len(searcher), "postprocs": searcher.postprocs, "max_k": limits.max_k,
                "describe": bool(searcher.bank_captions()), "score_meaning": {p: SCORE_MEANING[p] for p in searcher.postprocs}}

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
        except ItemStorageError:
            raise
        except TvrError as exc:
            raise HTTPException(422, public(str(exc))) from None
        return {"query": q, "postproc": postproc, "score_meaning": SCORE_MEANING[postproc], "n_videos": len(searcher),
                "hits": [hit_json(h) for h in hits]}

    @app.get("/api/like")
    def like(row: int = Query(..., ge=0, description="Gallery row of the example video"),
             k: int = Query(10, ge=1, le=limits.max_k)) -> dict[str, Any]:
        example = item(row)
        with lock:
            hits = searcher.like(f"#{row}", k=k)
        return {"like": {"row": row, "video": example.name}, "n_videos": len(searcher),
                "score_meaning": "similarity of the two videos' embeddings (1 = the same video)",
                "hits": [hit_json(h) for h in hits]}

    @app.get("/api/describe")
    def describe(row: int = Query(..., ge=0, description="Gallery row of the video to describe"),
                 k: int = Query(10, ge=1, le=limits.max_k)) -> dict[str, Any]:
        example = item(row)
        captions = searcher.bank_captions()
        if not captions:
            raise HTTPException(404, "this index stores no captions to describe videos with (build it with --querybank)")
        with lock:
            ranked = searcher.describe(f"#{row}", captions, k=k)
        return {"describe": {"row": row, "video": example.name}, "n_captions": len(captions),
                "captions": [{"rank": r, "caption": c, "similarity": s} for r, c, s in ranked]}

    def thumbnail(row: int, t: float = Query(0.0, ge=0.0, le=86_400.0)) -> Response:
        found = item(row)
        key = (row, round(t, 3))
        data = thumbs.get(key)
        if data is None:
            try:
                opened = open_indexed(found)
            except NotServable as exc:
                log.warning("thumbnail of row %d refused: %s", row, exc)
                raise HTTPException(404, f"the video of row {row} is not available") from None
            try:
                data = thumbnail_jpeg(opened.path, t, size=limits.thumbnail_px)
            except (DecodeError, FileNotFoundError) as exc:
                log.warning("thumbnail of row %d failed: %s", row, exc)
                raise HTTPException(404, f"cannot read the video of row {row}") from None
            finally:
                opened.close()
            thumbs.put(key, data)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    app.get("/api/thumbnail/{row}")(thumbnail)
    app.head("/api/thumbnail/{row}", include_in_schema=False)(thumbnail)

    def video(row: int) -> FileResponse:
        found = item(row)
        try:
            opened = open_indexed(found)
        except NotServable as exc:
            log.warning("video of row %d refused: %s", row, exc)
            raise HTTPException(404, f"the video of row {row} is not available") from None
        media_type = mimetypes.guess_type(found.path)[0] or "application/octet-stream"
        return FileResponse(opened.path, media_type=media_type, background=BackgroundTask(opened.close))

    app.get("/api/video/{row}")(video)
    app.head("/api/video/{row}", include_in_schema=False)(video)

    @app.on_event("shutdown")
    def _close() -> None:
        searcher.close()

    return app


class _LruBytes:
    """A bounded in-memory cache (least recently used dropped first), safe across threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self._data, self._lock = capacity, OrderedDict(), threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Any, value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)


def _file_snapshot(searcher: Any) -> dict[Path, tuple[int, int]]:
    """(size, mtime ns) of every index file as opened."""
    out = {}
    for path in searcher.file_paths():
        st = os.stat(path)
        out[path] = (st.st_size, st.st_mtime_ns)
    return out


def _changed_since(snapshot: dict[Path, tuple[int, int]]) -> str | None:
    for path, (size, mtime_ns) in snapshot.items():
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return f"{path}: changed since the server opened the index; restart it"
    return None
