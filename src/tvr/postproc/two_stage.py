"""Two-stage scoring (CrossTVR, DESIGN §3): a first stage picks top-K candidates, a re-ranker rescores them.

final(q, g) = w · first(q, g) + rerank(q, g) for the K candidates of q (w = 1 for the paper's merge,
the calibrated slope for a residual re-ranker: its `merge_weight`); every other item is shifted
below the lowest candidate while keeping its first-stage order (so ranks past K, MdR and MnR stay
meaningful). Post-processing (IS/DIS/…) belongs to the first stage: pass its output as `first_qg`.
The re-ranker is called on exactly n_queries × K pairs, whatever the gallery size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tvr.data.clips import Clips
    from tvr.models.base import RetrievalModel

DEFAULT_K = 15  # paper: top-15 candidates
PAIR_CHUNK = 512  # pairs per re-ranker forward
BELOW_GAP = 1.0  # distance between the lowest candidate and the best non-candidate

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (query rows, gallery rows) → [P] scores


def top_k_candidates(first_qg: np.ndarray, k: int) -> np.ndarray:
    """[n_q, min(k, n_g)] gallery columns of each row's k best first-stage scores, best first
    (ties: lower column first)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, first_qg.shape[1])
    return np.argsort(-np.asarray(first_qg), axis=1, kind="stable")[:, :k]  # stable: ties keep column order


def two_stage_scores(
    first_qg: np.ndarray, k: int, rescore: PairScorer, chunk: int = PAIR_CHUNK, first_weight: float = 1.0
) -> np.ndarray:
    """The final [n_q, n_g] float64 scores; `first_qg` is never modified.

    `rescore(q_rows, g_rows)` returns the re-ranker's score of each (query, gallery) pair; it is
    called on ceil(n_q·K / chunk) chunks, never on a non-candidate. A candidate's final score is
    `first_weight` × its first-stage score + the re-ranker's (the re-ranker's `merge_weight`: 1 for
    the paper's merge, the slope of the first stage's calibration for a residual re-ranker).
    """
    if not (np.isfinite(first_weight) and first_weight > 0):
        raise ValueError(f"first_weight must be a positive number, got {first_weight}")
    first = np.asarray(first_qg, dtype=np.float64) * float(first_weight)
    n_q, _ = first.shape
    cand = top_k_candidates(first, k)  # [n_q, K]
    q_rows = np.repeat(np.arange(n_q), cand.shape[1])
    g_rows = cand.reshape(-1)
    second = np.empty(len(q_rows), dtype=np.float64)
    for i in range(0, len(q_rows), chunk):
        second[i : i + chunk] = np.asarray(rescore(q_rows[i : i + chunk], g_rows[i : i + chunk]), dtype=np.float64)
    cand_final = np.take_along_axis(first, cand, 1) + second.reshape(cand.shape)
    is_cand = np.zeros(first.shape, dtype=bool)
    np.put_along_axis(is_cand, cand, True, 1)
    rest = np.where(is_cand, -np.inf, first)
    best_rest = rest.max(axis=1, initial=-np.inf)
    shift = np.where(np.isfinite(best_rest), best_rest - cand_final.min(axis=1) + BELOW_GAP, 0.0)
    final = first - shift[:, None]
    np.put_along_axis(final, cand, cand_final, 1)
    return final


def rerank_pairs_scorer(
    first_stage: RetrievalModel, reranker: Any, texts: Sequence[str], clips: Clips, device: Any,
    video_batch: int = 32, text_batch: int = 256,
) -> PairScorer:
    """A PairScorer over `texts` × `clips`: the frozen tokens of every text and clip are computed once
    here (and the M tokens per frame selected once), so each query costs K re-ranker pair scores."""
    import torch
    from torch.nn import functional as F

    from tvr.models.base import Embedding
    from tvr.models.crosstvr import frozen_frame_tokens, frozen_text_tokens, text_emb_from_tokens, video_emb_from_tokens

    first_stage.eval()
    reranker.eval()
    with torch.no_grad():
        t_parts = [frozen_text_tokens(first_stage, list(texts[i : i + text_batch])) for i in range(0, len(texts), text_batch)]
        width = max(tok.shape[1] for tok, _ in t_parts)  # a text tower may trim each batch to its longest text
        text_emb = text_emb_from_tokens(
            reranker,
            torch.cat([F.pad(tok, (0, 0, 0, width - tok.shape[1])) for tok, _ in t_parts]),
            torch.cat([F.pad(mask, (0, width - mask.shape[1])) for _, mask in t_parts]),
        )
        v_parts = []
        for i in range(0, len(clips), video_batch):
            batch = clips.batch(range(i, min(i + video_batch, len(clips)))).to(device)
            v_parts.append(video_emb_from_tokens(reranker, frozen_frame_tokens(first_stage, batch), batch.frame_mask))
    video_emb: Embedding = type(v_parts[0]).cat(v_parts)

    @torch.no_grad()
    def rescore(q_rows: np.ndarray, g_rows: np.ndarray) -> np.ndarray:
        t = text_emb.select(torch.as_tensor(q_rows, dtype=torch.long))
        v = video_emb.select(torch.as_tensor(g_rows, dtype=torch.long))
        return reranker.score_pairs(t, v).double().cpu().numpy()

    return rescore


@dataclass(frozen=True)
class TwoStage:
    """A trained re-ranker and how many first-stage candidates it rescores per query."""

    reranker: Any  # tvr.models.crosstvr.CrossTvrReranker
    k: int = DEFAULT_K
    run_dir: str = ""


