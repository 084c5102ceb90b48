"""`motion` expert: per-second frame-difference and coarse normal-flow features.

For consecutive sampled frames (grey, [0,1]) with temporal difference I_t and spatial gradients
I_x, I_y (of the pair's mean), the brightness-constancy constraint gives the *normal flow*
(u, v) = −I_t·∇I / (|∇I|² + ε). Per pair we pool on a g×g grid:
  - mean |I_t| per cell (where things change)            g² values
  - mean u and mean v per cell (which way they move)     2·g² values
  - a histogram of flow directions weighted by |flow|    `orientations` values
and average the pairs that end within each second. A static video gives exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tvr.encoders.base import VideoEncoder
from tvr.encoders.frames import resize_uint8
from tvr.encoders.registry import VIDEO_ENCODERS
from tvr.io.decoded import DecodedVideo, DecodeSpec

_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class MotionConfig:
    fps: float = 4.0  # frames sampled per second; differences are taken between consecutive samples
    size: int = 64  # frames are resized/cropped to size×size
    grid: int = 4
    orientations: int = 8
    epsilon: float = 1e-2  # regularises the normal flow where the image is flat
    max_frames: int = 1024

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.size < 4 or self.grid < 1 or self.orientations < 1 or self.epsilon <= 0:
            raise ValueError("fps, epsilon must be > 0; size >= 4; grid, orientations >= 1")
        if self.size % self.grid:
            raise ValueError(f"size {self.size} must be a multiple of grid {self.grid}")

    @property
    def dim(self) -> int:
        return 3 * self.grid * self.grid + self.orientations


def _pool(values: np.ndarray, grid: int) -> np.ndarray:
    """[H,W] → [grid·grid] cell means."""
    h, w = values.shape
    return values.reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3)).ravel()


def pair_features(prev: np.ndarray, cur: np.ndarray, config: MotionConfig) -> np.ndarray:
    """Two grey float frames [H,W] → motion features [config.dim]."""
    it = cur - prev
    iy, ix = np.gradient(0.5 * (prev + cur))
    denom = ix * ix + iy * iy + config.epsilon
    u, v = -it * ix / denom, -it * iy / denom
    magnitude = np.hypot(u, v)
    angle = np.arctan2(v, u) % (2 * math.pi)
    bins = np.minimum((angle / (2 * math.pi) * config.orientations).astype(int), config.orientations - 1)
    hist = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=config.orientations) / magnitude.size
    return np.concatenate([_pool(np.abs(it), config.grid), _pool(u, config.grid), _pool(v, config.grid), hist])


def motion_features(video: DecodedVideo, config: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(features [S, dim] per second of the clip, second centres in file time [S])."""
    n_seconds = max(1, math.ceil(video.duration_s - 1e-9))
    feats = np.zeros((n_seconds, config.dim), dtype=np.float64)
    counts = np.zeros(n_seconds)
    frames = resize_uint8(video.frames, config.size) if len(video.frames) else video.frames
    grey = frames.astype(np.float64) @ _LUMA / 255.0  # [T, H, W]
    for t in range(1, len(grey)):
        second = int(np.clip(math.floor(video.timestamps_s[t] - video.start_s), 0, n_seconds - 1))
        feats[second] += pair_features(grey[t - 1], grey[t], config)
        counts[second] += 1
    feats /= np.maximum(counts, 1)[:, None]
    return feats.astype(np.float32), (video.start_s + np.arange(n_seconds) + 0.5).astype(np.float32)


@VIDEO_ENCODERS.register("motion")
class MotionEncoder(VideoEncoder):
    """Per-second frame-difference and normal-flow statistics on a coarse grid."""

    name: ClassVar[str] = "motion"
    config_cls: ClassVar[type] = MotionConfig
    outputs: ClassVar[tuple[str, ...]] = ("motion [S,3·grid²+orientations]", "motion_timestamps [S]", "timestamps [S]")

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        c = config
        self._version = f"motion-v1-fps{c.fps:g}-s{c.size}-g{c.grid}-o{c.orientations}-e{c.epsilon:g}-m{c.max_frames}"

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(num_frames=None, fps=self.config.fps, size=self.config.size, max_frames=self.config.max_frames)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        results = []
        for video in videos:
            feats, times = motion_features(video, self.config)
            results.append({"motion": feats, "motion_timestamps": times, "timestamps": times})
        return results
