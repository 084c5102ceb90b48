"""QueryBank: per-gallery statistics of a querybank, computed once so one query costs O(N).

Stored beside an index: log Z_g (IS), DIS activation flags, r_B(g) (CSLS), the bank mean (CENT) and
each gallery item's sorted bank scores (GC). Built from querybank×gallery scores, whole or in
gallery-column chunks, so a gallery larger than memory can be processed piece by piece.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.atomic import commit_temp, temp_path_beside
from tvr.errors import TvrError
from tvr.postproc.scores import top_k_mask

FORMAT_NAME = "tvr-querybank"
FORMAT_VERSION = 1
_TENSORS = ("log_z", "active", "r_bank", "bank_mean", "sorted_bank")


@dataclass(frozen=True, eq=False)
class QueryBank:
    """Per-gallery querybank statistics (arrays are length G; `sorted_bank` is [G, B] ascending)."""

    beta: float
    dis_k: int
    csls_k: int
    n_bank: int
    log_z: np.ndarray  # [G] log Σ_b exp(β·s(b,g))
    active: np.ndarray  # [G] bool: g is in some bank query's top-dis_k
    r_bank: np.ndarray  # [G] mean of g's csls_k highest bank scores
    bank_mean: np.ndarray  # [G] mean_b s(b,g)
    sorted_bank: np.ndarray  # [G, B] bank scores per gallery item, ascending; [G, 0] if built without GC

    def __post_init__(self) -> None:
        # GC's binary search indexes the flat buffer: item g's scores must start at g·B
        object.__setattr__(self, "sorted_bank", np.ascontiguousarray(self.sorted_bank))

    @property
    def n_gallery(self) -> int:
        return int(self.log_z.shape[0])

    @property
    def has_gc(self) -> bool:
        return self.sorted_bank.shape[1] == self.n_bank

    @classmethod
    def from_scores(
        cls, bank_bg: np.ndarray, *, beta: float = 20.0, dis_k: int = 1, csls_k: int = 10, with_gc: bool = True
    ) -> QueryBank:
        """Statistics of a [B, G] querybank×gallery score matrix (same scale as the query scores)."""
        bank = np.asarray(bank_bg)
        step = max(1, (256 << 20) // max(1, 8 * bank.shape[0])) if bank.ndim == 2 else 1
        chunks = (bank[:, lo : lo + step] for lo in range(0, bank.shape[1], step)) if bank.ndim == 2 else [bank]
        return cls.from_score_chunks(chunks, beta=beta, dis_k=dis_k, csls_k=csls_k, with_gc=with_gc)

    @classmethod
    def from_score_chunks(
        cls,
        chunks_bg: Iterable[np.ndarray],
        *,
        beta: float = 20.0,
        dis_k: int = 1,
        csls_k: int = 10,
        with_gc: bool = True,
    ) -> QueryBank:
        """Statistics from consecutive gallery-column chunks [B, g_i] of the querybank scores.

        `with_gc=False` skips GC's sorted [G, B] scores, the only statistic that is not O(G).
        """
        if beta <= 0 or dis_k < 1 or csls_k < 1:
            raise TvrError(f"querybank needs beta > 0 and k ≥ 1 (got beta={beta}, dis_k={dis_k}, csls_k={csls_k})")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in _TENSORS if name != "active"}
        best_val: np.ndarray | None = None  # [B, ≤dis_k] running top-k per bank query (DIS)
        best_idx: np.ndarray | None = None
        n_bank: int | None = None
        offset = 0
        for chunk in chunks_bg:
            chunk = np.asarray(chunk)
            if chunk.ndim != 2:
                raise TvrError(f"querybank scores must be a 2-D querybank×gallery matrix, got shape {chunk.shape}")
            if n_bank is None:
                n_bank = chunk.shape[0]
                if n_bank == 0:
                    raise TvrError("querybank is empty (0 queries)")
            elif chunk.shape[0] != n_bank:
                raise TvrError(f"querybank chunk has {chunk.shape[0]} rows, expected {n_bank}")
            if chunk.shape[1] == 0:
                continue
            if not np.isfinite(chunk).all():
                raise TvrError("querybank scores contain NaN or inf")
            if not np.issubdtype(chunk.dtype, np.floating):
                chunk = chunk.astype(np.float64)
            wide = chunk.astype(np.float64)
            parts["log_z"].append(_logsumexp_columns(beta * wide))
            parts["bank_mean"].append(wide.mean(axis=0))
            k = min(csls_k, n_bank)
            parts["r_bank"].append(np.partition(wide, n_bank - k, axis=0)[n_bank - k :].mean(axis=0))
            gc_part = np.sort(chunk.T, axis=1) if with_gc else np.empty((chunk.shape[1], 0), chunk.dtype)
            parts["sorted_bank"].append(gc_part)
            best_val, best_idx = _merge_top_k(best_val, best_idx, chunk, offset, dis_k)
            offset += chunk.shape[1]
        if n_bank is None or offset == 0:
            raise TvrError("querybank is empty (no queries or no gallery items)")
        active = np.zeros(offset, dtype=bool)
        active[best_idx.ravel()] = True
        return cls(
            beta=float(beta),
            dis_k=int(dis_k),
            csls_k=int(csls_k),
            n_bank=int(n_bank),
            log_z=np.concatenate(parts["log_z"]),
            active=active,
            r_bank=np.concatenate(parts["r_bank"]),
            bank_mean=np.concatenate(parts["bank_mean"]),
            sorted_bank=np.concatenate(parts["sorted_bank"], axis=0),
        )

    def select(self, rows: np.ndarray | list[int]) -> QueryBank:
        """The statistics of gallery items `rows`, in that order.

        A shard's part of a bank built over the whole gallery: every statistic is per item, and the
        DIS activation flags stay those of the whole gallery (a top-1 over all items, not the shard's).
        """
        idx = np.asarray(rows, dtype=np.int64)
        return QueryBank(
            beta=self.beta, dis_k=self.dis_k, csls_k=self.csls_k, n_bank=self.n_bank, log_z=self.log_z[idx],
            active=self.active[idx], r_bank=self.r_bank[idx], bank_mean=self.bank_mean[idx],
            sorted_bank=self.sorted_bank[idx],
        )

    def normalize(self, name: str, scores_qg: np.ndarray, terms: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Scores of one query [G] or many [Q, G] re-scored by querybank method `name` (O(G) per query).

        `terms`: when the scores are one shard's part of a larger gallery, the per-query terms of the
        whole row (`tvr.postproc.qbnorm.merge_row_terms` over every part's `row_terms`); None: from
        these scores.
        """
        from tvr.postproc.qbnorm import NORMALIZERS

        try:
            fn = NORMALIZERS[name]
        except KeyError:
            from tvr.errors import UnknownName

            raise UnknownName("querybank post-processor", name, NORMALIZERS) from None
        scores = np.asarray(scores_qg)
        if scores.ndim not in (1, 2) or scores.shape[-1] != self.n_gallery:
            raise TvrError(
                f"scores of shape {scores.shape} do not match a querybank over {self.n_gallery} gallery items"
            )
        out = fn(self, np.atleast_2d(scores).astype(np.float64), **(terms or {}))
        return out[0] if scores.ndim == 1 else out

    def folded_is_vectors(
        self, query_vecs: np.ndarray, gallery_vecs: np.ndarray, scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """IS folded into an inner product: query [q, 1], gallery [β·scale·g, −log Z_g].

        `scale` is the factor that turns q·g into the scores the bank was built on (1 for cosines,
        the logit scale for logit-scaled scores). ⟨query', gallery'⟩ equals the IS score exactly.
        """
        q = np.asarray(query_vecs, dtype=np.float64)
        g = np.asarray(gallery_vecs, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] != self.n_gallery:
            raise TvrError(f"gallery vectors of shape {g.shape} do not match {self.n_gallery} gallery items")
        if q.shape[-1] != g.shape[1]:
            raise TvrError(f"query width {q.shape[-1]} differs from gallery width {g.shape[1]}")
        ones = np.ones(q.shape[:-1] + (1,), dtype=np.float64)
        return (
            np.concatenate([q, ones], axis=-1),
            np.concatenate([self.beta * scale * g, -self.log_z[:, None]], axis=1),
        )

    def conditioned_is_vectors(
        self, query_vecs: np.ndarray, gallery_vecs: np.ndarray, scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """IS folded for an approximate index: (query [q, 1], gallery [g, −(log Z_g − m) / (β·scale)], factor, m).

        m is the mean of log Z over the gallery. Each query's ranking is IS's exactly, and
        IS = factor·⟨query', gallery'⟩ − m with factor = β·scale. Unlike `folded_is_vectors`, the gallery
        vectors keep g's scale and gain one small coordinate, so an IVF's clustering and an 8-bit or
        product quantiser treat them as they treat g (the plain folding's −log Z coordinate, tens of
        units against g's unit norm, dominates both).
        """
        q, g = self.folded_is_vectors(query_vecs, gallery_vecs, scale)
        factor = self.beta * scale
        m = float(self.log_z.mean())
        g = np.concatenate([g[:, :-1] / factor, (g[:, -1:] + m) / factor], axis=1)
        return q, g, factor, m

    def save(self, path: str | Path) -> None:
        """safetensors with a JSON header (format name, version, β, k); written atomically."""
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {
            "log_z": np.ascontiguousarray(self.log_z, dtype=np.float64),
            "active": np.ascontiguousarray(self.active, dtype=np.uint8),
            "r_bank": np.ascontiguousarray(self.r_bank, dtype=np.float64),
            "bank_mean": np.ascontiguousarray(self.bank_mean, dtype=np.float64),
            "sorted_bank": np.ascontiguousarray(self.sorted_bank),
        }
        meta = {
            "format": FORMAT_NAME,
            "version": str(FORMAT_VERSION),
            "beta": repr(self.beta),
            "dis_k": str(self.dis_k),
            "csls_k": str(self.csls_k),
            "n_bank": str(self.n_bank),
        }
        tmp = temp_path_beside(path)
        try:
            save_file(tensors, str(tmp), metadata=meta)
            commit_temp(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path, *, n_gallery: int | None = None) -> QueryBank:
        """Read a saved bank; a missing file, wrong format/version or inconsistent shape is a TvrError."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise TvrError(f"querybank file {path} does not exist")
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != FORMAT_NAME:
                    raise TvrError(f"{path} is not a tvr querybank file")
                if meta.get("version") != str(FORMAT_VERSION):
                    raise TvrError(
                        f"{path} has querybank format version {meta.get('version')}, this tvr reads {FORMAT_VERSION}"
                    )
                missing = [t for t in _TENSORS if t not in fh.keys()]
                if missing:
                    raise TvrError(f"{path} lacks querybank tensor(s) {', '.join(missing)}")
                arrays = {t: fh.get_tensor(t) for t in _TENSORS}
                beta, dis_k, csls_k = float(meta["beta"]), int(meta["dis_k"]), int(meta["csls_k"])
                n_bank = int(meta["n_bank"])
        except TvrError:
            raise
        except Exception as exc:  # safetensors raises its own types for a corrupt header
            raise TvrError(f"cannot read querybank file {path}: {exc}") from None
        g = arrays["log_z"].shape
        sb = arrays["sorted_bank"]
        per_item_ok = len(g) == 1 and all(arrays[t].shape == g for t in ("active", "r_bank", "bank_mean"))
        if not per_item_ok or sb.ndim != 2 or sb.shape[0] != g[0] or sb.shape[1] not in (0, n_bank):
            raise TvrError(f"{path} has inconsistent querybank shapes: { {t: arrays[t].shape for t in _TENSORS} }")
        if n_gallery is not None and g[0] != n_gallery:
            raise TvrError(f"querybank {path} covers {g[0]} gallery items, expected {n_gallery}")
        return cls(
            beta=beta,
            dis_k=dis_k,
            csls_k=csls_k,
            n_bank=n_bank,
            log_z=arrays["log_z"],
            active=arrays["active"].astype(bool),
            r_bank=arrays["r_bank"],
            bank_mean=arrays["bank_mean"],
            sorted_bank=sb,
        )


def _merge_top_k(
    best_val: np.ndarray | None, best_idx: np.ndarray | None, chunk_bg: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Running top-k gallery columns per bank query; ties go to the lower column, as in top_k_mask."""
    width = chunk_bg.shape[1]
    k_here = min(k, width)
    mask = top_k_mask(chunk_bg, k_here)
    cols = np.nonzero(mask)[1].reshape(chunk_bg.shape[0], k_here)  # row-major: ascending columns
    vals = np.take_along_axis(chunk_bg, cols, axis=1).astype(np.float64)
    idx = cols + offset
    if best_val is not None:
        vals = np.concatenate([best_val, vals], axis=1)
        idx = np.concatenate([best_idx, idx], axis=1)
    order = np.lexsort((idx, -vals), axis=1)[:, :k]
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _logsumexp_columns(z_bg: np.ndarray) -> np.ndarray:
    """log Σ_b exp(z[b, g]) per column, max-shifted; overwrites `z_bg` (a temporary) to save memory."""
    top = z_bg.max(axis=0)
    z_bg -= top
    np.exp(z_bg, out=z_bg)
    return top + np.log(z_bg.sum(axis=0))
