"""TVH: a maximum-weight one-to-one query↔item assignment over the test set. Transductive.

Each query's assigned item moves to first place; the rest keep their raw order. With more queries
than items, the queries left without an item keep their raw ranking.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from tvr.postproc.registry import PostProcessor, PostprocParams, register


def hungarian(scores_qg: np.ndarray) -> np.ndarray:
    """Raw scores with each assigned (query, item) pair lifted above the query's best score."""
    s = np.asarray(scores_qg, dtype=np.float64)
    rows, cols = linear_sum_assignment(s, maximize=True)
    out = s.copy()
    row_max = s.max(axis=1)[rows]
    out[rows, cols] = row_max + np.maximum(1.0, np.abs(row_max))  # strictly above, at any scale
    return out


def _apply(scores_qg: np.ndarray, params: PostprocParams, bank: object) -> np.ndarray:
    return hungarian(scores_qg)


register(
    PostProcessor(
        "tvh",
        _apply,
        needs_querybank=False,
        transductive=True,
        summary="Hungarian one-to-one assignment over the test queries (transductive)",
    )
)
