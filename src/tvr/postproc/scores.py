"""Checks and selections on query × gallery score matrices, shared by post-processing and evaluation."""

from __future__ import annotations

import numpy as np

from tvr.errors import TvrError

_ROW_CHUNK_BYTES = 64 << 20  # bound the temporary matrices, not the input


def check_scores(scores_qg: np.ndarray, what: str = "scores") -> np.ndarray:
    """A non-empty, finite 2-D float matrix, or a TvrError naming what is wrong."""
    arr = np.asarray(scores_qg)
    if arr.ndim != 2:
        raise TvrError(f"{what} must be a 2-D query×gallery matrix, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TvrError(f"{what} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TvrError(f"{what} must hold numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        q, g = np.argwhere(~finite)[0]
        raise TvrError(f"{what} contains a non-finite value ({arr[q, g]}) at row {q}, column {g}")
    return arr



def top_k_mask(scores_qg: np.ndarray, k: int) -> np.ndarray:
    """Boolean [Q, G]: the k highest-scoring items per row; ties at the cut go to lower columns."""
    scores = np.asarray(scores_qg)
    n_q, n_g = scores.shape
    k = min(k, n_g)
    mask = np.zeros((n_q, n_g), dtype=bool)
    step = max(1, _ROW_CHUNK_BYTES // max(1, n_g))
    for lo in range(0, n_q, step):
        block = scores[lo : lo + step]
        kth = np.partition(block, n_g - k, axis=1)[:, n_g - k : n_g - k + 1]  # [b, 1] k-th largest
        above = block > kth
        room = k - np.count_nonzero(above, axis=1, keepdims=True)
        at = block == kth
        mask[lo : lo + step] = above | (at & (np.cumsum(at, axis=1) <= room))
    return mask
