"""`pixels`: the sampled frames themselves, small and uint8, to cache training inputs.

Models trained from scratch (the synthetic world's small ViT) read frames from the feature store
instead of decoding videos every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tvr.encoders.base import VideoEncoder
from tvr.encoders.frames import resize_uint8
from tvr.encoders.registry import VIDEO_ENCODERS
from tvr.io.decoded import DecodedVideo, DecodeSpec


@dataclass(frozen=True)
class PixelsConfig:
    size: int = 64  # frames are resized (short side) and centre-cropped to size×size
    num_frames: int = 12
    fps: float | None = None  # sample at this rate instead of num_frames uniformly
    max_frames: int = 1024  # with fps: at most this many frames (a longer clip is sampled uniformly instead)

    def __post_init__(self) -> None:
        if self.size < 1 or self.num_frames < 1 or self.max_frames < 1:
            raise ValueError("size, num_frames and max_frames must be >= 1")


@VIDEO_ENCODERS.register("pixels")
class PixelsEncoder(VideoEncoder):
    """Sampled RGB frames as uint8 [T,size,size,3] (a cache for training from pixels)."""

    name: ClassVar[str] = "pixels"
    config_cls: ClassVar[type] = PixelsConfig
    outputs: ClassVar[tuple[str, ...]] = ("frames [T,H,W,3] uint8", "timestamps [T]")

    def __init__(self, config: PixelsConfig) -> None:
        self.config = config
        sampling = f"fps{config.fps:g}" if config.fps else f"n{config.num_frames}"
        if config.fps and config.max_frames != PixelsConfig.max_frames:
            sampling += f"-max{config.max_frames}"
        self._version = f"pixels-v1-s{config.size}-{sampling}"

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        c = self.config
        return DecodeSpec(num_frames=None if c.fps else c.num_frames, fps=c.fps, size=c.size, max_frames=c.max_frames)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        size = self.config.size
        return [
            {
                "frames": resize_uint8(v.frames, size) if len(v.frames) else np.zeros((0, size, size, 3), np.uint8),
                "timestamps": np.asarray(v.timestamps_s, dtype=np.float32),
            }
            for v in videos
        ]
