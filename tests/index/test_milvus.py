"""The Milvus backend on milvus-lite (its server inside the PyPI wheel, started by the test): the same
hits as FAISS, updates, a restart that keeps the data, and only the current generation's collections."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from index_helpers import make_checkpoint, make_collection, make_video

pytest.importorskip("pymilvus", reason="the Milvus backend's tests need pymilvus and milvus-lite (pip install -e .[dev])")
pytest.importorskip("milvus_lite", reason="the Milvus backend's tests need milvus-lite (pip install -e .[dev])")

from tvr.index.build import BuildOptions, build_index  # noqa: E402
from tvr.index.milvus_index import MilvusIndex, client_for, close_clients  # noqa: E402
from tvr.index.search import Searcher  # noqa: E402
from tvr.index.vector_index import IndexSpec, exact_top_k  # noqa: E402

QUERIES = ["red circle", "blue square moving left", "green", "a large square", "small circle right", "then a",
           "left then right", "red square", "blue", "large green circle"]


@pytest.fixture(autouse=True)
def _fresh_clients():
    yield
    close_clients()


def test_top_10_equals_exact_faiss_for_50_queries(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2000, 32)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    idx = MilvusIndex.build(g, IndexSpec(kind="flat"), uri=str(tmp_path / "m.db"), collection="t")
    scores, ids = idx.search(q, 10)
    np.testing.assert_array_equal(ids, exact_top_k(q, g, 10))
    np.testing.assert_allclose(scores, np.take_along_axis(q @ g.T, ids, 1), atol=1e-5)
    sha = idx.save(tmp_path / "v.milvus.json")
    again = MilvusIndex.load(tmp_path / "v.milvus.json", IndexSpec(), sha)
    np.testing.assert_array_equal(again.search(q, 10)[1], ids)


def _hits(index: Path, postproc: str = "none") -> list[list[tuple[str, float]]]:
    s = Searcher.open(index)
    try:
        return [[(h.item.key, h.score) for h in row] for row in s.search(QUERIES, k=10, postproc=postproc)]
    finally:
        s.close()


def _same(a, b) -> None:
    for ra, rb in zip(a, b, strict=True):
        assert [k for k, _ in ra] == [k for k, _ in rb]
        np.testing.assert_allclose([s for _, s in ra], [s for _, s in rb], atol=1e-4)


def test_an_index_on_milvus_searches_like_faiss_updates_and_survives_a_restart(tmp_path):
    manifest = make_collection(tmp_path / "data", n_videos=12)
    run = make_checkpoint(tmp_path / "run")
    videos = tmp_path / "data" / "videos"
    uri = str(tmp_path / "milvus.db")
    opts = dict(querybank=manifest, workers=1, progress=False, store=tmp_path / "frames")
    build_index(videos, run, tmp_path / "mv", BuildOptions(backend="milvus", uri=uri, **opts))
    build_index(videos, run, tmp_path / "fs", BuildOptions(**opts))
    info = json.loads((tmp_path / "mv" / "index.json").read_text())
    assert info["backend"] == "milvus" and info["files"]["vectors"]["path"].endswith("vectors.milvus.json")
    for postproc in ("none", "is", "dis"):
        _same(_hits(tmp_path / "mv", postproc), _hits(tmp_path / "fs", postproc))

    make_video(videos / "v90.mp4", seed=90)  # updated: one added, one changed, one deleted
    make_video(videos / "v03.mp4", seed=91)
    (videos / "v05.mp4").unlink()
    update = build_index(videos, run, tmp_path / "mv", BuildOptions(backend="milvus", uri=uri, **opts))
    assert (update.n_encoded, update.n_dropped, update.n_items) == (2, 1, 12)
    build_index(videos, run, tmp_path / "fs2", BuildOptions(**{**opts, "store": tmp_path / "frames2"}))
    _same(_hits(tmp_path / "mv", "is"), _hits(tmp_path / "fs2", "is"))
    current = json.loads((tmp_path / "mv" / "index.json").read_text())["data_dir"]
    assert sorted(client_for(uri).list_collections()) == sorted(  # the old generation's collections are dropped
        json.loads((tmp_path / "mv" / current / name).read_text())["collection"]
        for name in ("vectors.milvus.json", "vectors_is.milvus.json"))

    want = _hits(tmp_path / "mv")
    close_clients()  # a new process opens the database file: the data is still there
    code = ("import json, sys; from tvr.index.search import Searcher; s = Searcher.open(sys.argv[1]); "
            f"print(json.dumps([[(h.item.key, h.score) for h in r] for r in s.search({QUERIES!r}, k=10)]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mv")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    _same([[tuple(x) for x in row] for row in json.loads(out.stdout)], want)


def test_bad_backend_input_is_one_line(run_cli, tmp_path):
    manifest = make_collection(tmp_path / "data", n_videos=3)
    run = make_checkpoint(tmp_path / "run")
    r = run_cli("index", manifest, "--checkpoint", run, "--out", tmp_path / "i", "--backend", "milvus")
    assert r.exit_code == 2 and "--uri" in r.stderr
    r = run_cli("index", manifest, "--checkpoint", run, "--out", tmp_path / "i", "--backend", "qdrant")
    assert r.exit_code == 2 and "--backend" in r.stderr
    shutil.rmtree(tmp_path / "i", ignore_errors=True)
