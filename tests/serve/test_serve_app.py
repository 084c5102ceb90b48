"""The HTTP API answers exactly what the Searcher answers, validates input and serves only indexed files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint, make_collection  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from tvr.index.build import BuildOptions, build_index
    from tvr.serve.app import create_app

    root = tmp_path_factory.mktemp("serve")
    manifest = make_collection(root / "data", n_videos=5)
    run = make_checkpoint(root / "run")
    build_index(manifest, run, root / "index", BuildOptions(querybank=manifest, workers=1, progress=False))
    app = create_app(root / "index")
    with TestClient(app) as c:
        c.index_dir = root / "index"
        yield c


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    info = client.get("/api/info").json()
    assert info["n_videos"] == 5 and info["method"] == "clip4clip-meanp"
    assert "is" in info["postprocs"]


@pytest.mark.parametrize("postproc", ["none", "is"])
def test_search_equals_searcher(client, postproc):
    from tvr.index.search import Searcher

    got = client.get("/api/search", params={"q": "red circle moving left", "k": 3, "postproc": postproc}).json()
    s = Searcher.open(client.index_dir)
    try:
        (want,) = s.search(["red circle moving left"], k=3, postproc=postproc)
    finally:
        s.close()
    assert [h["row"] for h in got["hits"]] == [h.row for h in want]
    assert [h["score"] for h in got["hits"]] == pytest.approx([h.score for h in want])
    assert all(h["moment"] is not None for h in got["hits"])


@pytest.mark.parametrize(
    "params",
    [{"q": ""}, {"q": "   "}, {"q": "x" * 501}, {"q": "red", "k": 0}, {"q": "red", "k": 101},
     {"q": "red", "postproc": "dsl"}, {"q": "red", "k": "many"}],
)
def test_bad_search_input_is_422(client, params):
    assert client.get("/api/search", params=params).status_code == 422


def test_thumbnail_and_video_only_by_row(client):
    thumb = client.get("/api/thumbnail/0", params={"t": 0.5})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"  # JPEG magic
    hit = client.get("/api/search", params={"q": "red", "k": 1}).json()["hits"][0]
    video = client.get(f"/api/video/{hit['row']}")
    assert video.status_code == 200 and video.content == (client.index_dir.parent / "data" / hit["video"]).read_bytes()
    part = client.get(f"/api/video/{hit['row']}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == video.content[:10]
    assert client.get("/api/video/5").status_code == 404
    assert client.get("/api/video/-1").status_code == 404
    assert client.get("/api/thumbnail/0", params={"t": -1}).status_code == 422
    assert client.get("/api/video/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)


def test_like_equals_searcher_and_takes_rows_only(client):
    from tvr.index.search import Searcher

    got = client.get("/api/like", params={"row": 2, "k": 5}).json()
    s = Searcher.open(client.index_dir)
    try:
        want = s.like("#2", k=5)
    finally:
        s.close()
    assert got["like"]["row"] == 2 and got["hits"][0]["row"] == 2
    assert [h["row"] for h in got["hits"]] == [h.row for h in want]
    assert [h["score"] for h in got["hits"]] == pytest.approx([h.score for h in want])
    assert client.get("/api/like", params={"row": 5}).status_code == 404
    assert client.get("/api/like", params={"row": -1}).status_code == 422
    assert client.get("/api/like", params={"row": "/etc/passwd"}).status_code == 422  # never a path
    assert client.get("/api/like", params={"row": 0, "k": 101}).status_code == 422
