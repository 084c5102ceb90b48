"""Running a model over whole sets: every caption, every clip, and the score matrix between them.

Used the same way by validation during training, evaluation, index building and search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tvr.data.batch import TextBatch
from tvr.data.clips import Clips
from tvr.data.pairs import PairSet
from tvr.models.base import RetrievalModel, TextEmb, VideoEmb

TEXT_BATCH = 256
VIDEO_BATCH = 32
SCORE_CHUNK = 1024


@torch.no_grad()
def encode_texts(model: RetrievalModel, texts: Sequence[str], device: torch.device | str, batch_size: int = TEXT_BATCH) -> TextEmb:
    model.eval()
    parts = [
        model.encode_text(TextBatch(list(texts[i : i + batch_size])).to(device)).detach()
        for i in range(0, len(texts), batch_size)
    ]
    return type(parts[0]).cat(parts)


@torch.no_grad()
def encode_clips(model: RetrievalModel, clips: Clips, device: torch.device | str, batch_size: int = VIDEO_BATCH) -> VideoEmb:
    model.eval()
    parts = [
        model.encode_video(clips.batch(range(i, min(i + batch_size, len(clips)))).to(device)).detach()
        for i in range(0, len(clips), batch_size)
    ]
    return type(parts[0]).cat(parts)


@torch.no_grad()
def score_matrix(model: RetrievalModel, text_emb: TextEmb, video_emb: VideoEmb, chunk: int = SCORE_CHUNK) -> np.ndarray:
    """[n_text, n_video] float32 cosine-scale scores, computed in row chunks (non-inner-product
    models may need memory per pair)."""
    rows = [
        model.similarity(text_emb.select(slice(i, i + chunk)), video_emb).float().cpu().numpy()
        for i in range(0, len(text_emb), chunk)
    ]
    return np.concatenate(rows, axis=0)


def pair_scores(model: RetrievalModel, pairs: PairSet, device: torch.device | str) -> tuple[np.ndarray, list[int]]:
    """Scores of every caption against every clip of `pairs`, and each caption's clip column."""
    t = encode_texts(model, [e.caption for e in pairs.entries], device)
    v = encode_clips(model, pairs.clips, device)
    return score_matrix(model, t, v), [int(r) for r in pairs.video_rows]
