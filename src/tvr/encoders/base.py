"""The encoder interfaces: what the feature store calls to turn decoded videos and texts into tensors.

A video encoder declares the frames/audio it needs (`decode_spec`) and maps a batch of decoded
videos to named per-video arrays (e.g. "frame_cls" [T, D], "patch_tokens" [T, L, D]). Batching
across videos is the encoder's job so frames of many short videos share one forward pass.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tvr.io.decoded import DecodedVideo, DecodeSpec


class VideoEncoder(abc.ABC):
    """Turns decoded videos into named feature arrays, one dict per video."""

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Identifies the weights + settings; stored features are re-extracted when it changes."""

    @abc.abstractmethod
    def decode_spec(self) -> DecodeSpec:
        """The frames (and audio) this encoder needs."""

    @abc.abstractmethod
    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        """One dict of float32/float16 arrays per input video, always including "timestamps" [T]."""


@dataclass(frozen=True)
class TextFeatures:
    """Encoded texts: per-token states, their mask, and one pooled vector per text."""

    tokens: np.ndarray  # [B, W, D] float32
    mask: np.ndarray  # [B, W] bool, True = real token
    pooled: np.ndarray  # [B, D] float32 (CLIP: EOT token after projection; MiniLM: mean pooling)


class TextEncoder(abc.ABC):
    """Turns captions into token states and a pooled vector."""

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def encode_text(self, texts: Sequence[str]) -> TextFeatures: ...
