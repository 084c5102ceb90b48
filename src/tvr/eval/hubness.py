"""Hubness diagnostics: how unevenly gallery items show up in the queries' top-k lists.

A hub is an item that lands in many queries' top-k regardless of the query; hubness shows as a
right-skewed k-occurrence distribution, a large maximum and many items nobody retrieves.
"""

from __future__ import annotations

import numpy as np

from tvr.errors import TvrError
from tvr.postproc.scores import top_k_mask

DEFAULT_K = 10
_ROW_CHUNK_BYTES = 64 << 20


def k_occurrence(scores_qg: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """N_k(g): how many queries have gallery item g among their top-k (ties: lower column first)."""
    scores = np.asarray(scores_qg)
    if scores.ndim != 2 or scores.size == 0:
        raise TvrError(f"scores must be a non-empty 2-D matrix, got shape {scores.shape}")
    if k < 1:
        raise TvrError(f"hubness k must be at least 1, got {k}")
    n_q, n_g = scores.shape
    counts = np.zeros(n_g, dtype=np.int64)
    step = max(1, _ROW_CHUNK_BYTES // max(1, n_g))
    for lo in range(0, n_q, step):
        counts += top_k_mask(scores[lo : lo + step], k).sum(axis=0)
    return counts


def skewness(values: np.ndarray) -> float:
    """Population skewness E[(x−μ)³]/σ³; 0 when all values are equal."""
    x = np.asarray(values, dtype=np.float64)
    centred = x - x.mean()
    sigma = np.sqrt(np.mean(centred**2))
    if sigma == 0.0:
        return 0.0
    return float(np.mean(centred**3) / sigma**3)


def hubness(scores_qg: np.ndarray, k: int = DEFAULT_K) -> dict[str, float]:
    """Skewness of N_k, the largest N_k, and the share (0–1) of gallery items no query retrieves."""
    counts = k_occurrence(scores_qg, k)
    return {
        "skewness": skewness(counts),
        "max_occurrence": int(counts.max()),
        "never_retrieved": float(np.mean(counts == 0)),
    }
