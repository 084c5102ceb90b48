"""Evaluate a trained model on a manifest split: encode captions and clips, score, report.

The scores handed to post-processing are on the cosine scale (the model's `similarity`); the
dual softmax, defined on logit-scaled scores, gets τ / logit_scale instead (same ranking).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.atomic import atomic_open
from tvr.data.clips import Clips
from tvr.data.pairs import DecodeFailure, PairSet, decode_failures
from tvr.data.streams import store_key
from tvr.errors import TvrError
from tvr.io.manifest import Manifest
from tvr.models.base import RetrievalModel
from tvr.models.encode import encode_clips, encode_texts, score_matrix
from tvr.postproc.registry import DEFAULT_BETA
from tvr.postproc.two_stage import TwoStage, rerank_pairs_scorer, two_stage_scores

SHOWN_FAILURES = 3  # undecodable videos named on the terminal; the JSON lists them all


@dataclass(frozen=True)
class Coverage:
    """How much of a manifest split the metrics cover once undecodable videos are left out."""

    videos: int
    videos_total: int
    queries: int
    queries_total: int
    failures: tuple[DecodeFailure, ...]

    @property
    def partial(self) -> bool:
        return self.videos < self.videos_total or self.queries < self.queries_total

    def to_json(self) -> dict[str, Any]:
        return {"videos": self.videos, "videos_total": self.videos_total, "queries": self.queries,
                "queries_total": self.queries_total,
                "failures": [{"video": f.video, "key": f.key, "error": f.error} for f in self.failures]}

    def warning(self) -> str:
        """One line naming the first few undecodable videos with their errors."""
        n_left_out = self.videos_total - self.videos
        shown = ", ".join(f"{f.video} ({f.error})" for f in self.failures[:SHOWN_FAILURES])
        more = n_left_out - min(len(self.failures), SHOWN_FAILURES)
        return (f"{n_left_out} of {self.videos_total} videos could not be decoded and were left out: "
                f"{shown}{f' …and {more} more' if more > 0 else ''}")


def coverage_of(manifest: Manifest, pairs: PairSet, store_dir: Path) -> Coverage:
    """What `pairs` (loaded from `manifest` through the store at `store_dir`) keeps of `manifest`."""
    failures = decode_failures(manifest, store_dir) if pairs.skipped else []
    return Coverage(videos=len(pairs.clips), videos_total=len({store_key(manifest, e) for e in manifest.entries}),
                    queries=len(pairs.entries), queries_total=len(manifest.entries), failures=tuple(failures))


def tags_of(extra: dict[str, Any]) -> list[str]:
    """The tags of a manifest entry ("tags": list or string), as strings."""
    tags = extra.get("tags")
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, (list, tuple)):
        return [str(t) for t in tags]
    return [str(tags)]


def metrics_by_tag(final_qg: np.ndarray, gt: Sequence[int], entries: Sequence[Any]) -> dict[str, dict[str, float]]:
    """t2v metrics over the queries carrying each tag (the gallery stays whole)."""
    from tvr.eval.metrics import ranks, recall_summary

    r = ranks(final_qg, list(gt))
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        for tag in tags_of(e.extra):
            groups.setdefault(tag, []).append(i)
    out = {}
    for tag in sorted(groups):
        summary = recall_summary(r[groups[tag]])
        summary["n_queries"] = len(groups[tag])
        out[tag] = summary
    return out


def write_ranks(
    path: Path, final_qg: np.ndarray, gt: Sequence[int], entries: Sequence[Any], gallery: Sequence[str], top: int = 5
) -> None:
    """One JSON line per query: caption, video, the rank of its video, the top videos with scores,
    plus the entry's extra manifest fields (e.g. tags)."""
    from tvr.eval.metrics import ranks

    r = ranks(final_qg, list(gt))
    k = min(top, final_qg.shape[1])
    best = np.argsort(-final_qg, axis=1, kind="stable")[:, :k]
    with atomic_open(path, "w") as fh:
        for i, e in enumerate(entries):
            doc: dict[str, Any] = {
                "caption": e.caption,
                "video": e.video,
                "rank": float(r[i]),
                "top": [{"video": gallery[j], "score": float(final_qg[i, j])} for j in best[i]],
            }
            if e.start is not None or e.end is not None:
                doc["start"], doc["end"] = e.start, e.end
            for key, value in e.extra.items():
                doc.setdefault(key, value)
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")


def evaluate_model(
    model: RetrievalModel,
    pairs: PairSet,
    *,
    device: torch.device | str = "cpu",
    postproc: str = "none",
    querybank_texts: Sequence[str] | None = None,
    split: str | None = None,
    ranks_out: Path | None = None,
    rerank: Any = None,
    coverage: Coverage | None = None,
    report_html: Path | None = None,
    run_dir: Path | None = None,
    beta: float = DEFAULT_BETA,
    k: int | None = None,
) -> dict[str, Any]:
    """The DESIGN §9 metric JSON for `pairs`, plus "by_tag" when the captions carry tags.

    `beta` and `k` are the post-processor's: QB-Norm's inverse temperature (IS/DIS) and DIS's
    activation top-k or CSLS's neighbours (None: each method's default).

    `rerank` (a `tvr.postproc.two_stage.TwoStage`) rescores each query's top-K after post-processing.
    `coverage` (see `coverage_of`) is recorded as "coverage" when videos were left out.
    `report_html`: also write the self-contained HTML report there (`run_dir`: its training curves).
    """
    from tvr.eval.report import report_of_final
    from tvr.postproc import apply_postproc, get_postproc

    entry = get_postproc(postproc)
    if entry.needs_querybank and not querybank_texts:
        raise TvrError(f"--postproc {postproc} needs a querybank (captions); none given and no training captions found")
    t = encode_texts(model, [e.caption for e in pairs.entries], device)
    v = encode_clips(model, pairs.clips, device)
    scores = score_matrix(model, t, v).astype(np.float64)
    gt = [int(r) for r in pairs.video_rows]
    qb = None
    if entry.needs_querybank and querybank_texts:
        qb = score_matrix(model, encode_texts(model, list(querybank_texts), device), v).astype(np.float64)
    temperature = 1.0 / float(model.scale().detach()) if postproc == "dsl" else 1.0
    final = apply_postproc(postproc, scores, qb, beta=beta, k=k, temperature=temperature)
    report = report_of_final(scores, final, gt, postproc=postproc, querybank_bg=qb, beta=beta, k=k,
                             temperature=temperature, method=model.method, split=split)
    if rerank is not None:
        report, final = apply_two_stage(report, rerank, model, [e.caption for e in pairs.entries], pairs.clips,
                                        final, gt, device)
    report["chance"] = {"R@1": 100.0 / scores.shape[1], "MdR": (scores.shape[1] + 1) / 2}
    if pairs.skipped:
        report["skipped_videos"] = list(pairs.skipped)
    if coverage is not None and coverage.partial:
        report["coverage"] = coverage.to_json()
    by_tag = metrics_by_tag(final, gt, pairs.entries)
    if by_tag:
        report["by_tag"] = by_tag
    if ranks_out is not None:
        names: dict[int, str] = {}
        for e, r in zip(pairs.entries, pairs.video_rows, strict=True):
            names.setdefault(int(r), e.video_key)  # the manifest's spelling of the clip
        gallery = [names.get(r, pairs.clips.keys[r]) for r in range(len(pairs.clips))]
        write_ranks(ranks_out, final, gt, pairs.entries, gallery)
    if report_html is not None:
        from tvr.eval.html_report import write_html_report

        write_html_report(report_html, report, scores, final, gt, pairs, run_dir=run_dir)
    return report


def apply_two_stage(
    report: dict[str, Any], two_stage: TwoStage, first_stage: RetrievalModel, texts: Sequence[str], clips: Clips,
    first_qg: np.ndarray, gt: Sequence[int], device: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """(the report with t2v and hubness of the two-stage ranking, the final scores).

    `first_qg` is the first stage's (post-processed) score matrix; v2t stays the first stage's
    (the re-ranker rescores each text query's candidates only).
    """
    from tvr.eval.hubness import hubness
    from tvr.eval.metrics import retrieval_metrics

    scorer = rerank_pairs_scorer(first_stage, two_stage.reranker, texts, clips, device)
    final = two_stage_scores(first_qg, two_stage.k, scorer, first_weight=getattr(two_stage.reranker, "merge_weight", 1.0))
    out = dict(report)
    out["t2v"] = retrieval_metrics(final, list(gt))["t2v"]
    out["hubness"] = hubness(final, report.get("hubness_k", 10))
    out["v2t_from"] = "first_stage"
    out["rerank"] = {
        "method": two_stage.reranker.method, "k": min(two_stage.k, first_qg.shape[1]), "run_dir": two_stage.run_dir,
        "first_stage_t2v": report["t2v"],
    }
    return out, final
