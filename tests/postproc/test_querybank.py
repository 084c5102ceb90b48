"""QueryBank: chunked build = whole build, save/load with version checks, per-query path, folded IS."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from tvr.errors import TvrError
from tvr.postproc import QueryBank, apply_postproc

FIELDS = ("log_z", "active", "r_bank", "bank_mean", "sorted_bank")


def bank_scores(seed: int = 0, n_b: int = 40, n_g: int = 25, levels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if levels:
        return (rng.integers(0, levels, size=(n_b, n_g)) / levels).astype(np.float32)
    return rng.uniform(-1, 1, size=(n_b, n_g)).astype(np.float32)


@pytest.mark.parametrize("levels", [None, 3])
def test_chunked_build_equals_whole_build(levels) -> None:
    b = bank_scores(levels=levels)
    whole = QueryBank.from_scores(b, dis_k=3, csls_k=5)
    chunks = [b[:, :1], b[:, 1:8], b[:, 8:8], b[:, 8:25]]
    parts = QueryBank.from_score_chunks(chunks, dis_k=3, csls_k=5)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(whole, f), getattr(parts, f), err_msg=f)


def test_normalize_one_query_equals_matrix_row() -> None:
    b = bank_scores()
    s = np.random.default_rng(1).uniform(-1, 1, size=(4, 25))
    qb = QueryBank.from_scores(b)
    for name in ("is", "dis", "csls", "gc", "cent"):
        full = qb.normalize(name, s)
        np.testing.assert_array_equal(qb.normalize(name, s[2]), full[2])
        np.testing.assert_array_equal(apply_postproc(name, s, qb), full)
    with pytest.raises(TvrError, match="25 gallery items"):
        qb.normalize("is", s[:, :5])


def test_save_load_roundtrip(tmp_path) -> None:
    qb = QueryBank.from_scores(bank_scores(), beta=12.5, dis_k=2, csls_k=4)
    path = tmp_path / "qb.safetensors"
    qb.save(path)
    back = QueryBank.load(path, n_gallery=25)
    assert (back.beta, back.dis_k, back.csls_k, back.n_bank) == (12.5, 2, 4, 40)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(qb, f), getattr(back, f), err_msg=f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qb.safetensors"]  # no temp left behind


def _write_raw(path, tensors, meta) -> None:
    save_file(tensors, str(path), metadata=meta)


def test_load_rejects_bad_files(tmp_path) -> None:
    qb = QueryBank.from_scores(bank_scores())
    good = tmp_path / "qb.safetensors"
    qb.save(good)
    with pytest.raises(TvrError, match="expected 30"):
        QueryBank.load(good, n_gallery=30)
    with pytest.raises(TvrError, match="does not exist"):
        QueryBank.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TvrError, match="cannot read"):
        QueryBank.load(junk)
    tensors = {
        "log_z": qb.log_z,
        "active": qb.active.astype(np.uint8),
        "r_bank": qb.r_bank,
        "bank_mean": qb.bank_mean,
        "sorted_bank": qb.sorted_bank,
    }
    meta = {"format": "tvr-querybank", "version": "99", "beta": "20.0", "dis_k": "1", "csls_k": "10", "n_bank": "40"}
    _write_raw(tmp_path / "v.safetensors", tensors, meta)
    with pytest.raises(TvrError, match="version 99"):
        QueryBank.load(tmp_path / "v.safetensors")
    meta["version"] = "1"
    _write_raw(tmp_path / "s.safetensors", {**tensors, "r_bank": qb.r_bank[:-1]}, meta)
    with pytest.raises(TvrError, match="inconsistent"):
        QueryBank.load(tmp_path / "s.safetensors")
    _write_raw(tmp_path / "f.safetensors", tensors, {**meta, "format": "other"})
    with pytest.raises(TvrError, match="not a tvr querybank"):
        QueryBank.load(tmp_path / "f.safetensors")


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_folded_is_vectors_rank_exactly_like_is(scale: float) -> None:
    rng = np.random.default_rng(5)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    gallery, bank_q = unit(rng.normal(size=(200, 16))), unit(rng.normal(size=(300, 16)))
    queries = unit(rng.normal(size=(20, 16)))
    beta = 20.0 / scale  # keep β·scale = 20 so IS stays discriminative on either scale
    qb = QueryBank.from_scores(scale * bank_q @ gallery.T, beta=beta)
    is_scores = qb.normalize("is", scale * queries @ gallery.T)
    q_vec, g_vec = qb.folded_is_vectors(queries, gallery, scale=scale)
    assert q_vec.shape == (20, 17) and g_vec.shape == (200, 17)
    folded = q_vec @ g_vec.T
    np.testing.assert_allclose(folded, is_scores, rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(np.argsort(-folded, axis=1), np.argsort(-is_scores, axis=1))
    # and IS really reorders compared with the raw ranking, so the equality is not vacuous
    assert not np.array_equal(np.argsort(-folded, axis=1), np.argsort(-(queries @ gallery.T), axis=1))

    # the conditioned folding (for approximate indexes): the same ranking, IS recovered exactly, g's scale kept
    q_c, g_c, factor, offset = qb.conditioned_is_vectors(queries, gallery, scale=scale)
    conditioned = q_c @ g_c.T
    np.testing.assert_allclose(factor * conditioned - offset, is_scores, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(np.argsort(-conditioned, axis=1), np.argsort(-is_scores, axis=1))
    np.testing.assert_allclose(np.linalg.norm(g_c[:, :-1], axis=1), 1.0, rtol=1e-12)
    assert np.abs(g_c[:, -1]).max() < 1.0 < np.abs(g_vec[:, -1]).max()


def test_bank_without_gc_statistics(tmp_path) -> None:
    b = bank_scores()
    lean = QueryBank.from_scores(b, with_gc=False)
    full = QueryBank.from_scores(b)
    assert lean.sorted_bank.shape == (25, 0) and not lean.has_gc and full.has_gc
    s = np.random.default_rng(2).uniform(-1, 1, size=(3, 25))
    np.testing.assert_array_equal(lean.normalize("dis", s), full.normalize("dis", s))
    with pytest.raises(TvrError, match="without GC"):
        lean.normalize("gc", s)
    lean.save(tmp_path / "lean.safetensors")
    back = QueryBank.load(tmp_path / "lean.safetensors")
    assert back.n_bank == 40 and not back.has_gc
