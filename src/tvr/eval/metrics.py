"""Retrieval metrics from a query×gallery score matrix: R@k, median/mean rank, rsum, both directions.

Ranks are 1-based. Tied scores share the average of the positions they span, so a matrix of equal
scores gives the rank a random order would give on average instead of a flattering R@1 = 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np

from tvr.errors import TvrError

RECALL_KS = (1, 5, 10, 50)
_ROW_CHUNK_BYTES = 64 << 20  # bound the temporary boolean matrices, not the input

GroundTruth = Sequence[int | Sequence[int]]


def normalize_gt(gt: GroundTruth, n_queries: int, n_gallery: int, what: str = "ground truth") -> list[np.ndarray]:
    """One non-empty int array of correct gallery columns per query row, validated against the shape."""
    if isinstance(gt, np.ndarray):
        gt = gt.tolist()
    if isinstance(gt, (str, bytes)) or not isinstance(gt, Sequence):
        raise TvrError(f"{what} must be a list with one entry per query row, got {type(gt).__name__}")
    if len(gt) != n_queries:
        raise TvrError(f"{what} has {len(gt)} entries but the score matrix has {n_queries} query rows")
    out: list[np.ndarray] = []
    for i, entry in enumerate(gt):
        cols = [entry] if _is_int(entry) else entry
        if isinstance(cols, np.ndarray):
            cols = cols.tolist()
        if isinstance(cols, (str, bytes)) or not isinstance(cols, Sequence) or not all(_is_int(c) for c in cols):
            raise TvrError(f"{what} entry {i} must be a gallery column or a list of columns, got {entry!r}")
        if len(cols) == 0:
            raise TvrError(f"{what} entry {i} is an empty list; every query needs a correct gallery column")
        arr = np.asarray([int(c) for c in cols], dtype=np.int64)
        bad = arr[(arr < 0) | (arr >= n_gallery)]
        if bad.size:
            raise TvrError(
                f"{what} entry {i} names gallery column {int(bad[0])}, out of range for {n_gallery} gallery items"
            )
        out.append(np.unique(arr))
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def ranks(scores_qg: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """1-based rank of each query's best-ranked correct item; ties take their average position.

    An item's rank is (#items scoring higher) + (#items scoring equal, itself included + 1) / 2; a
    query with several correct items takes the smallest such rank. -inf is allowed (a sentinel), NaN
    is not.
    """
    scores = np.asarray(scores_qg)
    if scores.ndim != 2:
        raise TvrError(f"scores must be a 2-D query×gallery matrix, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise TvrError("scores contain NaN")
    n_q, n_g = scores.shape
    cols = normalize_gt(gt, n_q, n_g)
    lengths = np.fromiter((c.size for c in cols), dtype=np.int64, count=n_q)
    # padded [Q, M] column table; padding repeats the first column so max() is unaffected
    width = int(lengths.max()) if n_q else 1
    table = np.empty((n_q, width), dtype=np.int64)
    for i, c in enumerate(cols):
        table[i, : c.size] = c
        table[i, c.size :] = c[0]
    best = np.take_along_axis(scores, table, axis=1).max(axis=1)  # [Q] best correct score
    out = np.empty(n_q, dtype=np.float64)
    step = max(1, _ROW_CHUNK_BYTES // max(1, n_g))
    for lo in range(0, n_q, step):
        block = scores[lo : lo + step]
        ref = best[lo : lo + step, None]
        higher = np.count_nonzero(block > ref, axis=1)
        equal = np.count_nonzero(block == ref, axis=1)
        out[lo : lo + step] = higher + (equal + 1) / 2.0
    return out


def recall_summary(ranks_q: np.ndarray) -> dict[str, float]:
    """R@1/5/10/50 in percent, median and mean rank, rsum = R@1 + R@5 + R@10."""
    r = np.asarray(ranks_q, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise TvrError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    summary = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in RECALL_KS}
    summary["MdR"] = float(np.median(r))
    summary["MnR"] = float(np.mean(r))
    summary["rsum"] = summary["R@1"] + summary["R@5"] + summary["R@10"]
    return summary


def video_to_text_gt(gt: GroundTruth, n_queries: int, n_gallery: int) -> tuple[np.ndarray, list[list[int]]]:
    """Invert text→video ground truth: the gallery items that have a caption, and their caption rows."""
    cols = normalize_gt(gt, n_queries, n_gallery)
    captions: list[list[int]] = [[] for _ in range(n_gallery)]
    for q, c in enumerate(cols):
        for g in c:
            captions[int(g)].append(q)
    has = np.array([g for g in range(n_gallery) if captions[g]], dtype=np.int64)
    return has, [captions[g] for g in has]


def retrieval_metrics(scores_qg: np.ndarray, gt: GroundTruth) -> dict[str, dict[str, float]]:
    """Text→video on the rows and video→text on the transpose.

    v2t ranks only gallery items that some query names (distractor videos have no caption to find);
    a video's rank is the best rank among its captions.
    """
    scores = np.asarray(scores_qg)
    if scores.ndim != 2:
        raise TvrError(f"scores must be a 2-D query×gallery matrix, got shape {scores.shape}")
    n_q, n_g = scores.shape
    t2v = recall_summary(ranks(scores, gt))
    videos, captions = video_to_text_gt(gt, n_q, n_g)
    v2t = recall_summary(ranks(scores.T[videos], captions))
    return {"t2v": t2v, "v2t": v2t}
