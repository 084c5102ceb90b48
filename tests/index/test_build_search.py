"""Index build + search against brute-force references (tiny random-init models, tiny real videos)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from index_helpers import caption, make_checkpoint, make_collection, make_video, register_maxframe

from tvr.data.batch import TextBatch
from tvr.data.clips import Clips
from tvr.features.store import clip_key
from tvr.index import layout
from tvr.index.build import BuildOptions, build_index
from tvr.index.search import Searcher
from tvr.io.manifest import read_manifest
from tvr.models.registry import load_model
from tvr.postproc import apply_postproc

QUERIES = ["red square moving left", "a blue circle", "small green then large", "right"]
MANY_QUERIES = QUERIES + [caption(np.random.default_rng(s)) for s in range(24)]
register_maxframe()  # "test-maxframe": a model that is not an inner product


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    manifest = make_collection(root, n_videos=6, seed=0)
    run = make_checkpoint(root / "run", manifest=manifest)
    report = build_index(manifest, run, root / "idx", BuildOptions(workers=1, progress=False))
    return root, manifest, run, report


def _reference(run: Path, store: Path, keys: list[str], texts: list[str]):
    """Independent exhaustive scoring: re-load the checkpoint, re-encode every clip and the texts."""
    model = load_model(run)
    clips = Clips(store, keys, model.input_spec())
    with torch.no_grad():
        v = model.encode_video(clips.batch(range(len(keys))))
        t = model.encode_text(TextBatch(list(texts)))
        s = model.similarity(t, v).double().numpy()
    clips.close()
    return model, t, v, s


def _gallery_keys(manifest: Path) -> list[str]:
    m = read_manifest(manifest)
    return list(dict.fromkeys(clip_key(m.path_of(e), e.start, e.end) for e in m.entries))


def _check_top_k(hits, ref_final_q, keys, k):
    """Scores equal the reference at the returned items, and are the reference's k best (tie-proof)."""
    got = np.array([h.score for h in hits])
    cols = [keys.index(h.item.key) for h in hits]
    np.testing.assert_allclose(got, ref_final_q[cols], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, np.sort(ref_final_q)[::-1][:k], rtol=1e-5, atol=1e-4)
    assert len(set(cols)) == len(cols) == k


def test_flat_search_equals_exhaustive_scoring(world):
    root, manifest, run, report = world
    keys = _gallery_keys(manifest)
    _, _, _, ref = _reference(run, run / "frames", keys, QUERIES)
    searcher = Searcher.open(root / "idx")
    for k in (1, 3, 6, 50):
        results = searcher.search(QUERIES, k=k)
        for q, hits in enumerate(results):
            _check_top_k(hits, ref[q], keys, min(k, 6))
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
            np.testing.assert_allclose([h.similarity for h in hits], [h.score for h in hits], atol=1e-5)


def _reference_with_bank(run: Path, manifest: Path):
    """(gallery keys, exhaustive query scores, querybank×gallery scores of the training captions)."""
    keys = _gallery_keys(manifest)
    model, _, v, ref = _reference(run, run / "frames", keys, MANY_QUERIES)
    bank_texts = [e.caption for e in read_manifest(manifest).split("train").entries]
    with torch.no_grad():
        bank = model.similarity(model.encode_text(TextBatch(bank_texts)), v).double().numpy()
    return keys, ref, bank


@pytest.mark.parametrize("postproc", ["is", "dis", "csls", "gc", "cent"])
def test_postproc_equals_apply_postproc_on_full_matrix(world, postproc):
    root, manifest, run, _ = world
    keys, ref, bank = _reference_with_bank(run, manifest)
    final = apply_postproc(postproc, ref, bank)
    searcher = Searcher.open(root / "idx")
    if postproc == "dis":
        # a random-init model sends every query to the bank's hubs; shrink the activation set to one
        # item so that both kinds of rows (raw top-1 inside / outside it) are exercised
        top1 = ref.argmax(axis=1)
        active = np.zeros(len(keys), dtype=bool)
        active[top1[0]] = True
        assert 0 < active[top1].sum() < len(MANY_QUERIES)
        searcher.bank = dataclasses.replace(searcher.bank, active=active)
        final = apply_postproc(postproc, ref, searcher.bank)
    for q, hits in enumerate(searcher.search(MANY_QUERIES, k=3, postproc=postproc)):
        _check_top_k(hits, final[q], keys, 3)
        np.testing.assert_allclose([h.similarity for h in hits], ref[q, [keys.index(h.item.key) for h in hits]], atol=1e-5)


def test_querybank_beta_of_the_build_is_the_one_search_applies(world, tmp_path):
    """An index built at β = 2 ranks IS exactly as `apply_postproc` at β = 2 (not at the default 20)."""
    _, manifest, run, _ = world
    keys, ref, bank = _reference_with_bank(run, manifest)
    build_index(manifest, run, tmp_path / "idx", BuildOptions(workers=1, progress=False, store=run / "frames", beta=2.0))
    final = apply_postproc("is", ref, bank, beta=2.0)
    assert not np.allclose(final, apply_postproc("is", ref, bank))  # β matters on this gallery
    searcher = Searcher.open(tmp_path / "idx")
    assert searcher.bank.beta == 2.0
    for q, hits in enumerate(searcher.search(MANY_QUERIES, k=3, postproc="is")):
        _check_top_k(hits, final[q], keys, 3)


def test_best_moment_is_brute_force_argmax_over_frames(world):
    root, manifest, run, _ = world
    keys = _gallery_keys(manifest)
    _, t, v, _ = _reference(run, run / "frames", keys, QUERIES)
    searcher = Searcher.open(root / "idx")
    for q, hits in enumerate(searcher.search(QUERIES, k=6)):
        text = t.pooled[q].double()
        text = text / text.norm()
        for h in hits:
            g = keys.index(h.item.key)
            best, best_t = -np.inf, None
            for f in range(v.frames.shape[1]):  # float64 loop over real frames
                if not bool(v.frame_mask[g, f]):
                    continue
                frame = v.frames[g, f].double()
                cos = float(text @ frame / frame.norm())
                if cos > best:
                    best, best_t = cos, float(v.timestamps[g, f])
            assert h.moment is not None
            assert h.moment.time_s == pytest.approx(best_t, abs=1e-6)
            assert h.moment.score == pytest.approx(best, abs=1e-5)
            assert h.moment.start_s <= h.moment.time_s <= h.moment.end_s
            assert 0.0 <= h.moment.time_s < 2.0  # 8 frames at 4 fps


def test_index_json_names_every_file_with_its_checksum(world):
    root, manifest, run, report = world
    info = layout.read_info(root / "idx")
    assert info.method == "clip4clip-meanp" and info.inner_product and info.kind == "flat"
    assert info.n_items == report.n_items == 6 and info.failed == []
    assert info.model_sha256 == layout.sha256_file(run / "model.safetensors")
    assert set(info.files) == {"model_config", "model_weights", "vectors", "vectors_is", "gallery", "items", "querybank",
                               "querybank_texts", "fingerprints"}
    layout.verify_files(root / "idx", info)
    assert info.querybank["n_bank"] == 6  # 3 train videos × 2 captions (the checkpoint's training manifest)
    assert sorted(p.name for p in (root / "idx").iterdir()) == sorted([".lock", "index.json", info.data_dir])


def test_non_inner_product_model_is_rescored_with_its_similarity(world, tmp_path):
    root, manifest, _, _ = world
    run = make_checkpoint(tmp_path / "run", "test-maxframe", manifest=manifest)
    build_index(manifest, run, tmp_path / "idx", BuildOptions(workers=1, progress=False, store=root / "run" / "frames"))
    info = layout.read_info(tmp_path / "idx")
    assert not info.inner_product and "vectors_is" not in info.files
    keys = _gallery_keys(manifest)
    model, _, v, ref = _reference(run, root / "run" / "frames", keys, QUERIES)
    searcher = Searcher.open(tmp_path / "idx")
    for q, hits in enumerate(searcher.search(QUERIES, k=4)):
        _check_top_k(hits, ref[q], keys, 4)
        for h in hits:  # the max-frame score is the best moment's score
            assert h.moment.score == pytest.approx(h.score, abs=1e-5)
    bank = model.similarity(model.encode_text(TextBatch(
        [e.caption for e in read_manifest(manifest).split("train").entries])), v).detach().double().numpy()
    final = apply_postproc("is", ref, bank)
    for q, hits in enumerate(searcher.search(QUERIES, k=4, postproc="is")):
        _check_top_k(hits, final[q], keys, 4)


def test_rerun_after_interruption_ends_with_one_entry_per_video(world, tmp_path):
    """A killed run leaves a partly filled store, a half-written generation and a temp index.json;
    the re-run finishes the store, replaces the index, and cleans up."""
    from tvr.data.batch import VideoInputSpec
    from tvr.data.streams import pixels_encoder
    from tvr.features.extract import extract_features
    from tvr.index.build import gallery_source

    root, manifest, run, _ = world
    store, out = tmp_path / "store", tmp_path / "idx"
    jobs = gallery_source(manifest).jobs
    extract_features(jobs[:3], pixels_encoder(VideoInputSpec(4, 32)), store, workers=1, progress=False)
    (out / "data-0123456789ab").mkdir(parents=True)
    (out / "data-0123456789ab" / "vectors.faiss").write_bytes(b"half")
    (out / ".index.json.abc.tmp").write_text("{")
    opts = BuildOptions(workers=1, progress=False, store=store)
    first = build_index(manifest, run, out, opts)
    assert (first.extract["skipped"], first.extract["extracted"]) == (3, 3)
    second = build_index(manifest, run, out, opts)
    assert (second.extract["skipped"], second.extract["extracted"]) == (6, 0)
    info = layout.read_info(out)
    assert sorted(p.name for p in out.iterdir()) == sorted([".lock", "index.json", info.data_dir])
    searcher = Searcher.open(out)
    keys = [i.key for i in searcher.items.all()]
    assert keys == _gallery_keys(manifest)  # one entry per video, source order
    assert len(set(keys)) == 6


def test_changed_video_is_re_encoded(world, tmp_path):
    root, manifest, run, _ = world
    coll = tmp_path / "coll"
    shutil.copytree(root / "videos", coll / "videos")
    opts = BuildOptions(workers=1, progress=False, store=tmp_path / "store")
    build_index(coll, run, tmp_path / "idx", opts)
    before = Searcher.open(tmp_path / "idx").gallery.field("pooled").clone()
    make_video(coll / "videos" / "v02.mp4", seed=999)  # new content, same name
    report = build_index(coll, run, tmp_path / "idx", opts)
    assert report.extract["extracted"] == 1 and report.extract["skipped"] == 5
    after = Searcher.open(tmp_path / "idx").gallery.field("pooled")
    changed = [i for i in range(6) if not torch.allclose(before[i], after[i])]
    assert changed == [2]


def test_undecodable_video_is_recorded_and_skipped(world, tmp_path):
    root, _, run, _ = world
    coll = tmp_path / "coll"
    shutil.copytree(root / "videos", coll)
    (coll / "sub").mkdir()
    (coll / "sub" / "broken.mp4").write_bytes(b"not a video at all" * 50)
    report = build_index(coll, run, tmp_path / "idx", BuildOptions(workers=1, progress=False, store=tmp_path / "s"))
    assert report.n_items == 6 and len(report.failed) == 1
    assert report.failed[0]["path"].endswith("broken.mp4") and report.failed[0]["error"]
    searcher = Searcher.open(tmp_path / "idx")
    assert [i.name for i in searcher.items.all()] == [f"v{i:02d}.mp4" for i in range(6)]
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["n_failed"] == 1


def test_the_searcher_reads_the_stored_gallery_lazily_and_exactly(world):
    from tvr.index.gallery import load_gallery

    root, _, _, _ = world
    s = Searcher.open(root / "idx")
    try:
        assert s.gallery._full is None and not s.gallery._fields  # nothing per video read at open
        full, vectors = load_gallery(s.info.path_of(root / "idx", layout.GALLERY), s.info.emb_class, s.info.n_items)
        rows = [4, 0, 4, 2]
        part = s.gallery.select(rows)
        for name in ("pooled", "frames", "frame_mask", "timestamps"):
            torch.testing.assert_close(getattr(part, name), getattr(full.select(rows), name), rtol=0, atol=0)
        torch.testing.assert_close(s.gallery.field("vectors"), vectors, rtol=0, atol=0)
        from tvr.models.encode import encode_texts

        hits = s.search(["red circle"], k=3, postproc="csls")[0]  # scores every row: from the vectors alone
        assert s.gallery._full is None  # an inner-product model never needs the whole stored gallery
        q = s.model.query_vectors(encode_texts(s.model, ["red circle"], "cpu")).double().numpy()
        want = s.bank.normalize("csls", q @ vectors.double().numpy().T)[0]
        assert [h.row for h in hits] == list(np.argsort(-want, kind="stable")[:3])
    finally:
        s.close()
