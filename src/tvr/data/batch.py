"""What a model asks of the data pipeline for one video, and the batches the pipeline hands it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class VideoInputSpec:
    """What a model needs from the data pipeline for one video."""

    num_frames: int  # T: every batch is padded to T frames
    image_size: int
    streams: tuple[str, ...] = ()  # precomputed feature streams (feature-store encoder names)
    pixels: bool = True  # False: the model only reads `streams`
    fps: float | None = None  # sample at this rate (at most T frames; a longer clip gets T evenly) instead of T evenly


@dataclass
class TextBatch:
    """Captions to encode; `features` holds optional precomputed per-text tensors (frozen encoders)."""

    texts: list[str]
    features: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.texts, {k: v.to(device) for k, v in self.features.items()})


@dataclass
class VideoBatch:
    """Sampled frames of B videos, padded to T; `frame_mask` says which frames are real.

    `frames` are uint8 RGB (the model owns normalisation, so caches stay compact). `features` holds
    precomputed streams by name (e.g. "frame_cls" [B, T, D], an audio expert [B, K, D]); a stream's
    mask, when it has its own, is stored under "<name>_mask".
    """

    frames: Tensor | None  # [B, T, 3, H, W] uint8
    frame_mask: Tensor  # [B, T] bool, True = real frame
    timestamps: Tensor  # [B, T] float32 seconds from the start of the file
    features: dict[str, Tensor] = field(default_factory=dict)
    keys: list[str] | None = None  # video keys, for error messages and ranks files

    def __len__(self) -> int:
        return int(self.frame_mask.shape[0])

    def to(self, device: torch.device | str) -> VideoBatch:
        return VideoBatch(
            None if self.frames is None else self.frames.to(device),
            self.frame_mask.to(device),
            self.timestamps.to(device),
            {k: v.to(device) for k, v in self.features.items()},
            self.keys,
        )

    def select(self, rows: list[int]) -> VideoBatch:
        """The videos at `rows`, in that order."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return VideoBatch(
            None if self.frames is None else self.frames[idx],
            self.frame_mask[idx],
            self.timestamps[idx],
            {k: v[idx] for k, v in self.features.items()},
            None if self.keys is None else [self.keys[r] for r in rows],
        )
