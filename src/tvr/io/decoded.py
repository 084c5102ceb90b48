"""What a decoder hands to an encoder: sampled frames, their times, and optionally audio.

`DecodeSpec` is what an encoder asks for; `DecodedVideo` is what `tvr.io.video.decode` returns.
Keeping these two small value types apart from PyAV lets encoders be tested on plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUDIO_RATE_HZ = 16_000


@dataclass(frozen=True)
class DecodeSpec:
    """How to sample a video. Exactly one of `num_frames` (uniform over the clip) or `fps`."""

    num_frames: int | None = 12
    fps: float | None = None
    size: int | None = None  # resize the short side to `size`, then centre-crop size×size; None: keep
    audio: bool = False  # also extract the audio track (mono float32, silence if there is none)
    audio_rate_hz: int = AUDIO_RATE_HZ
    max_frames: int = 1024  # cap for fps sampling of long videos

    def __post_init__(self) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ValueError("DecodeSpec needs exactly one of num_frames or fps")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError("num_frames must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("fps must be > 0")


@dataclass(frozen=True)
class DecodedVideo:
    """Frames sampled from one video (or one [start, end] clip of it)."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    timestamps_s: np.ndarray  # [T] float64, seconds from the start of the *file*
    duration_s: float  # duration of the clip that was sampled
    audio: np.ndarray | None = None  # [S] float32 mono in [-1, 1] at audio_rate_hz, or None
    audio_rate_hz: int = AUDIO_RATE_HZ
    has_audio_stream: bool = False  # False: `audio` (if requested) is synthesised silence
    start_s: float = 0.0  # clip start within the file
