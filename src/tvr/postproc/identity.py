"""`none`: the raw scores, so "no post-processing" goes through the same path as the others."""

from __future__ import annotations

import numpy as np

from tvr.postproc.registry import PostProcessor, PostprocParams, register


def _identity(scores_qg: np.ndarray, params: PostprocParams, bank: object) -> np.ndarray:
    return np.array(scores_qg, dtype=np.float64, copy=True)


register(PostProcessor("none", _identity, needs_querybank=False, transductive=False, summary="raw scores"))
