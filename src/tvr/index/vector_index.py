"""FAISS inner-product index over gallery vectors, saved with a format version and a checksum.

Kinds: `flat` (exact), `hnsw` (graph over full vectors), `ivf` (inverted lists over full vectors),
`ivf-fp16` (inverted lists over half-precision vectors: half the memory),
`ivf-sq8` (inverted lists over 8-bit scalar-quantised vectors: a quarter of the memory),
`ivf-pq` (inverted lists over product-quantised codes: a few dozen bytes per vector), and `auto`,
which picks by gallery size from the measurements of `bench/index_scale.py` (`AUTO_EXACT_UP_TO`):
exact up to 10^5 vectors, `ivf-fp16` above.
Judge the approximate ones with `recall_vs_exact` on *text* queries (the modality gap makes
gallery-to-gallery recall misleading, DESIGN §7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.atomic import atomic_write_bytes
from tvr.errors import TvrError

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivf-fp16", "ivf-sq8", "ivf-pq", "auto")
# `auto`: exact search up to this many vectors (~7 ms a query at 10^5 here), ivf-fp16 with 32 probes
# above (at 10^6: recall@10 0.999, 0.2 ms a query, 266 bytes a video; bench/results/index_scale.json)
AUTO_EXACT_UP_TO = 100_000


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS structure to build; parameters of the approximate ones."""

    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_lists: int = 0  # 0: about 4·sqrt(N)
    ivf_probe: int = 16
    pq_bytes: int = 0  # ivf-pq: bytes per code (0: about dim / 4, a divisor of dim)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise TvrError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")

    def resolved(self, n: int) -> IndexSpec:
        """This spec with `auto` replaced by the kind it picks for `n` vectors."""
        if self.kind != "auto":
            return self
        from dataclasses import replace

        if n <= AUTO_EXACT_UP_TO:
            return replace(self, kind="flat")
        return replace(self, kind="ivf-fp16", ivf_probe=max(self.ivf_probe, 32))


class VectorIndex:
    """Top-k inner-product search over float32 vectors; ids are row numbers of the gallery."""

    def __init__(self, index: object, spec: IndexSpec) -> None:
        self._index = index
        self.spec = spec

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, spec: IndexSpec = IndexSpec()) -> VectorIndex:
        import faiss

        x = _as_matrix(vectors, "gallery vectors")
        n, d = x.shape
        spec = spec.resolved(n)
        ip = faiss.METRIC_INNER_PRODUCT
        if spec.kind == "flat" or n < 64:
            index = faiss.IndexFlatIP(d)
        elif spec.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, spec.hnsw_m, ip)
            index.hnsw.efSearch = spec.hnsw_ef_search
        else:
            lists = spec.ivf_lists or max(1, min(n // 39, int(4 * np.sqrt(n))))
            quantizer = faiss.IndexFlatIP(d)
            if spec.kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, d, lists, ip)
            elif spec.kind in ("ivf-fp16", "ivf-sq8"):
                bits = faiss.ScalarQuantizer.QT_fp16 if spec.kind == "ivf-fp16" else faiss.ScalarQuantizer.QT_8bit
                index = faiss.IndexIVFScalarQuantizer(quantizer, d, lists, bits, ip)
            else:
                index = faiss.IndexIVFPQ(quantizer, d, lists, pq_subquantizers(d, spec.pq_bytes), 8, ip)
            index.train(_training_sample(x, lists))
            index.nprobe = min(spec.ivf_probe, lists)
        index.add(x)
        return cls(index, spec)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], ids [Q, k]) best first; k is capped at the gallery size."""
        q = _as_matrix(queries, "query vectors")
        if q.shape[1] != self.dim:
            raise TvrError(f"query vectors have dimension {q.shape[1]}, the index holds {self.dim}")
        k = max(1, min(int(k), len(self)))
        scores, ids = self._index.search(q, k)
        return scores, ids

    def save(self, path: str | Path) -> str:
        """Write the index atomically; returns its sha256 (store it to verify on load)."""
        import faiss

        data = faiss.serialize_index(self._index).tobytes()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, spec: IndexSpec, sha256: str | None = None) -> VectorIndex:
        import faiss

        path = Path(path)
        data = read_index_file(path, sha256)
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise TvrError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from None
        return cls(index, spec)  # search parameters (nprobe, efSearch) are the build's, saved in the file

    def nbytes(self) -> int:
        """Size of the serialised index (what it holds in memory, near enough)."""
        import faiss

        return int(faiss.serialize_index(self._index).nbytes)


def read_index_file(path: Path, sha256: str | None) -> bytes:
    """The bytes of one of an index's vector files, checked against the sha256 index.json records."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TvrError(f"{path}: index file missing") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise TvrError(f"{path}: checksum mismatch (the index file is corrupt or was replaced)")
    return data


def pq_subquantizers(d: int, pq_bytes: int = 0) -> int:
    """Sub-quantizers of an ivf-pq code (one byte each): a divisor of `d`, near `pq_bytes` (default d / 4)."""
    want = pq_bytes or max(1, d // 4)
    return min((m for m in range(1, d + 1) if d % m == 0), key=lambda m: (abs(m - want), m))


def _training_sample(x: np.ndarray, lists: int) -> np.ndarray:
    """At most 64 points per list for k-means (FAISS's own advice), drawn with a fixed seed."""
    limit = 64 * lists
    if len(x) <= limit:
        return x
    rows = np.random.default_rng(0).choice(len(x), size=limit, replace=False)
    return x[np.sort(rows)]


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise TvrError(f"{what} must be a non-empty 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise TvrError(f"{what} contain NaN or inf")
    return x


def exact_top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-k by inner product (numpy reference, best first)."""
    scores = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, 1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, 1)


def recall_vs_exact(index: VectorIndex, queries: np.ndarray, gallery: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-k that the index returns (1.0 = exact), averaged over queries."""
    truth = exact_top_k(queries, gallery, k)
    _, got = index.search(queries, k)
    hits = [len(set(t.tolist()) & set(g.tolist())) for t, g in zip(truth, got, strict=True)]
    return float(np.mean(hits) / truth.shape[1])
