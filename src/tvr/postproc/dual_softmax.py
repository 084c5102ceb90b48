"""DSL (dual softmax, CAMoE): weight each score by a softmax over the query axis. Transductive.

S' = S ⊙ softmax_q(S/τ): a gallery item's weight for query q is how strongly q, among all test
queries, claims it — which needs every test query at once.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from tvr.postproc.registry import PostProcessor, PostprocParams, register


def dual_softmax(scores_qg: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """S ⊙ softmax over queries of S/τ, with the softmax taken in log space (no overflow)."""
    s = np.asarray(scores_qg, dtype=np.float64)
    return s * np.exp(log_softmax(s / temperature, axis=0))


def _apply(scores_qg: np.ndarray, params: PostprocParams, bank: object) -> np.ndarray:
    return dual_softmax(scores_qg, params.temperature)


register(
    PostProcessor(
        "dsl",
        _apply,
        needs_querybank=False,
        transductive=True,
        summary="dual softmax over the test queries (transductive)",
    )
)
