"""Probes from outside: swapped files, paths in responses, damaged storage, oversized input,
traversal forms, Host headers, slow clients, health and metrics."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint, make_collection, make_video  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from tvr.index.build import BuildOptions, build_index

    root = tmp_path_factory.mktemp("hardening")
    manifest = make_collection(root / "data", n_videos=5)
    run = make_checkpoint(root / "run")
    build_index(manifest, run, root / "index", BuildOptions(querybank=manifest, workers=1, progress=False))
    return root


def _client(root: Path, tmp_path: Path, **kw):
    """A TestClient over a private copy of the index and its videos (tests may damage both)."""
    from fastapi.testclient import TestClient

    from tvr.index.build import BuildOptions, build_index
    from tvr.serve.app import create_app

    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    build_index(data / "all.jsonl", run, tmp_path / "index", BuildOptions(querybank=data / "all.jsonl", workers=1, progress=False))
    return TestClient(create_app(tmp_path / "index", **kw))


def test_a_swapped_file_is_not_served(built, tmp_path):
    client = _client(built, tmp_path)
    videos = sorted((tmp_path / "data" / "videos").iterdir())
    rows = {h["video"]: h["row"] for h in client.get("/api/search", params={"q": "red", "k": 5}).json()["hits"]}
    row_of = {Path(name).name: row for name, row in rows.items()}
    assert client.get(f"/api/video/{row_of[videos[0].name]}").status_code == 200

    videos[0].unlink()
    videos[0].symlink_to("/etc/passwd")  # the probe from the issue
    r = client.get(f"/api/video/{row_of[videos[0].name]}")
    assert r.status_code == 404 and b"root:" not in r.content
    assert client.get(f"/api/thumbnail/{row_of[videos[0].name]}").status_code == 404

    other = tmp_path / "other.mp4"  # a different file moved in under the indexed name
    make_video(other, seed=99)
    videos[1].unlink()
    os.rename(other, videos[1])
    assert client.get(f"/api/video/{row_of[videos[1].name]}").status_code == 404

    real = tmp_path / "real"  # the folder itself swapped for a link to a look-alike copy
    shutil.copytree(tmp_path / "data" / "videos", real, symlinks=True)
    shutil.rmtree(tmp_path / "data" / "videos")
    (tmp_path / "data" / "videos").symlink_to(real)
    assert client.get(f"/api/video/{row_of[videos[2].name]}").status_code == 404


def test_openapi_and_docs_answer(built, tmp_path):
    client = _client(built, tmp_path)
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/api/search", "/api/like", "/api/describe", "/api/video/{row}", "/healthz", "/readyz"} <= set(paths)


def test_no_absolute_path_in_any_response_by_default(built, tmp_path):
    client = _client(built, tmp_path)
    secret = str(tmp_path)
    bodies = [client.get(u, params=p) for u, p in [
        ("/", {}), ("/api/info", {}), ("/api/search", {"q": "red", "k": 5}), ("/api/search", {"q": "red", "postproc": "is"}),
        ("/api/like", {"row": 0}), ("/api/describe", {"row": 1}), ("/api/video/99", {}), ("/api/thumbnail/99", {}),
        ("/api/search", {"q": "x", "k": 0}), ("/healthz", {}), ("/readyz", {}), ("/readyz", {"deep": 1}), ("/metrics", {}),
    ]]
    for r in bodies:
        assert secret not in r.text, r.request.url
    hit = bodies[2].json()["hits"][0]
    assert "path" not in hit and "key" not in hit and hit["video"].startswith("videos/")

    shown = _client(built, tmp_path / "shown", show_paths=True)
    assert str(tmp_path) in shown.get("/api/search", params={"q": "red"}).text


def test_a_damaged_item_table_answers_503_and_readyz_fails(built, tmp_path):
    client = _client(built, tmp_path)
    assert client.get("/readyz").json() == {"ready": True, "n_videos": 5}
    items = next((tmp_path / "index").glob("data-*/items.sqlite"))
    size = items.stat().st_size
    with open(items, "r+b") as fh:  # damaged in place while the server runs
        fh.write(os.urandom(size))
    for url, params in (("/api/search", {"q": "red"}), ("/api/like", {"row": 0}), ("/api/video/0", {})):
        r = client.get(url, params=params)
        assert r.status_code == 503 and r.json()["detail"].startswith("index storage error"), url
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["ready"] is False and "items.sqlite" in r.json()["reason"]
    assert client.get("/healthz").status_code == 200  # the process itself is fine


def test_oversized_input_is_refused_without_being_echoed(built, tmp_path):
    client = _client(built, tmp_path)
    q = "needle" + "x" * 50_000
    r = client.get("/api/search", params={"q": q})
    assert r.status_code == 422 and "needle" not in r.text and len(r.content) < 2_000


TRAVERSAL = [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252fetc%252fpasswd",
    "/etc/passwd", "%2Fetc%2Fpasswd", "0/../../../etc/passwd", "0%2F..%2F..%2Fetc%2Fpasswd", "0%00", "-1",
    "1e3", "0x1", "%2e%2e", "....//....//etc/passwd", "..%5C..%5Cwindows%5Cwin.ini", "0;cat /etc/passwd",
    "99999999999999999999999", "1.5", "NaN", "~root", "..;%2Fetc%2Fpasswd", "%C0%AE%C0%AE%2Fetc%2Fpasswd",
]


@pytest.fixture(scope="module")
def traversal_client(built, tmp_path_factory):
    return _client(built, tmp_path_factory.mktemp("traversal"))


@pytest.mark.parametrize("form", TRAVERSAL)
def test_traversal_forms_are_refused_on_every_endpoint_taking_an_id(traversal_client, form):
    client = traversal_client
    for url in (f"/api/video/{form}", f"/api/thumbnail/{form}", f"/api/like?row={form}", f"/api/describe?row={form}"):
        r = client.get(url)
        assert r.status_code in (400, 404, 405, 422), (url, r.status_code)
        assert b"root:" not in r.content and b"[fonts]" not in r.content


def test_head_and_ranges_on_videos(built, tmp_path):
    client = _client(built, tmp_path)
    full = client.get("/api/video/0")
    head = client.head("/api/video/0")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(full.content)
    part = client.get("/api/video/0", headers={"Range": "bytes=5-14"})
    assert part.status_code == 206 and part.content == full.content[5:15]
    assert client.head("/api/thumbnail/0").status_code == 200


def test_allowed_hosts(built, tmp_path):
    client = _client(built, tmp_path, allowed_hosts=["search.example.org"])
    assert client.get("/api/info", headers={"Host": "search.example.org"}).status_code == 200
    assert client.get("/api/info", headers={"Host": "evil.example.com"}).status_code == 400


def test_thumbnails_are_cached_and_leave_no_decoder_threads(built, tmp_path):
    import gc

    client = _client(built, tmp_path)
    tasks = lambda: len(os.listdir("/proc/self/task"))  # noqa: E731
    client.get("/api/thumbnail/0", params={"t": 0.1})
    gc.collect()
    gc.disable()
    try:
        before = tasks()
        for i in range(40):
            assert client.get("/api/thumbnail/1", params={"t": 0.25 * (i % 8)}).status_code == 200
        after = tasks()
    finally:
        gc.enable()
    assert after <= before + 1, (before, after)  # FFmpeg threads end with each decode, not at garbage collection
    first = client.get("/api/thumbnail/2", params={"t": 0.5}).content
    (tmp_path / "index").rename(tmp_path / "index-moved")  # a cached thumbnail needs no file at all
    assert client.get("/api/thumbnail/2", params={"t": 0.5}).content == first


def test_metrics_count_requests_per_endpoint(built, tmp_path):
    client = _client(built, tmp_path)
    for _ in range(3):
        client.get("/api/search", params={"q": "red"})
    text = client.get("/metrics").text
    assert 'tvr_http_requests_total{endpoint="/api/search",method="GET",status="200"} 3.0' in text
    assert "tvr_http_request_duration_seconds_bucket" in text
    assert "tvr_index_videos 5.0" in text and 'tvr_index_info{kind="flat",method="clip4clip-meanp"} 1.0' in text


def test_readyz_notices_a_changed_index_file(built, tmp_path):
    client = _client(built, tmp_path)
    assert client.get("/readyz", params={"deep": 1}).status_code == 200
    vectors = next((tmp_path / "index").glob("data-*/vectors.faiss"))
    os.utime(vectors, ns=(time.time_ns(), time.time_ns() + 10**9))
    r = client.get("/readyz")
    assert r.status_code == 503 and "vectors.faiss" in r.json()["reason"]


def test_a_client_that_never_finishes_its_headers_is_disconnected(built, tmp_path):
    import uvicorn

    from tvr.serve.app import create_app
    from tvr.serve.protocol import protocol_with_timeout

    app = create_app(built / "index")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", http=protocol_with_timeout(0.5), timeout_keep_alive=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for s in slow:
            s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # headers never finished
            s.settimeout(5)
        t0 = time.monotonic()
        assert all(s.recv(100) == b"" for s in slow)  # closed by the server
        assert time.monotonic() - t0 < 4
        with socket.create_connection(("127.0.0.1", port)) as ok:  # a normal client is still served
            ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            ok.settimeout(5)
            assert ok.recv(100).startswith(b"HTTP/1.1 200")
        for s in slow:
            s.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
