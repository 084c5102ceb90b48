"""Expert feature streams as model input: gather, compact, subsample, shuffle, index time.

An expert is a padded sequence of feature vectors with a validity mask and timestamps (seconds, NaN =
unknown), e.g. the per-second "audio" or "motion" stream from the feature store or the per-frame
appearance embeddings of the vision backbone. MMT (and any other multi-expert model) consumes them
through `ExpertInput`, independent of where they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tvr.data.batch import VideoBatch

AGG_INDEX = 0  # temporal-embedding index of an aggregation token
UNKNOWN_TIME_INDEX = 1  # temporal-embedding index of a feature without a (valid) timestamp
FIRST_SECOND_INDEX = 2  # second t → index floor(t) + 2


@dataclass
class ExpertInput:
    """One expert for a batch of videos."""

    feats: Tensor  # [B, K, D]
    mask: Tensor  # [B, K] bool, True = real feature
    times: Tensor  # [B, K] float seconds; NaN = unknown

    @property
    def present(self) -> Tensor:
        """[B] bool: the video has at least one feature of this expert."""
        return self.mask.any(dim=1)


def stream_input(batch: VideoBatch, name: str) -> ExpertInput:
    """The stream `name` of a batch as supplied by `tvr.data.clips` ("<name>", "_mask", "_timestamps")."""
    if name not in batch.features:
        raise ValueError(f"the VideoBatch has no feature stream {name!r} (has: {sorted(batch.features)})")
    feats = batch.features[name]
    if feats.ndim != 3:
        raise ValueError(f"stream {name!r} must be [B, K, D], got {tuple(feats.shape)}")
    b, k = feats.shape[:2]
    mask = batch.features.get(f"{name}_mask")
    if mask is None:
        mask = torch.ones(b, k, dtype=torch.bool, device=feats.device)
    times = batch.features.get(f"{name}_timestamps")
    if times is None:
        times = torch.full((b, k), float("nan"), device=feats.device)
    return ExpertInput(feats.float(), mask.bool(), times.float())


def temporal_index(times: Tensor, max_seconds: int) -> Tensor:
    """Temporal-embedding index of each feature: floor(t) + 2, clamped to the last second of the
    table (max_seconds − 1 → index max_seconds + 1); unknown (NaN) or negative times → 1."""
    known = torch.isfinite(times) & (times >= 0)
    safe = torch.where(known, times, torch.zeros_like(times))
    idx = torch.floor(safe).long().clamp(max=max_seconds - 1) + FIRST_SECOND_INDEX
    return torch.where(known, idx, torch.full_like(idx, UNKNOWN_TIME_INDEX))


def compact(x: ExpertInput, max_features: int) -> ExpertInput:
    """Valid features moved to the front (order kept); more than `max_features` valid ones are
    subsampled uniformly in time; the result is padded to the batch's longest row (≤ max_features)."""
    b, k, _ = x.feats.shape
    order = torch.argsort((~x.mask).to(torch.int8), dim=1, stable=True)  # valid first, order kept
    n_valid = x.mask.sum(dim=1)  # [B]
    width = max(1, min(max_features, int(n_valid.max()) if b else 1))
    slots = torch.arange(width, device=x.feats.device).unsqueeze(0)  # [1, W]
    n = n_valid.unsqueeze(1)
    if max_features > 1:
        step = (n - 1).clamp(min=0).to(torch.float64) / (max_features - 1)
        spread = torch.round(slots.to(torch.float64) * step).long()  # uniform over the n valid ones
    else:
        spread = torch.zeros_like(slots)
    pick = torch.where(n > max_features, spread, slots).clamp(max=max(k - 1, 0))  # [B, W] into `order`
    src = torch.gather(order, 1, pick)
    mask = slots < n.clamp(max=max_features)
    feats = torch.gather(x.feats, 1, src.unsqueeze(-1).expand(-1, -1, x.feats.shape[-1]))
    times = torch.gather(x.times, 1, src)
    zero = torch.zeros((), dtype=feats.dtype, device=feats.device)
    return ExpertInput(torch.where(mask.unsqueeze(-1), feats, zero), mask, torch.where(mask, times, torch.nan))


def shuffle_in_time(x: ExpertInput, generator: torch.Generator | None = None) -> ExpertInput:
    """Permute each video's valid features among its valid positions, timestamps staying in place:
    the features keep their content but lose their order (the paper's shuffled-features ablation).
    Expects compacted input (valid positions first)."""
    b, k, _ = x.feats.shape
    device = x.feats.device
    noise = torch.rand(b, k, generator=generator, device="cpu" if generator is not None else device).to(device)
    noise = noise.masked_fill(~x.mask, math.inf)  # padding sorts last and stays there
    perm = torch.argsort(noise, dim=1)
    feats = torch.gather(x.feats, 1, perm.unsqueeze(-1).expand(-1, -1, x.feats.shape[-1]))
    return ExpertInput(feats, x.mask, x.times)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over dim 1 of x [B, K, D] over valid positions; rows without any valid position give 0."""
    filled = x.masked_fill(~mask.unsqueeze(-1), -math.inf)
    out = filled.max(dim=1).values
    return torch.where(mask.any(dim=1, keepdim=True), out, torch.zeros_like(out))
