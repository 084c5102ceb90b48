"""Order negatives: a caption that states a time order must not match its own clip played in the other order.

A training set rarely holds the same two events in both orders, so a random (or neighbour) batch
never asks a temporal model to tell "A, then B" from "B, then A", and none learns to. This makes the
contrast out of every training pair whose caption states an order (`states_order`: "then", "after",
"before", "first", …): its clip with the two halves of its frames swapped (`half_swapped`, the order
of events reversed while each half plays forwards) is a negative for that caption alone. The loss
(`order_loss`) is the two-way softmax between the pair and its swapped clip, on the model's logit
scale, averaged over the batch's order captions and added to the contrastive loss with a weight
(`train.order_negatives`). It needs nothing but captions and frames, so it works on any dataset.
The re-ranker trainer uses the same swapped clips as extra negative pairs of its matching loss.

Models whose similarity cannot see frame order (meanP's mean pooling: a swapped clip scores exactly
as the clip) get no gradient from it and skip it (`RetrievalModel.sees_frame_order`). Models that
read feature streams beside the frames (MMT's experts) get it only with `train.order_streams`: then
every stream of the clip (motion, sound, objects, …) is swapped the same way as the frames, its own
real positions in halves, so the negative is the whole clip played in the other order; without it
they skip it, as they did before the option existed. A clip of fewer than two real frames is its own
swap: in the two-way softmax it adds log 2 and no gradient; the re-ranker, whose negatives are pairs
of their own, leaves such clips out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import torch
from torch import Tensor

from tvr.data.batch import VideoBatch
from tvr.models.base import RetrievalModel, TextEmb, VideoEmb
from tvr.models.losses import preferred_pair_loss

ORDER_WORDS = re.compile(
    r"\b(then|after|afterwards|afterward|before|first|firstly|finally|later|next|followed|until|once|begins?|ends?|"
    r"starts?|subsequently|eventually|meanwhile)\b",
    re.IGNORECASE,
)


def states_order(caption: str) -> bool:
    """Whether `caption` names a time order between things (English connectives)."""
    return ORDER_WORDS.search(caption) is not None


def order_rows(captions: Sequence[str], real_frames: Sequence[int] | None = None) -> list[int]:
    """Positions of the captions that state an order (and, given each clip's number of real frames,
    whose clip has at least two to swap: a shorter clip's swap is the clip itself)."""
    return [i for i, c in enumerate(captions) if states_order(c) and (real_frames is None or real_frames[i] >= 2)]


def applies_to(model: RetrievalModel, streams: bool = False) -> bool:
    """Whether order negatives can teach `model` anything; a model that reads feature streams only when
    they are swapped too (`streams`, `train.order_streams`; see the module docstring)."""
    return bool(getattr(model, "sees_frame_order", True)) and (streams or not model.input_spec().streams)


def swap_index(frame_mask: Tensor) -> Tensor:
    """[B, T] frame indices that play each clip's second half of real frames first (padding stays)."""
    index = torch.arange(frame_mask.shape[1], device=frame_mask.device).repeat(frame_mask.shape[0], 1)
    for i in range(frame_mask.shape[0]):
        real = torch.nonzero(frame_mask[i]).flatten()  # real frames, in time order
        half = len(real) // 2
        if half:
            index[i, real] = torch.cat([real[half:], real[:half]])
    return index


def swap_frames(values: Tensor, frame_mask: Tensor) -> Tensor:
    """`values` [B, T, ...] (frames, or per-frame tokens) in the half-swapped order of `swap_index`."""
    index = swap_index(frame_mask).view(*frame_mask.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return torch.gather(values, 1, index)


def half_swapped(batch: VideoBatch, streams: Sequence[str] = ()) -> VideoBatch:
    """Every clip with its second half of real frames played first, and likewise each named feature
    stream ("motion", or "name:option=value" as in `VideoInputSpec.streams`) over its own real
    positions ("<stream>_mask"). Timestamps and masks are unchanged: the content moves, the clock does not."""
    if batch.frames is None and not streams:
        raise ValueError("half_swapped needs frames or streams")
    features = dict(batch.features)
    for stream in streams:
        if stream not in features or f"{stream}_mask" not in features:
            raise ValueError(f"half_swapped: the batch has no stream {stream!r} with a mask '{stream}_mask'")
        features[stream] = swap_frames(features[stream], features[f"{stream}_mask"])
    frames = None if batch.frames is None else swap_frames(batch.frames, batch.frame_mask)
    return dataclasses.replace(batch, frames=frames, features=features)


def order_loss(model: RetrievalModel, text: TextEmb, video: VideoEmb, swapped: VideoEmb, denominator: int) -> Tensor:
    """Σ over the given pairs of −log softmax(pair, swapped clip)[pair], divided by `denominator`.

    `text`, `video` and `swapped` hold the same n pairs row by row. The caller divides by the number
    of order captions in the whole batch (several processes: in the global batch, so that the ranks'
    averaged gradients equal one process's)."""
    return preferred_pair_loss(model, text, video, text, swapped, denominator)
