"""QB-Norm family: IS, DIS, CSLS, GC and CENT, each re-scoring query rows with QueryBank statistics.

All work on float64 [Q, G] rows and cost O(G) per query (GC: O(G log B)); exponentials stay in log
space, so ×100 logit-scale scores with β=20 do not overflow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tvr.errors import TvrError
from tvr.postproc.querybank import QueryBank
from tvr.postproc.registry import PostProcessor, PostprocParams, register


def inverted_softmax(bank: QueryBank, s: np.ndarray) -> np.ndarray:
    """IS: β·s(q,g) − log Σ_b exp(β·s(b,g)), the log of exp(β·s)/Z_g."""
    return bank.beta * s - bank.log_z


def dynamic_inverted_softmax(bank: QueryBank, s: np.ndarray) -> np.ndarray:
    """DIS: IS on rows whose raw top-1 is in the activation set, β·s (same order as raw) elsewhere.

    Keeping β·s rather than s puts both kinds of rows on QB-Norm's log-exp scale.
    """
    out = bank.beta * s
    hit = bank.active[np.argmax(s, axis=1)]
    out[hit] -= bank.log_z
    return out


def csls(bank: QueryBank, s: np.ndarray) -> np.ndarray:
    """CSLS: 2·s − r_B(g) − r_G(q), r = mean of the k highest neighbour similarities."""
    n_g = s.shape[1]
    k = min(bank.csls_k, n_g)
    r_query = np.partition(s, n_g - k, axis=1)[:, n_g - k :].mean(axis=1)
    return 2.0 * s - bank.r_bank - r_query[:, None]


def globally_corrected(bank: QueryBank, s: np.ndarray) -> np.ndarray:
    """GC: −(rank of q among B∪{q} by similarity to g), ties in rank broken by s.

    The rank averages over bank scores equal to s(q,g); the tie-break adds a term in [0, 0.25],
    increasing in s, below the 0.5 step between distinct average ranks.
    """
    if not bank.has_gc:
        raise TvrError("this querybank was built without GC statistics (with_gc=False); rebuild it to use gc")
    below = _count_sorted(bank.sorted_bank, s, strict=True)  # bank scores < s
    below_eq = _count_sorted(bank.sorted_bank, s, strict=False)  # bank scores ≤ s
    rank = 1.0 + (bank.n_bank - below_eq) + (below_eq - below) / 2.0
    lo = s.min(axis=1, keepdims=True)
    span = s.max(axis=1, keepdims=True) - lo
    tie_break = np.divide(s - lo, span, out=np.zeros_like(s), where=span > 0)
    return -rank + 0.25 * tie_break


def centring(bank: QueryBank, s: np.ndarray) -> np.ndarray:
    """CENT: s(q,g) − mean_b s(b,g)."""
    return s - bank.bank_mean


def _count_sorted(sorted_gb: np.ndarray, values_qg: np.ndarray, *, strict: bool) -> np.ndarray:
    """Per (q, g): how many of g's ascending bank scores are < (strict) or ≤ the value; a vectorised
    binary search, O(log B) passes over [Q, G]."""
    n_g, n_b = sorted_gb.shape
    flat = sorted_gb.reshape(-1)  # rows are contiguous: item g's scores start at g·B
    base = np.arange(n_g, dtype=np.int64) * n_b
    lo = np.zeros(values_qg.shape, dtype=np.int64)
    hi = np.full(values_qg.shape, n_b, dtype=np.int64)
    for _ in range(int(n_b).bit_length()):
        mid = (lo + hi) >> 1
        probe = np.take(flat, base + np.minimum(mid, n_b - 1))
        go_right = (probe < values_qg) if strict else (probe <= values_qg)
        go_right &= mid < hi
        np.copyto(lo, mid + 1, where=go_right)
        np.copyto(hi, mid, where=~go_right)
    return lo


NORMALIZERS: dict[str, Callable[[QueryBank, np.ndarray], np.ndarray]] = {
    "is": inverted_softmax,
    "dis": dynamic_inverted_softmax,
    "csls": csls,
    "gc": globally_corrected,
    "cent": centring,
}

_SUMMARIES = {
    "is": "inverted softmax over the querybank (QB-Norm)",
    "dis": "dynamic inverted softmax, QB-Norm's default",
    "csls": "cross-domain similarity local scaling",
    "gc": "globally corrected rank among the querybank",
    "cent": "centring by the querybank mean",
}


def _bank_method(name: str) -> Callable[[np.ndarray, PostprocParams, QueryBank | None], np.ndarray]:
    def apply(scores_qg: np.ndarray, params: PostprocParams, bank: QueryBank | None) -> np.ndarray:
        assert bank is not None  # registry.apply_postproc guarantees a bank for these methods
        return bank.normalize(name, scores_qg)

    return apply


for _name, _summary in _SUMMARIES.items():
    register(PostProcessor(_name, _bank_method(_name), needs_querybank=True, transductive=False, summary=_summary))
