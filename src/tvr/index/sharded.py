"""Search over several index shards (one per machine or process) with an exact top-k merge.

A gallery too large for one process is split into shards with disjoint row ranges; each shard
answers its local top-k and the merge keeps the global top-k. Because every shard returns its own
exact top-k, the merged result equals searching the whole gallery at once (for exact shards).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ShardSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def merge_top_k(
    results: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores [Q, k_s], local ids [Q, k_s]) into the global (scores, ids) top-k."""
    scores = np.concatenate([s for s, _ in results], axis=1)
    ids = np.concatenate(
        [np.where(i >= 0, i + off, -1) for (_, i), off in zip(results, offsets, strict=True)], axis=1
    )
    scores = np.where(ids >= 0, scores, -np.inf)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class ShardedSearch:
    """Fans a query batch out to shard searchers (local indexes, or remote calls) and merges."""

    def __init__(self, shards: Sequence[ShardSearch], sizes: Sequence[int]) -> None:
        if len(shards) != len(sizes) or not shards:
            raise ValueError("need one size per shard and at least one shard")
        self._shards = list(shards)
        self._offsets = np.cumsum([0, *sizes[:-1]]).tolist()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        results = [shard(queries, k) for shard in self._shards]
        return merge_top_k(results, self._offsets, k)
