"""Contrastive losses over a batch's text×video logits."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def symmetric_infonce(logits_tv: Tensor) -> Tensor:
    """Mean of text→video and video→text cross-entropy; pair i (row i, column i) is the positive.

    `logits_tv` is [B, B] and already multiplied by the logit scale.
    """
    if logits_tv.ndim != 2 or logits_tv.shape[0] != logits_tv.shape[1]:
        raise ValueError(f"symmetric_infonce needs square logits, got {tuple(logits_tv.shape)}")
    target = torch.arange(logits_tv.shape[0], device=logits_tv.device)
    return 0.5 * (F.cross_entropy(logits_tv, target) + F.cross_entropy(logits_tv.t(), target))
