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


def dynamic_inverted_softmax(bank: QueryBank, s: np.ndarray, use_is: np.ndarray | None = None) -> np.ndarray:
    """DIS: IS on rows whose raw top-1 is in the activation set, β·s (same order as raw) elsewhere.

    Keeping β·s rather than s puts both kinds of rows on QB-Norm's log-exp scale. `use_is`: the
    per-row choice made over a larger gallery (`merge_row_terms`) when `s` is a shard's part of it.
    """
    if use_is is None:
        use_is = merge_row_terms("dis", bank, [row_terms("dis", bank, s)])["use_is"]
    out = bank.beta * s
    out[np.asarray(use_is, dtype=bool)] -= bank.log_z
    return out


def csls(bank: QueryBank, s: np.ndarray, r_query: np.ndarray | None = None) -> np.ndarray:
    """CSLS: 2·s − r_B(g) − r_G(q), r = mean of the k highest neighbour similarities.

    `r_query`: r_G(q) over a larger gallery (`merge_row_terms`) when `s` is a shard's part of it.
    """
    if r_query is None:
        r_query = merge_row_terms("csls", bank, [row_terms("csls", bank, s)])["r_query"]
    return 2.0 * s - bank.r_bank - np.asarray(r_query)[:, None]


def globally_corrected(bank: QueryBank, s: np.ndarray, score_range: np.ndarray | None = None) -> np.ndarray:
    """GC: −(rank of q among B∪{q} by similarity to g), ties in rank broken by s.

    The rank averages over bank scores equal to s(q,g); the tie-break adds a term in [0, 0.25],
    increasing in s, below the 0.5 step between distinct average ranks. It scales s by the row's
    range: `score_range` [2, Q] (min, max) over a larger gallery when `s` is a shard's part of it.
    """
    if not bank.has_gc:
        raise TvrError("this querybank was built without GC statistics (with_gc=False); rebuild it to use gc")
    if score_range is None:
        score_range = merge_row_terms("gc", bank, [row_terms("gc", bank, s)])["score_range"]
    below = _count_sorted(bank.sorted_bank, s, strict=True)  # bank scores < s
    below_eq = _count_sorted(bank.sorted_bank, s, strict=False)  # bank scores ≤ s
    rank = 1.0 + (bank.n_bank - below_eq) + (below_eq - below) / 2.0
    lo, hi = (np.asarray(x, dtype=np.float64)[:, None] for x in score_range)
    span = hi - lo
    tie_break = np.divide(s - lo, span, out=np.zeros_like(s), where=span > 0)
    return -rank + 0.25 * tie_break


def row_terms(name: str, bank: QueryBank, s: np.ndarray) -> dict[str, np.ndarray]:
    """What the scores `s` [Q, G] of one part of a gallery contribute to the per-query terms of method
    `name` that depend on the whole row (none for IS and CENT); `merge_row_terms` combines the parts.

    CSLS: each query's csls_k highest scores; DIS: its top-1 score and whether that item is active;
    GC: its lowest and highest score.
    """
    if name == "csls":
        k = min(bank.csls_k, s.shape[1])
        return {"top": np.partition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k :]}
    if name == "dis":
        best = np.argmax(s, axis=1)
        return {"best": s[np.arange(len(s)), best], "best_active": bank.active[best]}
    if name == "gc":
        return {"lo": s.min(axis=1), "hi": s.max(axis=1)}
    return {}


def merge_row_terms(name: str, bank: QueryBank, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The whole row's terms from its parts' `row_terms`, as keyword arguments of the method's function.

    Parts in gallery order; DIS breaks a tie between parts' top-1 scores toward the earlier part, as
    an argmax over the whole row does.
    """
    if name == "csls":
        top = np.concatenate([p["top"] for p in parts], axis=1)
        k = min(bank.csls_k, top.shape[1])
        return {"r_query": np.partition(top, top.shape[1] - k, axis=1)[:, top.shape[1] - k :].mean(axis=1)}
    if name == "dis":
        owner = np.argmax(np.stack([p["best"] for p in parts], axis=1), axis=1)
        flags = np.stack([p["best_active"] for p in parts], axis=1)
        return {"use_is": flags[np.arange(len(owner)), owner]}
    if name == "gc":
        return {"score_range": np.stack([np.min([p["lo"] for p in parts], axis=0), np.max([p["hi"] for p in parts], axis=0)])}
    return {}


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


NORMALIZERS: dict[str, Callable[..., np.ndarray]] = {  # (bank, scores, **merge_row_terms)
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
