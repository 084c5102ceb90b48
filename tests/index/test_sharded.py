"""A sharded index answers exactly what the unsharded index over the same items answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from index_helpers import caption, make_checkpoint, make_collection, make_video, register_maxframe

from tvr.errors import TvrError
from tvr.index import layout, search
from tvr.index.build import BuildOptions, build_index
from tvr.index.search import SEARCH_POSTPROCS, Searcher
from tvr.index.sharded import ShardedSearcher, open_index

N_VIDEOS, N_SHARDS = 12, 3  # names videos/v00..v11.mp4 hash to shards of 4, 6 and 2 items
QUERIES = ["red square moving left", "a blue circle", "small green then large"] + [
    caption(np.random.default_rng(1000 + s)) for s in range(21)
]


def _build(manifest, run, out, **kw):
    return build_index(manifest, run, out, BuildOptions(workers=1, progress=False, querybank=manifest, **kw))


@pytest.fixture(scope="module", params=["clip4clip-meanp", "test-maxframe"])
def pair(request, tmp_path_factory):
    """(plain, sharded) searchers over the same 12 videos; meanP (inner product, folded IS) and a
    model that is not an inner product (every post-processor scores whole rows)."""
    register_maxframe()
    root = tmp_path_factory.mktemp("sharded")
    manifest = make_collection(root, n_videos=N_VIDEOS, seed=3)
    run = make_checkpoint(root / "run", request.param, manifest=manifest)
    _build(manifest, run, root / "plain")
    report = _build(manifest, run, root / "sharded", shards=N_SHARDS)
    plain, sharded = Searcher.open(root / "plain"), open_index(root / "sharded")
    yield plain, sharded, report, root
    plain.close()
    sharded.close()


def _keys_scores(hits):
    return [h.item.key for h in hits], np.array([h.score for h in hits])


@pytest.mark.parametrize("postproc", SEARCH_POSTPROCS)
def test_same_top10_as_unsharded(pair, postproc):
    """Top-10 items and scores equal. (A query that is itself a querybank caption is left out: its
    score equals a bank score exactly, and GC's rank count moves by a half step with the ~1e-7
    rounding by which a shard's matrix product can differ from the whole gallery's.)"""
    plain, sharded, _, _ = pair
    assert not set(QUERIES) & set(plain.bank_captions())
    want = plain.search(QUERIES, k=10, postproc=postproc)
    got = sharded.search(QUERIES, k=10, postproc=postproc)
    for w, g in zip(want, got, strict=True):
        (wk, ws), (gk, gs) = _keys_scores(w), _keys_scores(g)
        assert gk == wk
        np.testing.assert_allclose(gs, ws, rtol=1e-6, atol=1e-6)
        assert [h.rank for h in g] == list(range(1, len(g) + 1))
        for h in g:  # global rows name the same item everywhere
            assert sharded.items.get([h.row])[0].key == h.item.key
            assert abs(h.similarity - next(x.similarity for x in w if x.item.key == h.item.key)) < 1e-6


def test_whole_gallery_terms_matter(pair):
    """CSLS and GC computed per shard alone would score differently: the cross-shard terms are needed."""
    plain, sharded, _, _ = pair
    text_emb = sharded.shards[0].encode_queries(QUERIES)
    for postproc in ("csls", "gc"):
        exact = sharded.rank(text_emb, 10, postproc)[0]
        alone = np.concatenate([s.rank(text_emb, len(s), postproc)[0] for s in sharded.shards], axis=1)
        assert not np.allclose(np.sort(alone, axis=1)[:, ::-1][:, :10], exact)


def test_candidates_are_the_whole_gallerys(pair, monkeypatch):
    """A model that is not an inner product re-scores the gallery's candidate top-n; with fewer
    candidates than videos, the sharded index picks the same n as one index would (not n per shard)."""
    plain, sharded, _, _ = pair
    if plain.model.inner_product:
        pytest.skip("inner-product models rank by their vectors alone")
    monkeypatch.setattr(search, "MIN_CANDIDATES", 1)
    monkeypatch.setattr(search, "CANDIDATES_PER_HIT", 2)
    assert search.candidate_count(N_VIDEOS, 1) == 2  # k=1: 2 of the 12 are re-scored
    for w, g in zip(plain.search(QUERIES, k=1), sharded.search(QUERIES, k=1), strict=True):
        assert _keys_scores(g)[0] == _keys_scores(w)[0]
        np.testing.assert_allclose(_keys_scores(g)[1], _keys_scores(w)[1], rtol=1e-6, atol=1e-6)


def test_layout(pair):
    _, sharded, report, root = pair
    info = layout.read_shard_set(root / "sharded")
    assert [s["n_items"] for s in info.shards] == [4, 6, 2] and info.n_items == N_VIDEOS == report.n_items
    assert report.kind.endswith(f"{N_SHARDS} shards")
    for number, shard_root in enumerate(info.shard_roots(root / "sharded")):
        alone = Searcher.open(shard_root)  # each shard is a complete index of its own
        try:
            names = [i.name for i in alone.items.all()]
            assert names and all(layout.shard_of(n, N_SHARDS) == number for n in names)
        finally:
            alone.close()
    with pytest.raises(TvrError, match="sharded index"):
        Searcher.open(root / "sharded")


def test_like_and_describe(pair):
    plain, sharded, _, _ = pair
    captions = [caption(np.random.default_rng(100 + s)) for s in range(30)]
    for name in ("videos/v01.mp4", "videos/v07.mp4"):
        want, got = plain.like(name, k=8), sharded.like(name, k=8)
        assert [h.item.key for h in got] == [h.item.key for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-6, atol=1e-6)
        assert got[0].item.name == name  # the video itself first
        assert sharded.describe(name, captions, k=5) == pytest.approx(plain.describe(name, captions, k=5))
        row = sharded.find_item(name)
        assert sharded.items.get([row])[0].name == name
        assert [h.item.key for h in sharded.like(f"#{row}", k=3)] == [h.item.key for h in want[:3]]
    file_like = sharded.like(plain.items.get([0])[0].path, k=4)  # a file: encoded on the fly
    assert [h.item.key for h in file_like] == [h.item.key for h in plain.like(plain.items.get([0])[0].path, k=4)]


def test_update_reuses_rows_and_equals_a_rebuild(tmp_path):
    manifest = make_collection(tmp_path, n_videos=N_VIDEOS, seed=3)
    run = make_checkpoint(tmp_path / "run", manifest=manifest)
    _build(manifest, run, tmp_path / "idx", shards=N_SHARDS)
    lines = manifest.read_text().splitlines()
    make_video(tmp_path / "videos" / "v99.mp4", seed=99)
    lines = [x for x in lines if "v04.mp4" not in x] + [json.dumps({"video": "videos/v99.mp4", "caption": "red", "split": "test"})]
    manifest.write_text("\n".join(lines) + "\n")
    update = _build(manifest, run, tmp_path / "idx", shards=N_SHARDS)
    assert (update.n_encoded, update.n_reused, update.n_dropped) == (1, N_VIDEOS - 1, 1)
    _build(manifest, run, tmp_path / "fresh")
    updated, fresh = open_index(tmp_path / "idx"), Searcher.open(tmp_path / "fresh")
    try:
        assert isinstance(updated, ShardedSearcher) and len(updated) == len(fresh) == N_VIDEOS
        for postproc in ("none", "dis", "csls"):
            for w, g in zip(fresh.search(QUERIES, 5, postproc), updated.search(QUERIES, 5, postproc), strict=True):
                assert _keys_scores(g)[0] == _keys_scores(w)[0]
                np.testing.assert_allclose(_keys_scores(g)[1], _keys_scores(w)[1], rtol=1e-6, atol=1e-6)
    finally:
        updated.close()
        fresh.close()
    assert len(list(tmp_path.joinpath("idx").glob("data-*"))) == 1  # the old generation is gone


def test_updates_keep_or_change_the_split(tmp_path):
    """A re-run keeps the index's shards unless --shards says otherwise; plain ↔ sharded reuses every row."""
    manifest = make_collection(tmp_path, n_videos=N_VIDEOS, seed=3)
    run = make_checkpoint(tmp_path / "run", manifest=manifest)
    idx = tmp_path / "idx"
    assert _build(manifest, run, idx).n_encoded == N_VIDEOS
    to_sharded = _build(manifest, run, idx, shards=N_SHARDS)
    assert (to_sharded.n_reused, to_sharded.n_encoded) == (N_VIDEOS, 0) and layout.is_sharded(idx)
    again = _build(manifest, run, idx)  # no --shards: stays sharded
    assert again.n_reused == N_VIDEOS and len(layout.read_shard_set(idx).shards) == N_SHARDS
    to_plain = _build(manifest, run, idx, shards=1)
    assert to_plain.n_reused == N_VIDEOS and not layout.is_sharded(idx)
    assert len(list(idx.glob("data-*"))) == 1 and isinstance(open_index(idx), Searcher)


def test_bad_shard_counts(tmp_path):
    manifest = make_collection(tmp_path, n_videos=4, seed=3)
    run = make_checkpoint(tmp_path / "run", manifest=manifest)
    with pytest.raises(TvrError, match="--shards must be at least 1"):
        _build(manifest, run, tmp_path / "a", shards=0)
    with pytest.raises(TvrError, match="Milvus"):
        _build(manifest, run, tmp_path / "b", shards=2, backend="milvus", uri=str(tmp_path / "m.db"))
    with pytest.raises(TvrError, match="empty"):
        _build(manifest, run, tmp_path / "c", shards=40)
    assert not (tmp_path / "c" / layout.INDEX_FILE).exists()
    assert not list((tmp_path / "c").glob("data-*"))  # nothing half-written is left


def test_cli_and_server_over_shards(tmp_path, run_cli):
    """`tvr index --shards`, `tvr search` and the HTTP API answer over the shards as the plain index does."""
    from fastapi.testclient import TestClient

    from tvr.serve.app import create_app

    manifest = make_collection(tmp_path, n_videos=N_VIDEOS, seed=3)
    run = make_checkpoint(tmp_path / "run", manifest=manifest)
    for out, extra in (("plain", ()), ("sharded", ("--shards", str(N_SHARDS)))):
        r = run_cli("index", manifest, "--checkpoint", run, "--out", tmp_path / out, "--querybank", manifest, "-w", "1",
                    "--quiet", *extra)
        assert r.exit_code == 0, r.stderr
    r = run_cli("index", manifest, "--checkpoint", run, "--out", tmp_path / "bad", "--shards", "0", "--quiet")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "--shards" in r.stderr
    got = json.loads(run_cli("search", tmp_path / "sharded", "a blue circle", "--postproc", "dis", "--json").stdout)
    want = json.loads(run_cli("search", tmp_path / "plain", "a blue circle", "--postproc", "dis", "--json").stdout)
    assert [h["key"] for h in got["hits"]] == [h["key"] for h in want["hits"]] and got["n_gallery"] == N_VIDEOS
    like = json.loads(run_cli("search", tmp_path / "sharded", "--like", "videos/v05.mp4", "--json").stdout)
    assert like["hits"][0]["video"] == "videos/v05.mp4"

    with TestClient(create_app(tmp_path / "sharded")) as sharded, TestClient(create_app(tmp_path / "plain")) as plain:
        info = sharded.get("/api/info").json()
        assert info["n_videos"] == N_VIDEOS and info["describe"] and "csls" in info["postprocs"]
        for postproc in ("none", "is", "csls", "gc"):
            params = {"q": "small green then large", "k": 7, "postproc": postproc}
            s_hits, p_hits = sharded.get("/api/search", params=params).json()["hits"], plain.get("/api/search", params=params).json()["hits"]
            assert [h["video"] for h in s_hits] == [h["video"] for h in p_hits]
            assert [h["score"] for h in s_hits] == pytest.approx([h["score"] for h in p_hits], abs=1e-6)
        row = s_hits[3]["row"]
        assert sharded.get(f"/api/like?row={row}&k=3").json()["hits"][0]["video"] == s_hits[3]["video"]
        assert sharded.get(f"/api/describe?row={row}&k=3").json()["captions"]
        assert sharded.get(f"/api/thumbnail/{row}").headers["content-type"] == "image/jpeg"
        assert sharded.get(f"/api/video/{row}").status_code == 200
        assert sharded.get(f"/api/like?row={N_VIDEOS}").status_code == 404
        assert sharded.get("/readyz", params={"deep": 1}).json()["ready"] is True
        shard_items = next((tmp_path / "sharded").glob("data-*/shard-001/data-*/items.sqlite"))
        shard_items.write_bytes(shard_items.read_bytes())  # rewritten in place: a new mtime
        assert sharded.get("/readyz").status_code == 503
