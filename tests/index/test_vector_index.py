import numpy as np
import pytest

from tvr.errors import TvrError
from tvr.index.sharded import merge_top_k
from tvr.index.vector_index import IndexSpec, VectorIndex, exact_top_k, recall_vs_exact


def _data(n=500, d=16, q=20, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, d)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    qs = rng.standard_normal((q, d)).astype(np.float32)
    return g, qs


def test_flat_index_equals_brute_force():
    g, q = _data()
    idx = VectorIndex.build(g)
    scores, ids = idx.search(q, 7)
    np.testing.assert_array_equal(ids, exact_top_k(q, g, 7))
    np.testing.assert_allclose(scores, np.take_along_axis(q @ g.T, ids, 1), rtol=1e-5, atol=1e-5)


def test_save_load_roundtrip_and_checksum(tmp_path):
    g, q = _data()
    idx = VectorIndex.build(g)
    sha = idx.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss", IndexSpec(), sha)
    np.testing.assert_array_equal(again.search(q, 5)[1], idx.search(q, 5)[1])
    (tmp_path / "v.faiss").write_bytes(b"garbage")
    with pytest.raises(TvrError, match="checksum mismatch"):
        VectorIndex.load(tmp_path / "v.faiss", IndexSpec(), sha)
    with pytest.raises(TvrError, match="not a readable FAISS index"):
        VectorIndex.load(tmp_path / "v.faiss", IndexSpec())


@pytest.mark.parametrize("kind,least", [("hnsw", 0.9), ("ivf", 0.9), ("ivf-fp16", 0.9), ("ivf-sq8", 0.9), ("ivf-pq", 0.5)])
def test_approximate_indexes_have_high_recall(kind, least, tmp_path):
    g, q = _data(n=2000, d=16, q=50)
    idx = VectorIndex.build(g, IndexSpec(kind=kind, ivf_probe=32))
    recall = recall_vs_exact(idx, q, g, k=10)
    assert recall >= least
    sha = idx.save(tmp_path / "v.faiss")  # search parameters travel in the file: the same answers after loading
    again = VectorIndex.load(tmp_path / "v.faiss", IndexSpec(kind=kind), sha)
    np.testing.assert_array_equal(again.search(q, 10)[1], idx.search(q, 10)[1])
    if kind != "hnsw":
        assert idx.nbytes() < VectorIndex.build(g).nbytes() * {"ivf": 1.2, "ivf-fp16": 0.7}.get(kind, 0.6)


def test_auto_is_exact_up_to_its_threshold_and_compressed_above():
    from tvr.index.vector_index import AUTO_EXACT_UP_TO

    assert IndexSpec(kind="auto").resolved(1000).kind == "flat"
    assert IndexSpec(kind="auto").resolved(AUTO_EXACT_UP_TO).kind == "flat"
    assert IndexSpec(kind="auto").resolved(AUTO_EXACT_UP_TO + 1).kind == "ivf-fp16"
    g, _ = _data(n=300, d=16, q=1)
    assert VectorIndex.build(g, IndexSpec(kind="auto")).spec.kind == "flat"


def test_pq_code_size_divides_the_dimension():
    from tvr.index.vector_index import pq_subquantizers

    assert pq_subquantizers(128) == 32 and pq_subquantizers(129) == 43 and pq_subquantizers(16, 8) == 8


def test_sharded_search_equals_single_index():
    g, q = _data(n=700)
    sizes = [250, 300, 150]
    bounds = np.cumsum([0, *sizes])
    shards = [VectorIndex.build(g[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    s_scores, s_ids = merge_top_k([s.search(q, 10) for s in shards], bounds[:-1].tolist(), 10)
    np.testing.assert_array_equal(s_ids, exact_top_k(q, g, 10))


def test_bad_vectors_are_user_errors():
    with pytest.raises(TvrError, match="NaN"):
        VectorIndex.build(np.array([[np.nan, 1.0]], dtype=np.float32))
    idx = VectorIndex.build(np.eye(4, dtype=np.float32))
    with pytest.raises(TvrError, match="dimension 3"):
        idx.search(np.ones((1, 3), np.float32), 2)
