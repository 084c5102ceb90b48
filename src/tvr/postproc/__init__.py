"""Hubness post-processors: QB-Norm's IS/DIS, CSLS, GC, CENT (querybank) and DSL/TVH (transductive)."""

from tvr.postproc.querybank import QueryBank
from tvr.postproc.registry import (
    PostProcessor,
    apply_postproc,
    get_postproc,
    is_transductive,
    needs_querybank,
    postproc_names,
)

__all__ = [
    "PostProcessor",
    "QueryBank",
    "apply_postproc",
    "get_postproc",
    "is_transductive",
    "needs_querybank",
    "postproc_names",
]
