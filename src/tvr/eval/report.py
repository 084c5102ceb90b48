"""The metric document of one evaluation (DESIGN §9) and its terminal table.

Both directions' recalls after post-processing, hubness before and after it, and the labels a
reader needs to judge the numbers (method, split, post-processor, whether it is transductive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tvr.eval.hubness import DEFAULT_K, hubness
from tvr.eval.metrics import GroundTruth, normalize_gt, retrieval_metrics
from tvr.postproc.scores import check_scores

if TYPE_CHECKING:
    from rich.table import Table

    from tvr.postproc.querybank import QueryBank

METRIC_KEYS = ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR", "rsum")


def score_report(
    scores_qg: np.ndarray,
    gt: GroundTruth,
    *,
    postproc: str = "none",
    querybank_bg: "np.ndarray | QueryBank | None" = None,
    beta: float = 20.0,
    k: int | None = None,
    temperature: float = 1.0,
    method: str | None = None,
    split: str | None = None,
    hubness_k: int = DEFAULT_K,
) -> dict[str, Any]:
    """Evaluate a query×gallery score matrix (optionally post-processed) into the §9 metric JSON.

    "hubness" describes the scores that were ranked (after post-processing), "hubness_before" the
    raw ones. v2t is the transpose of the post-processed matrix for none/dsl/tvh; a querybank
    method normalises t2v only, so its v2t comes from the raw scores ("v2t_from" says which).
    """
    from tvr.postproc import apply_postproc

    raw = check_scores(scores_qg, "scores")
    n_q, n_g = raw.shape
    normalize_gt(gt, n_q, n_g)  # fail on bad ground truth before any post-processing work
    final = apply_postproc(postproc, raw, querybank_bg, beta=beta, k=k, temperature=temperature)
    return report_of_final(raw, final, gt, postproc=postproc, querybank_bg=querybank_bg, beta=beta, k=k,
                           temperature=temperature, method=method, split=split, hubness_k=hubness_k)


def report_of_final(
    raw: np.ndarray,
    final: np.ndarray,
    gt: GroundTruth,
    *,
    postproc: str,
    querybank_bg: "np.ndarray | QueryBank | None",
    beta: float,
    k: int | None,
    temperature: float,
    method: str | None = None,
    split: str | None = None,
    hubness_k: int = DEFAULT_K,
) -> dict[str, Any]:
    """`score_report` for scores already post-processed: `final` is what `postproc` (with these
    parameters) made of `raw`; the caller keeps `final` for its own use (ranks, re-ranking)."""
    from tvr.postproc import get_postproc

    n_q, n_g = raw.shape
    entry = get_postproc(postproc)
    metrics = retrieval_metrics(final, gt)
    if entry.needs_querybank:
        # a text querybank normalises the text→video direction only (QB-Norm uses a video bank for
        # v2t); the transpose would mix rows normalised differently (DIS), so v2t stays raw
        metrics["v2t"] = retrieval_metrics(raw, gt)["v2t"]
    report: dict[str, Any] = {
        "method": method,
        "split": split,
        "postproc": entry.name,
        "transductive": entry.transductive,
        "n_queries": n_q,
        "n_gallery": n_g,
        "t2v": metrics["t2v"],
        "v2t": metrics["v2t"],
        "v2t_from": "raw" if entry.needs_querybank else "postproc",
        "hubness": hubness(final, hubness_k),
        "hubness_before": hubness(raw, hubness_k),
        "hubness_k": min(hubness_k, n_g),
    }
    if entry.needs_querybank:
        report["postproc_params"] = _bank_params(querybank_bg, beta, k, postproc)
    elif postproc == "dsl":
        report["postproc_params"] = {"temperature": temperature}
    return report


def _bank_params(bank: Any, beta: float, k: int | None, name: str) -> dict[str, Any]:
    from tvr.postproc.querybank import QueryBank

    if isinstance(bank, QueryBank):
        beta, n_bank = bank.beta, bank.n_bank
        k_used = {"dis": bank.dis_k, "csls": bank.csls_k}.get(name)
    else:
        n_bank = int(np.asarray(bank).shape[0])
        k_used = {"dis": k or 1, "csls": k or 10}.get(name)
    params: dict[str, Any] = {"n_querybank": n_bank}
    if name in ("is", "dis"):
        params["beta"] = beta
    if k_used is not None:
        params["k"] = k_used
    return params


def format_report_table(report: dict[str, Any]) -> "Table":
    """Recalls per direction, then hubness before → after, as one rich table."""
    from rich.table import Table

    label = report["postproc"] + (" (transductive)" if report.get("transductive") else "")
    who = " · ".join(str(x) for x in (report.get("method"), report.get("split")) if x)
    title = f"{who + ' · ' if who else ''}post-processing: {label}"
    before, after = report["hubness_before"], report["hubness"]
    k = report.get("hubness_k", DEFAULT_K)
    cov = report.get("coverage")
    n_left_out = 0 if cov is None else cov["videos_total"] - cov["videos"]
    left_out = "" if cov is None else (
        f"covers {cov['videos']} of {cov['videos_total']} videos, {cov['queries']} of {cov['queries_total']} queries "
        f"({n_left_out} video{'' if n_left_out == 1 else 's'} could not be decoded)\n"
    )
    caption = (
        left_out
        + f"{report['n_queries']} queries × {report['n_gallery']} gallery items"
        f"{'' if report.get('v2t_from', 'postproc') == 'postproc' else '; v2t on raw scores'}\n"
        f"hubness N{k}, raw → post-processed:\n"
        f"skewness {before['skewness']:.2f} → {after['skewness']:.2f} · "
        f"max {before['max_occurrence']} → {after['max_occurrence']} · "
        f"never retrieved {100 * before['never_retrieved']:.1f}% → {100 * after['never_retrieved']:.1f}%"
    )
    table = Table(title=title, caption=caption, min_width=76)
    table.add_column("", style="bold")
    for key in METRIC_KEYS:
        table.add_column(key, justify="right")
    for direction in ("t2v", "v2t"):
        m = report[direction]
        table.add_row(direction, *(_fmt(key, m[key]) for key in METRIC_KEYS))
    return table


def _fmt(key: str, value: float) -> str:
    return f"{value:.1f}" if key in ("MdR", "MnR") else f"{value:.2f}"
