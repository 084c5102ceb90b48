"""`audio` expert: log-mel statistics per second (mean and std of each mel band over 1-s windows).

Mel scale (HTK): mel(f) = 2595·log10(1 + f/700); triangular filters with peaks at evenly spaced mels,
applied to the power spectrum of Hann-windowed frames. log(max(energy, floor)) so silence gives
exactly log(floor) in every band (and std 0). Implemented with numpy; no librosa/torchaudio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tvr.encoders.base import VideoEncoder
from tvr.encoders.registry import VIDEO_ENCODERS
from tvr.io.decoded import AUDIO_RATE_HZ, DecodedVideo, DecodeSpec


@dataclass(frozen=True)
class AudioConfig:
    n_mels: int = 64
    window_ms: float = 25.0
    hop_ms: float = 10.0
    fmin_hz: float = 0.0
    fmax_hz: float | None = None  # None: Nyquist
    segment_s: float = 1.0  # statistics window
    floor: float = 1e-10  # energy floor before the log: silence → log(floor)
    rate_hz: int = AUDIO_RATE_HZ

    def __post_init__(self) -> None:
        if self.n_mels < 1 or self.window_ms <= 0 or self.hop_ms <= 0 or self.segment_s <= 0 or self.floor <= 0:
            raise ValueError("n_mels, window_ms, hop_ms, segment_s and floor must be positive")


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, rate_hz: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """[n_mels, n_fft//2+1] triangular filters (peak 1) on the rfft bin frequencies."""
    bins_hz = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bins_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_band_centres_hz(config: AudioConfig) -> np.ndarray:
    """Centre frequency of each mel band (for tests and plots)."""
    fmax = config.fmax_hz or config.rate_hz / 2
    return mel_to_hz(np.linspace(hz_to_mel(config.fmin_hz), hz_to_mel(fmax), config.n_mels + 2))[1:-1]


def log_mel_frames(audio: np.ndarray, config: AudioConfig) -> np.ndarray:
    """Mono float audio [S] → log-mel energies [F, n_mels], frame i starting at sample i·hop."""
    win = int(round(config.window_ms * config.rate_hz / 1000))
    hop = int(round(config.hop_ms * config.rate_hz / 1000))
    n_fft = 1 << max(0, math.ceil(math.log2(win)))
    n_frames = max(1, math.ceil(len(audio) / hop))
    padded = np.zeros((n_frames - 1) * hop + win, dtype=np.float64)  # zero-pad the tail window
    padded[: len(audio)] = audio
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = padded[idx] * np.hanning(win + 2)[1:-1][None, :]  # Hann window without zero ends
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    fmax = config.fmax_hz or config.rate_hz / 2
    mel = power @ mel_filterbank(config.n_mels, n_fft, config.rate_hz, config.fmin_hz, fmax).T
    return np.log(np.maximum(mel, config.floor))


def log_mel_statistics(audio: np.ndarray, config: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """(features [S, 2·n_mels] = per-segment mean ‖ std of log-mel, segment start offsets in s [S])."""
    frames = log_mel_frames(audio, config)
    hop_s = config.hop_ms / 1000
    n_segments = max(1, math.ceil(len(audio) / config.rate_hz / config.segment_s - 1e-9))
    segment_of_frame = np.minimum((np.arange(len(frames)) * hop_s / config.segment_s + 1e-9).astype(int), n_segments - 1)
    feats = np.empty((n_segments, 2 * config.n_mels), dtype=np.float32)
    for s in range(n_segments):
        chunk = frames[segment_of_frame == s]
        if len(chunk) == 0:  # shorter than one hop: treat as silence
            chunk = np.full((1, config.n_mels), math.log(config.floor))
        feats[s, : config.n_mels] = chunk.mean(axis=0)
        feats[s, config.n_mels :] = (chunk - chunk[:1]).std(axis=0)  # shifted: a constant band gives exactly 0
    return feats, np.arange(n_segments) * config.segment_s


@VIDEO_ENCODERS.register("audio")
class AudioEncoder(VideoEncoder):
    """Log-mel statistics per second of the audio track (mean+std of 64 mel bands)."""

    name: ClassVar[str] = "audio"
    config_cls: ClassVar[type] = AudioConfig
    outputs: ClassVar[tuple[str, ...]] = ("audio [S,2·n_mels]", "audio_timestamps [S]", "audio_present [1]", "timestamps [S]")

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        c = config
        self._version = (
            f"audio-logmel-v1-m{c.n_mels}-w{c.window_ms:g}-h{c.hop_ms:g}-f{c.fmin_hz:g}-{c.fmax_hz or 'nyq'}"
            f"-s{c.segment_s:g}-fl{c.floor:g}-r{c.rate_hz}"
        )

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(num_frames=1, size=32, audio=True, audio_rate_hz=self.config.rate_hz)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        results = []
        for video in videos:
            if video.audio is None:
                raise ValueError("the audio encoder needs videos decoded with DecodeSpec(audio=True)")
            if video.audio_rate_hz != self.config.rate_hz:
                raise ValueError(f"audio at {video.audio_rate_hz} Hz, the encoder expects {self.config.rate_hz} Hz")
            feats, offsets_s = log_mel_statistics(np.asarray(video.audio, dtype=np.float64), self.config)
            # a segment's time = its centre, in seconds from the start of the file (like frame timestamps)
            times = (video.start_s + offsets_s + self.config.segment_s / 2).astype(np.float32)
            results.append(
                {
                    "audio": feats,
                    "audio_timestamps": times,
                    "timestamps": times,
                    "audio_present": np.array([1.0 if video.has_audio_stream else 0.0], dtype=np.float32),
                }
            )
        return results
