"""Contrastive losses over a batch's text×video logits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from tvr.models.base import RetrievalModel, TextEmb, VideoEmb


def symmetric_infonce(logits_tv: Tensor) -> Tensor:
    """Mean of text→video and video→text cross-entropy; pair i (row i, column i) is the positive.

    `logits_tv` is [B, B] and already multiplied by the logit scale.
    """
    if logits_tv.ndim != 2 or logits_tv.shape[0] != logits_tv.shape[1]:
        raise ValueError(f"symmetric_infonce needs square logits, got {tuple(logits_tv.shape)}")
    target = torch.arange(logits_tv.shape[0], device=logits_tv.device)
    return 0.5 * (F.cross_entropy(logits_tv, target) + F.cross_entropy(logits_tv.t(), target))


def preferred_pair_loss(model: RetrievalModel, text: TextEmb, video: VideoEmb, other_text: TextEmb,
                        other_video: VideoEmb, denominator: int) -> Tensor:
    """Σ over rows i of −log softmax(s(text_i, video_i), s(other_text_i, other_video_i))[0], on the
    model's logit scale, divided by `denominator`: each pair must score above its counterpart (the
    same caption on its clip played out of order, a foil of the caption on the same clip, …). All
    four hold the same n rows; the caller chooses the denominator (under DDP, the global count)."""
    scale = model.scale()
    pos = torch.diagonal(model.similarity(text, video)) * scale
    neg = torch.diagonal(model.similarity(other_text, other_video)) * scale
    logits = torch.stack([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device), reduction="sum") / denominator
