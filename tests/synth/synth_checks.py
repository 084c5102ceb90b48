"""Independent checks the synthetic-world tests share: what colour dominates a frame, what a sound is."""

from __future__ import annotations

import numpy as np

from tvr.synth.world import COLOURS


def colour_counts(frame: np.ndarray, tol: float = 60.0) -> dict[str, int]:
    """Pixels within `tol` (RGB distance) of each palette colour."""
    pix = frame.reshape(-1, 3).astype(np.float64)
    return {name: int((np.linalg.norm(pix - np.asarray(rgb), axis=1) < tol).sum()) for name, rgb in COLOURS.items()}


def dominant_colour(frames: np.ndarray) -> str:
    """The palette colour with the most pixels over a stack of frames."""
    total: dict[str, int] = {}
    for f in frames:
        for k, v in colour_counts(f).items():
            total[k] = total.get(k, 0) + v
    return max(total, key=total.get)


def classify_sound(audio: np.ndarray, rate_hz: int) -> str:
    """beeps / hum / silence from energy, dominant frequency and how bursty the envelope is."""
    audio = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    if rms < 0.01:
        return "silence"
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * rate_hz / len(audio)
    win = rate_hz // 40
    env = np.sqrt(np.mean(audio[: len(audio) // win * win].reshape(-1, win) ** 2, axis=1))
    bursty = np.mean(env < 0.1 * env.max()) > 0.3
    if peak_hz > 500 and bursty:
        return "beeps"
    if peak_hz < 300 and not bursty:
        return "hum"
    return f"unknown(peak={peak_hz:.0f} Hz, bursty={bursty})"
