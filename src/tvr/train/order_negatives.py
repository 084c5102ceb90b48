"""Order negatives: a caption that states a time order must not match its own clip played in the other order.

A training set rarely holds the same two events in both orders, so a random (or neighbour) batch
never asks a temporal model to tell "A, then B" from "B, then A", and none learns to. This makes the
contrast out of every training pair whose caption states an order (`states_order`: "then", "after",
"before", "first", …): its clip with the two halves of its frames swapped (`half_swapped`, the order
of events reversed while each half plays forwards) is a negative for that caption alone. The loss
(`order_loss`) is the two-way softmax between the pair and its swapped clip, on the model's logit
scale, averaged over the batch's order captions and added to the contrastive loss with a weight
(`train.order_negatives`). It needs nothing but captions and frames, so it works on any dataset.

Models whose similarity cannot see frame order (meanP's mean pooling: a swapped clip scores exactly
as the clip) get no gradient from it and skip it (`RetrievalModel.sees_frame_order`); so do models
that read feature streams beside the frames (MMT's experts: a swap of the frames alone would leave
motion and sound in the old order).
"""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import Tensor
from torch.nn import functional as F

from tvr.data.batch import VideoBatch
from tvr.models.base import RetrievalModel, TextEmb, VideoEmb

ORDER_WORDS = re.compile(
    r"\b(then|after|afterwards|afterward|before|first|firstly|finally|later|next|followed|until|once|begins?|ends?|"
    r"starts?|subsequently|eventually|meanwhile)\b",
    re.IGNORECASE,
)


def states_order(caption: str) -> bool:
    """Whether `caption` names a time order between things (English connectives)."""
    return ORDER_WORDS.search(caption) is not None


def applies_to(model: RetrievalModel) -> bool:
    """Whether order negatives can teach `model` anything (see the module docstring)."""
    return bool(getattr(model, "sees_frame_order", True)) and not model.input_spec().streams


def half_swapped(batch: VideoBatch) -> VideoBatch:
    """Every clip with its second half of real frames played first (timestamps and masks unchanged)."""
    if batch.frames is None:
        raise ValueError("half_swapped needs frames")
    frames = batch.frames.clone()
    for i, n in enumerate(batch.frame_mask.sum(1).tolist()):
        real = torch.nonzero(batch.frame_mask[i]).flatten()  # real frames, in time order
        half = int(n) // 2
        if half:
            frames[i, real] = batch.frames[i, torch.cat([real[half:], real[:half]])]
    return dataclasses.replace(batch, frames=frames, features=dict(batch.features))


def order_loss(model: RetrievalModel, text: TextEmb, video: VideoEmb, swapped: VideoEmb, denominator: int) -> Tensor:
    """Σ over the given pairs of −log softmax(pair, swapped clip)[pair], divided by `denominator`.

    `text`, `video` and `swapped` hold the same n pairs row by row. The caller divides by the number
    of order captions in the whole batch (several processes: in the global batch, so that the ranks'
    averaged gradients equal one process's)."""
    scale = model.scale()
    pos = torch.diagonal(model.similarity(text, video)) * scale
    neg = torch.diagonal(model.similarity(text, swapped)) * scale
    logits = torch.stack([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device), reduction="sum") / denominator
