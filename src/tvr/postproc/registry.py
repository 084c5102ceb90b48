"""Post-processors by name, and the one entry point that validates input and applies one of them.

Each method lives in its own module and registers a `PostProcessor`; querybank-based ones get a
`QueryBank` built here from the querybank×gallery scores (or passed in ready-made).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tvr.errors import TvrError
from tvr.registry import Registry

if TYPE_CHECKING:
    from tvr.postproc.querybank import QueryBank

DEFAULT_BETA = 20.0  # QB-Norm: inverse temperature on cosine scores
DEFAULT_TEMPERATURE = 1.0  # dual softmax: τ on logit-scaled scores


@dataclass(frozen=True)
class PostprocParams:
    """Knobs shared by the post-processors; `k=None` means each method's paper default."""

    beta: float = DEFAULT_BETA
    k: int | None = None
    temperature: float = DEFAULT_TEMPERATURE


@dataclass(frozen=True)
class PostProcessor:
    """A named re-scoring of a query×gallery matrix (float64 in, new float64 array out)."""

    name: str
    apply: Callable[[np.ndarray, PostprocParams, "QueryBank | None"], np.ndarray]
    needs_querybank: bool
    transductive: bool  # uses all test queries at once; never a default, always labelled
    summary: str


POSTPROCESSORS: Registry[PostProcessor] = Registry("post-processor", "tvr.postproc")


def register(entry: PostProcessor) -> PostProcessor:
    POSTPROCESSORS.add(entry.name, entry)
    return entry


def get_postproc(name: str) -> PostProcessor:
    return POSTPROCESSORS.get(name)


def postproc_names() -> list[str]:
    return POSTPROCESSORS.names()


def is_transductive(name: str) -> bool:
    return get_postproc(name).transductive


def needs_querybank(name: str) -> bool:
    return get_postproc(name).needs_querybank


def check_params(beta: float, k: int | None, temperature: float) -> PostprocParams:
    if not np.isfinite(beta) or beta <= 0:
        raise TvrError(f"beta must be a positive number, got {beta}")
    if k is not None and (isinstance(k, bool) or int(k) != k or k < 1):
        raise TvrError(f"k must be a positive integer, got {k}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise TvrError(f"temperature must be a positive number, got {temperature}")
    return PostprocParams(beta=float(beta), k=None if k is None else int(k), temperature=float(temperature))


def apply_postproc(
    name: str,
    scores_qg: np.ndarray,
    querybank_bg: "np.ndarray | QueryBank | None" = None,
    *,
    beta: float = DEFAULT_BETA,
    k: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
) -> np.ndarray:
    """Re-score `scores_qg` with post-processor `name`; the input is never modified.

    `querybank_bg` is the querybank×gallery score matrix on the same scale as `scores_qg` (or a
    prebuilt `QueryBank`, whose own β and k then apply). Transductive methods ignore it.
    """
    from tvr.postproc.querybank import QueryBank
    from tvr.postproc.scores import check_scores

    entry = get_postproc(name)
    params = check_params(beta, k, temperature)
    scores = check_scores(scores_qg, "scores").astype(np.float64)  # astype copies: input untouched
    bank = None
    if entry.needs_querybank:
        if querybank_bg is None:
            raise TvrError(f"post-processor {name!r} needs a querybank (querybank×gallery scores)")
        if isinstance(querybank_bg, QueryBank):
            bank = querybank_bg
        else:
            bank = QueryBank.from_scores(
                check_scores(querybank_bg, "querybank"),
                beta=params.beta,
                dis_k=params.k or 1,
                csls_k=params.k or 10,
                with_gc=name == "gc",  # the sorted [G, B] copy is only worth building for GC
            )
        if bank.n_gallery != scores.shape[1]:
            raise TvrError(
                f"querybank covers {bank.n_gallery} gallery items but the scores have {scores.shape[1]} columns"
            )
    return entry.apply(scores, params, bank)
